"""Benchmark the event indexer: contract events ingested per second into SQLite and PostgreSQL.

Deploys a consortium on a Hardhat node (``--rpc URL``, or one this script starts on a
free 127.0.0.1 port and stops afterwards), registers ``--resources`` resources through
:meth:`ConsortiumContracts.register_resources` (every ``--link-every``-th with a
provenance link), then times, for each database:

(a) a fresh :meth:`Indexer.sync` from the deployment block — reading the logs from the
    node, decoding them and writing the index, in the indexer's own transactions;
(b) the baseline: the first ``--baseline`` of the same logs applied one event per
    transaction (the logs already read).

SQLite is a fresh file (WAL, synchronous=FULL, as an instance runs it). With
``--database URL`` (a PostgreSQL server whose user may create databases) each run also
gets a fresh database there, dropped afterwards.

    python scripts/bench/indexer.py [--rpc URL] [--database URL] [--resources 20000]
                                    [--link-every 10] [--baseline 2000]

Prints a table, then, as its last line, one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from time import perf_counter

from _consortium import open_consortium, resource_inputs, rpc_node
from sqlalchemy import create_engine, func, text
from sqlalchemy.engine import make_url
from sqlmodel import select

from ledger.chain import RawLog
from ledger.indexer import Indexer
from ledger.onchain import ConsortiumContracts
from ledger.store import Database, ProvenanceRow, ResourceRow


@contextmanager
def fresh_database(kind: str, folder: Path, server: str | None, n: int) -> Iterator[Database]:
    """An empty database at the newest schema: a SQLite file, or one made on ``server``."""
    if kind == "sqlite":
        db = Database.sqlite(folder / f"index-{n}.sqlite")
        try:
            yield db
        finally:
            db.close()
        return
    assert server is not None
    base = make_url(server)
    if base.drivername == "postgresql":
        base = base.set(drivername="postgresql+psycopg")
    name = f"libshare_bench_{os.getpid()}_{n}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
        db = Database(base.set(database=name).render_as_string(hide_password=False))
        try:
            yield db
        finally:
            db.close()
            with admin.connect() as conn:
                conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    finally:
        admin.dispose()


def rows(db: Database) -> tuple[int, int]:
    with db.session() as session:
        resources = session.exec(select(func.count()).select_from(ResourceRow)).one()
        links = session.exec(select(func.count()).select_from(ProvenanceRow)).one()
    return int(resources), int(links)


def bench_sync(contracts: ConsortiumContracts, db: Database) -> tuple[int, float]:
    """A fresh sync from the deployment block; (events applied, seconds)."""
    indexer = Indexer(contracts.chain, contracts, db)
    start = perf_counter()
    applied = indexer.sync()
    return applied, perf_counter() - start


def bench_one_per_transaction(
    contracts: ConsortiumContracts, db: Database, logs: list[RawLog]
) -> float:
    """Apply ``logs`` one per database transaction; seconds."""
    indexer = Indexer(contracts.chain, contracts, db)
    start = perf_counter()
    for log in logs:
        with db.session() as session:
            indexer._apply(session, [log])  # the step sync takes per batch, per event here
    return perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rpc", help="a JSON-RPC node to use instead of starting Hardhat")
    parser.add_argument("--database", help="a PostgreSQL URL to measure too")
    parser.add_argument("--resources", type=int, default=20_000)
    parser.add_argument("--link-every", type=int, default=10)
    parser.add_argument("--baseline", type=int, default=2_000)
    args = parser.parse_args()

    kinds = ["sqlite"] + (["postgresql"] if args.database else [])
    results: dict[str, dict[str, float]] = {}
    with rpc_node(args.rpc) as url, tempfile.TemporaryDirectory(prefix="libshare-bench-") as tmp:
        folder = Path(tmp)
        consortium = open_consortium(folder / "instance", url)
        try:
            contracts = consortium.contracts
            client = str(contracts.chain.w3.client_version)
            items = resource_inputs(
                "idx", args.resources, consortium.licence_id, link_every=args.link_every
            )
            start = perf_counter()
            contracts.register_resources(consortium.member.account, items)
            produce_s = perf_counter() - start
            first, last = contracts.deployment.block, contracts.chain.block_number()
            addresses = [c.address for c in contracts.by_name().values()]
            start = perf_counter()
            logs = contracts.chain.logs(addresses, first, last)
            fetch_s = perf_counter() - start
            for n, kind in enumerate(kinds):
                with fresh_database(kind, folder, args.database, 2 * n) as db:
                    applied, sync_s = bench_sync(contracts, db)
                    assert rows(db) == (len(items), sum(len(i.links) for i in items))
                with fresh_database(kind, folder, args.database, 2 * n + 1) as db:
                    baseline = logs[: args.baseline]
                    single_s = bench_one_per_transaction(contracts, db, baseline)
                results[kind] = {
                    "events": applied,
                    "sync_s": sync_s,
                    "events_per_s": applied / sync_s,
                    "baseline_events": len(baseline),
                    "baseline_events_per_s": len(baseline) / single_s,
                }
        finally:
            consortium.instance.close()

    print(
        f"python {platform.python_version()} on {platform.machine()}, node {client}; "
        f"{len(logs):,} logs in {last - first + 1} blocks, produced in {produce_s:.1f} s, "
        f"read from the node in {fetch_s:.2f} s"
    )
    print(f"{'database':<11} {'measure':<36} {'events':>8} {'events/s':>10}")
    for kind, r in results.items():
        print(f"{kind:<11} {'Indexer.sync from scratch':<36} {r['events']:>8,.0f} "
              f"{r['events_per_s']:>10,.0f}")  # fmt: skip
        print(f"{kind:<11} {'one event per transaction (baseline)':<36} "
              f"{r['baseline_events']:>8,.0f} {r['baseline_events_per_s']:>10,.0f}")  # fmt: skip
    figures: dict[str, object] = {
        "node": client,
        "resources": args.resources,
        "logs": len(logs),
        "logs_read_s": round(fetch_s, 3),
    }
    for kind, r in results.items():
        figures[f"{kind}_events"] = int(r["events"])
        figures[f"{kind}_events_per_s"] = round(r["events_per_s"])
        figures[f"{kind}_one_per_txn_events_per_s"] = round(r["baseline_events_per_s"])
    if "postgresql" not in results:
        figures["postgresql_events_per_s"] = None  # not measured: no --database
    sys.stdout.flush()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
