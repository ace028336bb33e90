"""kill -9 `libshare serve` under access checks, restart it: no acknowledged decision is
lost or duplicated, counters match the trail, and the trail verifies against the chain.

A consortium on the embedded chain (the HTTP benchmark's set-up, few resources) is served
by a real `libshare serve` process. Concurrent clients send whole-book and article copy
requests, each a distinct (patron, resource) pair, so that every trail entry can be
traced back to the one request it records. After ``BEFORE_KILL`` answers 200 the server
gets SIGKILL with requests in flight; it is restarted on the same data dir and the load
goes on for ``AFTER_RESTART`` more answers. Then the trail is read back with
`libshare audit export` and checked by `libshare audit verify`:

- every acknowledged decision is in the trail once, at the seq it was answered with, as
  it was answered; seqs run 0..size-1;
- every entry records exactly one request that was sent, and the only entries nobody was
  answered for are requests that were in flight at the kill (committed, answer lost);
- per patron, the first three whole-book copies were allowed and every later one denied
  ``limit_exceeded`` (the limit held across the crash), and the stored counter equals
  the allowed copies the trail records;
- the export verifies against the heads the restarted service anchored.
"""

from __future__ import annotations

import contextlib
import json
import random
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest

from ledger.keys import Keystore
from tests.faults._harness import (
    PASSWORD,
    ROOT,
    Load,
    Server,
    free_port,
    parse_time,
    serve_env,
    set_up_consortium,
)

pytestmark = pytest.mark.slow

RESOURCES, LICENCES = 30, 2
PATRONS = 150
REQUESTS = 1200  # upper bound on checks sent in the whole test
BEFORE_KILL = 400  # answers 200 before the SIGKILL
AFTER_RESTART = 400  # answers 200 after the restart
CONCURRENCY = 16
MAX_PHASE_S = 120.0
WHOLE_BOOK_LIMIT = 3  # consortium_terms: whole-book copies per patron per calendar year
ANCHOR_WAIT_S = 60.0


def _bodies(resource_ids: list[str]) -> list[dict[str, str]]:
    """Distinct (patron, resource) pairs; 85 % whole-book copies, the rest article copies."""
    rnd = random.Random(9)
    pairs = rnd.sample(range(PATRONS * len(resource_ids)), REQUESTS)
    return [
        {
            "resource_id": resource_ids[pair % len(resource_ids)],
            "requesting_member": "CN-B",
            "patron_id": f"patron-{pair // len(resource_ids)}",
            "patron_category": "faculty",
            "purpose": "research",
            "method": "copy",
            "scope": "whole" if rnd.random() < 0.85 else "part",
            "destination_country": "CN",
        }
        for pair in pairs
    ]


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _wait_anchored(server: Server, token: str) -> tuple[int, float]:
    """Wait (bounded) until CN-A's whole trail is anchored; return (size, seconds waited)."""
    t0 = time.monotonic()
    while True:
        response = httpx.get(
            f"{server.url}/v1/audit/heads",
            params={"member": "CN-A"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        heads = response.json()
        anchored = heads["anchored"][-1]["size"] if heads["anchored"] else 0
        if anchored == heads["trail_size"]:
            return anchored, time.monotonic() - t0
        assert time.monotonic() - t0 < ANCHOR_WAIT_S, (
            f"trail of {heads['trail_size']} entries still anchored only to {anchored} "
            f"after {ANCHOR_WAIT_S:.0f} s:\n{server.tail()}"
        )
        time.sleep(0.5)


def _read_export(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return lines[0], [line for line in lines if line["type"] == "entry"]


def test_kill9_under_load_loses_and_duplicates_no_acknowledged_decision(tmp_path: Path) -> None:
    t_setup = time.monotonic()
    consortium = set_up_consortium(tmp_path / "data", resources=RESOURCES, licences=LICENCES)
    setup_s = time.monotonic() - t_setup
    env = serve_env(consortium.data_dir, anchor_every_seconds="2", anchor_every_entries="200")
    bodies = _bodies(consortium.resource_ids)
    server = Server(env, free_port(), tmp_path / "serve.log")
    try:
        server.start()
        load = Load(server.url, consortium.delivery_token, bodies, CONCURRENCY)
        killed_at: list[float] = []

        def kill_after_enough(current: Load) -> bool:
            if not killed_at and len(current.acknowledged) >= BEFORE_KILL:
                killed_at.append(time.monotonic())
                server.kill9()
            return bool(killed_at)

        load.run(kill_after_enough, MAX_PHASE_S)
        assert killed_at, f"only {len(load.acknowledged)} answers 200 before the time limit"
        phase1 = list(load.answers)

        restart_s = server.start()
        first_ok = len(load.answers)
        load.run(
            lambda current: len(current.acknowledged) >= BEFORE_KILL + AFTER_RESTART, MAX_PHASE_S
        )
        phase2 = load.answers[first_ok:]
        first_after = min(
            (a.sent + a.seconds for a in phase2 if a.ok), default=float("nan")
        )  # the first 200 after the kill

        anchored, anchor_wait_s = _wait_anchored(server, consortium.auditor_token)
        assert server.stop(), server.tail()

        export = tmp_path / "cn-a.jsonl"
        exported = _cli(env, "audit", "export", "--member", "CN-A", "-o", str(export))
        assert exported.returncode == 0, exported.stderr
        verified = _cli(env, "audit", "verify", str(export))
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert verified.stdout.startswith("OK: ") and ", 0 unanchored" in verified.stdout
    finally:
        server.stop()

    # Every request sent got a 200, except those in flight when the server was killed.
    after_kill = [a for a in phase1 if a.status is None]
    assert all(a.ok for a in phase2), [(a.status, a.body or a.error) for a in phase2 if not a.ok]
    assert all(a.ok or a.status is None for a in phase1), [
        (a.status, a.body) for a in phase1 if not a.ok and a.status is not None
    ]
    assert all(a.sent < killed_at[0] <= a.sent + a.seconds for a in after_kill)  # by the kill
    acked = {a.request: a for a in load.acknowledged}
    assert len(acked) == len(load.acknowledged) >= BEFORE_KILL + AFTER_RESTART

    header, entries = _read_export(export)
    size = header["size"]
    assert [e["seq"] for e in entries] == list(range(size)) and size == anchored
    bodies_at = {e["seq"]: e["body"] for e in entries}

    # Each entry records one sent request, traced by its (pseudonym, resource) pair.
    member = Keystore(consortium.data_dir / "keys", PASSWORD).load("CN-B")
    at = parse_time(entries[0]["body"]["at"])
    by_pair = {
        (member.pseudonym(b["patron_id"], at), b["resource_id"]): n for n, b in enumerate(bodies)
    }
    recorded = Counter(by_pair[(e["body"]["patron"], e["body"]["resource_id"])] for e in entries)
    duplicated = {n: count for n, count in recorded.items() if count > 1}
    assert not duplicated, f"requests recorded more than once: {duplicated}"
    sent = {a.request for a in load.answers}
    assert set(recorded) <= sent

    # Every acknowledged decision is in the trail, where and as it was answered.
    for request, answer in acked.items():
        got = answer.body
        assert got is not None
        entry = bodies_at[got["trail_seq"]]
        assert entry["decision_id"] == got["decision_id"] == f"CN-A:{got['trail_seq']}"
        assert parse_time(entry["at"]) == parse_time(got["decided_at"])
        assert (entry["decision"], entry["reason"], entry["licence_id"]) == (
            got["decision"], got["reason"], got["licence_id"]
        )  # fmt: skip
        assert by_pair[(entry["patron"], entry["resource_id"])] == request
    unacked_recorded = set(recorded) - set(acked)
    assert unacked_recorded <= {a.request for a in after_kill}

    # The whole-book limit held across the crash, and the counters equal the trail.
    whole: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in entries:
        if e["body"]["scope"] == "whole":
            whole[e["body"]["patron"]].append(e["body"])
    for patron, decisions in whole.items():
        allowed = [d["decision"] == "allow" for d in decisions]
        n_allowed = min(WHOLE_BOOK_LIMIT, len(decisions))
        assert allowed == [True] * n_allowed + [False] * (len(decisions) - n_allowed), patron
        assert all(d["reason"] == "limit_exceeded" for d in decisions[n_allowed:]), patron
    restart_seq = min(a.body["trail_seq"] for a in phase2 if a.body is not None)
    spanning = sum(
        1
        for decisions in whole.values()
        if int(decisions[0]["decision_id"].split(":")[1]) < restart_seq
        and int(decisions[-1]["decision_id"].split(":")[1]) >= restart_seq
    )
    denied = sum(d["decision"] == "deny" for decisions in whole.values() for d in decisions)
    assert spanning and denied  # the limit was reached, by patrons served on both sides
    database = f"file:{consortium.data_dir / 'libshare.sqlite'}?mode=ro"
    with contextlib.closing(sqlite3.connect(database, uri=True)) as db:
        rows = db.execute(
            "SELECT key, value FROM counter WHERE key LIKE 'whole_book_copies|patron|%'"
        ).fetchall()
    counters = {key.split("|")[2]: value for key, value in rows}
    expected = {
        patron: sum(d["decision"] == "allow" for d in decisions)
        for patron, decisions in whole.items()
    }
    assert counters == {p: n for p, n in expected.items() if n}

    print(
        f"\nkill -9: set-up {setup_s:.0f} s ({RESOURCES} resources, {PATRONS} patrons, "
        f"concurrency {CONCURRENCY}); {sum(a.ok for a in phase1)} checks acknowledged before "
        f"the kill, {len(after_kill)} in flight at the kill ({len(unacked_recorded)} of them "
        f"committed, their answers lost; {len(after_kill) - len(unacked_recorded)} not "
        f"recorded); restart answered /v1/health after {restart_s:.1f} s, first check 200 "
        f"{first_after - killed_at[0]:.1f} s after the kill; {sum(a.ok for a in phase2)} "
        f"acknowledged after; trail {size} entries, {len(whole)} patrons with whole-book "
        f"copies ({spanning} served before and after the kill), {sum(expected.values())} "
        f"allowed and counted, {denied} denied limit_exceeded; anchored {anchor_wait_s:.1f} s "
        f"after the load; `audit verify`: {verified.stdout.strip()}"
    )
