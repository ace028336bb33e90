"""`libshare resources add` stores and registers files; `libshare car export` archives them."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app
from ledger.blockstore import LocalBlockstore
from ledger.car import read_car
from tests.conftest import PASSWORD, Consortium, make_consortium

runner = CliRunner()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, module_database_url: str | None) -> Consortium:
    consortium = make_consortium(tmp_path_factory.mktemp("cli"), database_url=module_database_url)
    consortium.instance.close()
    return consortium


def _env(c: Consortium) -> dict[str, str]:
    env = {
        "LIBSHARE_DATA_DIR": str(c.instance.config.data_dir),
        "LIBSHARE_KEYSTORE_PASSWORD": PASSWORD,
    }
    if c.instance.config.database_url:
        env["LIBSHARE_DATABASE_URL"] = c.instance.config.database_url
    return env


def test_resources_add_registers_each_file_and_car_export_archives_them(
    shared: Consortium, tmp_path: Path
) -> None:
    files = []
    for n in range(3):
        path = tmp_path / f"scan-{n}.txt"
        path.write_bytes(b"page %d " % n * 50_000)
        files.append(str(path))
    added = runner.invoke(
        app,
        ["resources", "add", *files, "--member", "CN-A", "--licence", str(shared.licence_id)],
        env=_env(shared),
    )
    assert added.exit_code == 0, added.output
    ids = [line.split()[0] for line in added.output.splitlines() if line.startswith("0x")]
    assert len(ids) == 3
    car = tmp_path / "out.car"
    exported = runner.invoke(app, ["car", "export", *ids, "-o", str(car)], env=_env(shared))
    assert exported.exit_code == 0, exported.output
    with car.open("rb") as stream:
        roots, blocks = read_car(stream)
        assert len(roots) == 3
        assert sum(1 for _ in blocks) >= 3  # every block hash-checked while read
    copy = LocalBlockstore(tmp_path / "copy")
    with car.open("rb") as stream:
        assert copy.import_car(stream) == roots


def test_resources_add_of_a_directory_names_it_and_registers_nothing(
    shared: Consortium, tmp_path: Path
) -> None:
    result = runner.invoke(
        app, ["resources", "add", str(tmp_path), "--member", "CN-A"], env=_env(shared)
    )
    assert result.exit_code == 1
    assert f"{tmp_path} is not a regular file" in result.output
    assert "Traceback" not in result.output


def test_car_export_of_an_unknown_resource_is_one_clear_line(
    shared: Consortium, tmp_path: Path
) -> None:
    result = runner.invoke(
        app, ["car", "export", "0xabc", "-o", str(tmp_path / "x.car")], env=_env(shared)
    )
    assert result.exit_code == 1
    assert "resource 0xabc is not stored on this instance" in result.output


def test_commands_other_than_the_demo_refuse_to_run_without_a_keystore_password(
    shared: Consortium,
) -> None:
    env = _env(shared)
    env["LIBSHARE_KEYSTORE_PASSWORD"] = ""
    result = runner.invoke(app, ["keys", "list"], env=env)
    assert result.exit_code == 2
    assert "LIBSHARE_KEYSTORE_PASSWORD" in result.output
