"""Three libraries, three `libshare serve` processes, one Hardhat node, and an auditor.

Each library has its own data dir, SQLite database and keystore, and is set up only
through the command line (init, fund, deploy, join, propose/approve, licences issue,
resources add, keys create, peers set). CN-B's desk borrows CN-A's resource through
CN-B's instance; both trails are anchored; the auditor — with the chain and the two
exported trails, no key — verifies and reconciles them. Then the refusals, a receipt
that CN-B never recorded, a tampered export and an unreachable supplier.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from typer.testing import CliRunner

from api.cli import app
from ledger.federation import Domain, ShareRequestMessage, sign
from ledger.keys import Keystore
from ledger.licence import Campaign, Fee, consortium_terms
from ledger.licence_json import canonical_terms
from ledger.onchain import Deployment
from ledger.registration import resource_id_of

pytestmark = pytest.mark.hardhat

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "three-libraries-test-password"
LIBRARIES = ("CN-A", "CN-B", "CN-C")
BOOK = "敦煌遗书 — a digitised rare book, shared by CN-A\n".encode() * 40
BORROW = {
    "patron_category": "student",
    "purpose": "research",
    "method": "copy",
    "scope": "part",
    "destination_country": "CN",
}
runner = CliRunner()


def cli(*args: str | Path, password: bool = True, code: int = 0, rpc: str | None = None) -> str:
    """Run one `libshare` command in-process; return its stdout.

    ``rpc`` goes in LIBSHARE_CHAIN_URL, for the commands that take no --rpc option.
    """
    env = {"LIBSHARE_KEYSTORE_PASSWORD": PASSWORD if password else None, "LIBSHARE_CHAIN_URL": rpc}
    result = runner.invoke(app, [str(a) for a in args], env=env)
    assert result.exit_code == code, f"libshare {args}: {result.output}"
    return result.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Library:
    library_id: str
    data_dir: Path
    account: str = ""
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    admin: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def at(self, *args: str | Path) -> list[str | Path]:
        return [*args, "--data-dir", self.data_dir]


@dataclass
class World:
    rpc: str
    tmp: Path
    libs: dict[str, Library]
    deployment: Path
    resource_id: str
    desk: dict[str, str]  # CN-B's delivery key, as headers

    @property
    def domain(self) -> Domain:
        d = Deployment.load(self.deployment)
        return Domain(d.chain_id, d.addresses["Consortium"])


def _set_up(rpc: str, tmp: Path) -> World:
    libs = {lib: Library(lib, tmp / lib) for lib in LIBRARIES}
    a, b, c = libs.values()
    for lib in libs.values():
        lib.account = cli(*lib.at("init", "--library", lib.library_id, "--rpc", rpc)).strip()
    cli("consortium", "fund", *(lib.account for lib in libs.values()), "--rpc", rpc)
    deployment = tmp / "deployment.json"
    cli(*a.at("consortium", "deploy", "--as", "CN-A", "--rpc", rpc, "--approvals", "2"),
        "--founder", f"CN-A={a.account}:1:CN", "--founder", f"CN-B={b.account}:2:CN",
        "--output", deployment)  # fmt: skip
    for lib in (b, c):
        cli(*lib.at("consortium", "join", "--deployment", deployment, "--rpc", rpc))
    # CN-C joins by the founders' 2-of-2 vote: CN-A proposes (and approves), CN-B approves.
    proposal = cli(*a.at("members", "propose", "CN-C", c.account, "--tier", "3", "--rpc", rpc))
    cli(*b.at("members", "approve", proposal.strip(), "--rpc", rpc))
    members = cli(*c.at("members", "list", "--rpc", rpc))
    assert all(lib in members for lib in LIBRARIES), members

    now = datetime.now(UTC)
    terms = consortium_terms(
        valid_from=now - timedelta(days=1),
        valid_until=now + timedelta(days=300),
        campaigns=(
            Campaign("free-month", now - timedelta(days=1), now + timedelta(days=20), True),
        ),
        fee=Fee(1500, "CNY"),
    )
    terms_file = tmp / "terms.json"
    terms_file.write_bytes(canonical_terms(terms))
    licence = cli(*a.at("licences", "issue", "--terms", terms_file, "--rpc", rpc)).strip()
    book = tmp / "rare-book.txt"
    book.write_bytes(BOOK)
    cli(*a.at("resources", "add", book, "--member", "CN-A", "--licence", licence, "--rpc", rpc))
    resource_id = resource_id_of(a.account, hashlib.sha256(BOOK).digest())

    desk = cli(*b.at("keys", "create", "--member", "CN-B", "--role", "delivery"), rpc=rpc).strip()
    for lib in (a, b):
        token = cli(
            *lib.at("keys", "create", "--member", lib.library_id, "--role", "admin"), rpc=rpc
        )
        lib.admin = {"Authorization": f"Bearer {token.strip()}"}
    for lib in libs.values():
        lib.port = _free_port()
    for lib in libs.values():
        for peer in libs.values():
            if peer is not lib:
                cli(*lib.at("peers", "set", peer.library_id, peer.url))
    return World(rpc, tmp, libs, deployment, resource_id, {"Authorization": f"Bearer {desk}"})


def _serve(lib: Library, rpc: str) -> None:
    env = dict(
        os.environ,
        LIBSHARE_KEYSTORE_PASSWORD=PASSWORD,
        LIBSHARE_ANCHOR_EVERY_SECONDS="1",
        LIBSHARE_FEDERATION_TIMEOUT="15",
    )
    log = (lib.data_dir / "serve.log").open("wb")
    lib.process = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--data-dir", str(lib.data_dir),
         "--rpc", rpc, "--port", str(lib.port), "--no-access-log"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def _wait_healthy(lib: Library, deadline: float) -> None:
    while time.monotonic() < deadline:
        assert lib.process is not None and lib.process.poll() is None, _log(lib)
        try:
            if httpx.get(f"{lib.url}/v1/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{lib.library_id} did not start: {_log(lib)}")


def _stop(lib: Library) -> None:
    if lib.process is None or lib.process.poll() is not None:
        return
    lib.process.terminate()
    try:
        lib.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        lib.process.kill()
        lib.process.wait(timeout=5)


def _log(lib: Library) -> str:
    path = lib.data_dir / "serve.log"
    return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"


@pytest.fixture(scope="module")
def world(rpc_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    world = _set_up(rpc_url, tmp_path_factory.mktemp("federation"))
    try:
        for lib in world.libs.values():
            _serve(lib, rpc_url)
        deadline = time.monotonic() + 90
        for lib in world.libs.values():
            _wait_healthy(lib, deadline)
        yield world
    finally:
        for lib in world.libs.values():
            _stop(lib)


def _wait_anchored(lib: Library, at_least: int, timeout_s: float = 60) -> int:
    """Wait until the member's whole trail (at least ``at_least`` entries) is anchored."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        heads = httpx.get(
            f"{lib.url}/v1/audit/heads",
            params={"member": lib.library_id},
            headers=lib.admin,
            timeout=10,
        ).json()
        size = heads["trail_size"]
        if size >= at_least and heads["anchored"] and heads["anchored"][-1]["size"] == size:
            return int(size)
        time.sleep(0.5)
    pytest.fail(f"the trail of {lib.library_id} was not anchored in time: {heads}")


def _export(world: World, lib: Library, name: str) -> Path:
    path = world.tmp / name
    cli(*lib.at("audit", "export", "--member", lib.library_id, "-o", path, "--rpc", world.rpc))
    return path


def _reconcile(world: World, first: Path, second: Path, code: int) -> str:
    """The auditor: the chain, the deployment record and two files; no key, no data dir."""
    auditor = world.tmp / "auditor"
    auditor.mkdir(exist_ok=True)
    return cli("audit", "reconcile", first, second, "--rpc", world.rpc,
               "--deployment", world.deployment, "--data-dir", auditor,
               password=False, code=code)  # fmt: skip


def _borrow(world: World, **body: Any) -> httpx.Response:
    payload = {"resource_id": world.resource_id, "supplier": "CN-A", **BORROW, **body}
    return httpx.post(
        f"{world.libs['CN-B'].url}/v1/federation/borrow",
        json=payload,
        headers=world.desk,
        timeout=60,
    )


def _member_key(world: World, library_id: str) -> LocalAccount:
    keystore = Keystore(world.libs[library_id].data_dir / "keys", PASSWORD)
    return keystore.load(library_id).account


def _signed(world: World, signer: LocalAccount, **change: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "request_id": "0x" + os.urandom(32).hex(),
        "supplier": "CN-A",
        "requesting_member": "CN-B",
        "resource_id": world.resource_id,
        "patron": "2026:" + "cd" * 32,
        "campaign": "",
        "expires_at": int(time.time()) + 60,
        **BORROW,
        **change,
    }
    message = ShareRequestMessage(**fields)
    return {"request": message.as_json(), "signature": sign(message, world.domain, signer)}


def _ask_a(world: World, payload: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{world.libs['CN-A'].url}/v1/federation/requests", json=payload, timeout=30)


def _problem(response: httpx.Response, status: int, title: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["title"] == title, body
    return str(body["detail"])


def test_three_libraries_share_and_the_auditor_reconciles(world: World) -> None:
    a, b = world.libs["CN-A"], world.libs["CN-B"]

    # CN-B's desk borrows CN-A's book through CN-B's instance.
    allowed = _borrow(world, patron_id="reader-17")
    assert allowed.status_code == 200, allowed.text
    got = allowed.json()
    assert (got["decision"], got["outcome"], got["supplier"]) == ("allow", "received", "CN-A")
    content = httpx.get(f"{b.url}{got['content_url']}", headers=world.desk, timeout=30)
    assert content.status_code == 200 and content.content == BOOK
    denied = _borrow(world, patron_id="reader-17", purpose="commercial")
    assert denied.status_code == 200 and denied.json()["outcome"] == "denied", denied.text

    # Both trails anchored by their own servers; the auditor verifies and reconciles them.
    a_size = _wait_anchored(a, 4)  # two decisions and two answers
    _wait_anchored(b, 2)  # two receipts
    a_file, b_file = _export(world, a, "A.jsonl"), _export(world, b, "B.jsonl")
    out = _reconcile(world, a_file, b_file, 0)
    assert "RECONCILED CN-A -> CN-B: 2 answers, 2 receipts, 2 matched" in out, out
    assert "RECONCILED CN-B -> CN-A: 0 answers, 0 receipts, 0 matched" in out, out

    # The refusals, each a problem+json that says why; none is recorded.
    b_key, c_key = _member_key(world, "CN-B"), _member_key(world, "CN-C")
    detail = _problem(
        _ask_a(world, _signed(world, Account.create())), 403, "Signer is not a member"
    )
    assert "not a consortium member's account" in detail
    detail = _problem(_ask_a(world, _signed(world, c_key)), 403, "Signer is another member")
    assert f"names CN-B but is signed by {c_key.address}, the account of CN-C" in detail
    expired = _signed(world, b_key, expires_at=int(time.time()) - 1)
    _problem(_ask_a(world, expired), 409, "Share request expired")
    once = _signed(world, b_key)
    first = _ask_a(world, once)
    assert first.status_code == 200, first.text
    detail = _problem(_ask_a(world, once), 409, "Share request already answered")
    assert first.json()["answer"]["decision_id"] in detail

    # That answered request never went through CN-B's instance: no receipt in CN-B's trail.
    # The auditor reports exactly that request.
    _wait_anchored(a, a_size + 2)
    a_file = _export(world, a, "A2.jsonl")
    out = _reconcile(world, a_file, b_file, 1)
    rid = once["request"]["request_id"]
    assert "MISMATCH CN-A -> CN-B: 3 answers, 2 receipts, 2 matched" in out, out
    assert f"receipt_missing: request {rid}" in out and "has no receipt" in out, out

    # A receipt altered in the export is caught against the chain before any matching.
    lines = b_file.read_text(encoding="utf-8").splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if '"outcome":"received"' in line)
    lines[at] = lines[at].replace('"outcome":"received"', '"outcome":"denied"')
    tampered = world.tmp / "B-tampered.jsonl"
    tampered.write_text("".join(lines), encoding="utf-8")
    out = _reconcile(world, _export(world, a, "A3.jsonl"), tampered, 1)
    assert out.startswith("TAMPERED: B-tampered.jsonl (CN-B)"), out

    # With CN-A's server down, CN-B's desk gets a clear 502.
    _stop(a)
    detail = _problem(_borrow(world, patron_id="reader-18"), 502, "Peer instance failed")
    assert f"cannot reach CN-A's instance at {a.url}" in detail
