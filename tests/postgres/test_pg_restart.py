"""PostgreSQL goes down under access checks and comes back: fast 503s, then service, no loss.

The test runs its own cluster (``scripts/postgres_cluster.py`` in a temporary directory),
serves a consortium's API over it, and keeps access checks going in a bounded loop while
it stops the server (``pg_ctl stop -m fast``) for a few seconds and starts it again.
While the server is down every check must be answered at once with 503 problem+json
(never 500, never a hang); after it returns, checks succeed again; and every decision
that was answered 200 is in the trail exactly once, at the position it was answered
with, and the trail verifies against the chain.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.problems import PROBLEM_JSON
from ledger.anchoring import anchor_trail, verify_member_trail
from tests.conftest import make_consortium

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "postgres_cluster.py"
BIN = Path(os.environ.get("LIBSHARE_PG_BIN", "/usr/lib/postgresql/15/bin"))

OUTAGE_S = 3.0  # how long the server stays down
FAST_S = 5.0  # the slowest a 503 may be
MAX_REQUESTS = 3000  # the loop's bounds: it stops by itself whatever happens
MAX_LOOP_S = 90.0
CLIENTS = 6  # concurrent clients: the writer's group commits hold several decisions


@dataclass
class Cluster:
    folder: Path
    port: int
    url: str

    def _script(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, str(SCRIPT), *args, "--dir", str(self.folder)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""

    def stop(self) -> None:
        self._script("stop")

    def start(self) -> None:
        assert self._script("start", "--port", str(self.port)) == self.url


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A private cluster under /tmp (reachable by the user postgres runs as, if we are root)."""
    if not (BIN / "initdb").exists():
        if os.environ.get("CI"):
            pytest.fail(f"{BIN}/initdb is missing: .ci/install-services.sh must install PostgreSQL")
        pytest.skip(f"no PostgreSQL server binaries in {BIN}")
    folder = Path(tempfile.mkdtemp(prefix="libshare-pg-restart-"))
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "start", "--dir", str(folder)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    url = result.stdout.strip().splitlines()[-1]
    port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
    c = Cluster(folder, port, url)
    try:
        yield c
    finally:
        subprocess.run(
            [sys.executable, str(SCRIPT), "stop", "--dir", str(folder)],
            capture_output=True,
            timeout=120,
        )
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Answer:
    sent: float  # monotonic time the request was sent
    seconds: float
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class Load:
    """One client's access checks, one after another until stopped, within MAX_REQUESTS and
    MAX_LOOP_S; several run at once."""

    client: TestClient
    body: dict[str, str]
    headers: dict[str, str]
    name: int = 0
    answers: list[Answer] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        started = time.monotonic()
        for n in range(MAX_REQUESTS):
            if self.stop.is_set() or time.monotonic() - started > MAX_LOOP_S:
                return
            sent = time.monotonic()
            response = self.client.post(
                "/v1/access/check",
                json=self.body | {"patron_id": f"patron-{self.name}-{n % 50}"},
                headers=self.headers,
            )
            self.answers.append(
                Answer(
                    sent,
                    time.monotonic() - sent,
                    response.status_code,
                    response.json(),
                    dict(response.headers),
                )
            )
            if response.status_code != 200:
                time.sleep(0.05)  # a client that was told to retry does not spin

    def ok_since(self, t: float) -> int:
        return sum(1 for a in list(self.answers) if a.sent >= t and a.status == 200)


def _wait(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_checks_fail_fast_with_503_while_postgres_is_down_and_lose_nothing(
    cluster: Cluster, tmp_path: Path
) -> None:
    base = make_consortium(tmp_path / "data", database_url=cluster.url)
    config = base.instance.config
    base.instance.close()
    app = create_app(config)
    with TestClient(app) as client:
        instance = app.state.instance
        token, _ = instance.apikeys.create("CN-B", "delivery")
        body = {
            "resource_id": base.resource_id,
            "requesting_member": "CN-B",
            "patron_category": "faculty",
            "purpose": "research",
            "method": "copy",
            "scope": "part",
            "destination_country": "CN",
        }
        headers = {"Authorization": f"Bearer {token}"}
        loads = [Load(client, body, headers, name=i) for i in range(CLIENTS)]
        workers = [threading.Thread(target=load.run, name=f"pg-load-{load.name}") for load in loads]
        for worker in workers:
            worker.start()

        def ok_since(t: float) -> int:
            return sum(load.ok_since(t) for load in loads)

        try:
            _wait(lambda: ok_since(0) >= 20, 30)
            down_at = time.monotonic()
            cluster.stop()
            stopped_at = time.monotonic()
            time.sleep(OUTAGE_S)
            restart_at = time.monotonic()
            cluster.start()
            up_at = time.monotonic()
            _wait(lambda: ok_since(up_at) >= 20, 30)
        finally:
            for load in loads:
                load.stop.set()
            for worker in workers:
                worker.join(timeout=MAX_LOOP_S)
        assert not any(worker.is_alive() for worker in workers)

        answers = [a for load in loads for a in load.answers]
        ok = [a for a in answers if a.status == 200]
        refused = [a for a in answers if a.status == 503]
        assert {a.status for a in answers} <= {200, 503}, [
            (a.status, a.body) for a in answers if a.status not in (200, 503)
        ]
        # Down: every check answered 503 problem+json at once, saying what to do.
        while_down = [
            a for a in answers if stopped_at <= a.sent and a.sent + a.seconds <= restart_at
        ]
        assert while_down and all(a.status == 503 for a in while_down)
        for a in refused:
            assert a.seconds < FAST_S
            assert a.headers["content-type"] == PROBLEM_JSON
            assert a.headers["retry-after"] == "5"
            assert a.body["status"] == 503
            assert a.body["type"].endswith("/database-unavailable")
            assert "database" in a.body["detail"] and "unavailable" in a.body["detail"]
            assert "retry" in a.body["detail"]
        first_ok_after = min(a.sent + a.seconds for a in ok if a.sent >= stopped_at)

        # Every acknowledged decision is in the trail once, where it was said to be.
        trail = instance.access.trail("CN-A")
        entries = {row.seq: json.loads(row.body) for row in trail.entries()}
        acknowledged = {a.body["decision_id"]: a for a in ok}
        assert len(acknowledged) == len(ok)  # no decision id was answered twice
        for decision_id, a in acknowledged.items():
            entry = entries[a.body["trail_seq"]]
            assert entry["decision_id"] == decision_id
            assert entry["at"] == a.body["decided_at"].replace("Z", "+00:00")
        unacknowledged = len(entries) - len(acknowledged)
        assert 0 <= unacknowledged <= len(refused)  # only a commit whose answer was lost
        assert sorted(entries) == list(range(len(entries)))

        account = base.members["CN-A"].account
        anchor_trail(instance, "CN-A", instance.member_keys("CN-A").account)
        report = verify_member_trail(instance, "CN-A", account.address)
        assert (report.entries, report.unanchored) == (len(entries), 0)

    print(
        f"\npg restart: {CLIENTS} clients, {len(answers)} checks, {len(ok)} answered 200, "
        f"{len(refused)} answered 503 (slowest {max(a.seconds for a in refused):.3f} s); "
        f"pg_ctl stop took "
        f"{stopped_at - down_at:.2f} s, then down {restart_at - stopped_at:.1f} s; pg_ctl start "
        f"took {up_at - restart_at:.2f} s and the first 200 came "
        f"{first_ok_after - restart_at:.2f} s after it began; trail {len(entries)} entries, "
        f"{unacknowledged} committed but unanswered; verified"
    )
