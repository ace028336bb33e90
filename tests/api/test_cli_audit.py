"""`libshare audit export` writes a trail; `audit verify` answers OK, TAMPERED or cannot verify."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from api.cli_audit import audit_app
from ledger.anchoring import anchor_trail
from tests.conftest import PASSWORD, Consortium, make_consortium

runner = CliRunner()
app = typer.Typer()
app.add_typer(audit_app, name="audit")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory, module_database_url: str | None) -> Path:
    c: Consortium = make_consortium(
        tmp_path_factory.mktemp("cli-audit"), database_url=module_database_url
    )
    try:
        for i in range(12):
            c.instance.access.check(
                resource_id=c.resource_id,
                requesting_member="CN-B",
                patron=f"{i:064x}",
                patron_category="student",
                purpose="research",
                method="copy",
                scope="part",
                destination_country="CN",
            )
            if i == 9:
                anchor_trail(c.instance, "CN-A", c.members["CN-A"].account)
    finally:
        c.instance.close()
    return c.instance.config.data_dir


@pytest.fixture(scope="module")
def export_file(
    data_dir: Path, tmp_path_factory: pytest.TempPathFactory, module_database_url: str | None
) -> Path:
    out = tmp_path_factory.mktemp("exports") / "trail.jsonl"
    env = {"LIBSHARE_KEYSTORE_PASSWORD": PASSWORD}
    if module_database_url:
        env["LIBSHARE_DATABASE_URL"] = module_database_url
    result = runner.invoke(
        app,
        ["audit", "export", "--member", "CN-A", "-o", str(out), "--data-dir", str(data_dir)],
        env=env,
    )
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(autouse=True)
def _no_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIBSHARE_KEYSTORE_PASSWORD", raising=False)
    monkeypatch.delenv("LIBSHARE_CHAIN_URL", raising=False)


def _verify(path: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["audit", "verify", str(path), *args])
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_export_writes_the_trail_and_leaves_no_temporary_file(export_file: Path) -> None:
    lines = export_file.read_text().splitlines()
    assert json.loads(lines[0])["size"] == 12 and len(lines) == 1 + 12 + 1
    assert [p.name for p in export_file.parent.iterdir()] == ["trail.jsonl"]


def test_export_without_the_keystore_password_is_refused(data_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "audit",
            "export",
            "--member",
            "CN-A",
            "-o",
            str(tmp_path / "t.jsonl"),
            "--data-dir",
            str(data_dir),
        ],
    )
    assert result.exit_code == 2
    assert "no keystore password set" in result.output
    assert not (tmp_path / "t.jsonl").exists()


def test_verify_without_any_key_says_ok_with_the_counts(data_dir: Path, export_file: Path) -> None:
    chain_file = data_dir / "chain.sqlite"
    before = hashlib.sha256(chain_file.read_bytes()).hexdigest()
    code, output = _verify(export_file, "--data-dir", str(data_dir))
    assert code == 0, output
    assert output.startswith("OK: 12 entries, 1 anchored heads verified, root ")
    assert output.rstrip().endswith(", 2 unanchored")
    assert hashlib.sha256(chain_file.read_bytes()).hexdigest() == before  # read only


def test_verify_of_an_edited_entry_says_tampered_and_exits_1(
    data_dir: Path, export_file: Path, tmp_path: Path
) -> None:
    lines = export_file.read_text().splitlines(keepends=True)
    lines[4] = lines[4].replace("research", "teaching", 1)
    forged = tmp_path / "forged.jsonl"
    forged.write_text("".join(lines))
    code, output = _verify(forged, "--data-dir", str(data_dir))
    assert code == 1
    assert output.startswith("TAMPERED: entry 3: leaf hash does not match body")


def test_verify_of_a_malformed_line_says_tampered_naming_the_line(
    data_dir: Path, export_file: Path, tmp_path: Path
) -> None:
    lines = export_file.read_text().splitlines(keepends=True)
    lines[6] = "{not json\n"
    forged = tmp_path / "malformed.jsonl"
    forged.write_text("".join(lines))
    code, output = _verify(forged, "--data-dir", str(data_dir))
    assert code == 1
    assert output.startswith("TAMPERED: line 7: not a JSON object")


def test_verify_of_a_header_naming_another_account_says_tampered(
    data_dir: Path, export_file: Path, tmp_path: Path
) -> None:
    lines = export_file.read_text().splitlines(keepends=True)
    header = json.loads(lines[0])
    header["account"] = "0x" + "11" * 20
    forged = tmp_path / "other-account.jsonl"
    forged.write_text(json.dumps(header) + "\n" + "".join(lines[1:]))
    code, output = _verify(forged, "--data-dir", str(data_dir))
    assert code == 1
    assert "TAMPERED: the header gives account 0x1111" in output


def test_verify_of_a_missing_file_cannot_verify_and_exits_2(data_dir: Path, tmp_path: Path) -> None:
    code, output = _verify(tmp_path / "nowhere.jsonl", "--data-dir", str(data_dir))
    assert code == 2
    assert "could not verify: cannot read" in output


def test_verify_against_a_closed_rpc_port_cannot_verify_and_exits_2(
    data_dir: Path, export_file: Path
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    code, output = _verify(
        export_file, "--rpc", f"http://127.0.0.1:{port}", "--data-dir", str(data_dir)
    )
    assert code == 2
    assert "could not verify: cannot reach the JSON-RPC node" in output


def test_verify_of_an_export_from_another_chain_cannot_verify_and_exits_2(
    data_dir: Path, export_file: Path, tmp_path: Path
) -> None:
    lines = export_file.read_text().splitlines(keepends=True)
    header = json.loads(lines[0])
    header["chain_id"] = 424242
    other = tmp_path / "other-chain.jsonl"
    other.write_text(json.dumps(header) + "\n" + "".join(lines[1:]))
    code, output = _verify(other, "--data-dir", str(data_dir))
    assert code == 2
    assert "the export is of chain 424242" in output


def test_verify_in_a_data_dir_without_a_chain_cannot_verify_and_exits_2(
    data_dir: Path, export_file: Path, tmp_path: Path
) -> None:
    code, output = _verify(
        export_file, "--data-dir", str(tmp_path), "--deployment", str(data_dir / "deployment.json")
    )
    assert code == 2
    assert "no embedded chain in" in output
    assert not (tmp_path / "chain.sqlite").exists()
