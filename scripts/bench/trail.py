"""Benchmark the usage trail: durable appends per second, and `audit verify` of a big export.

(a) Appends realistic ~600-byte canonical JSON decision entries to a :class:`Trail` on
    SQLite (WAL, synchronous=FULL), in group-commit batches as the access service writes
    them (``trail.begin`` / ``append`` / ``write`` / commit / ``promote``), and beside it
    the baseline of one transaction per entry.
(b) Generates an export (format version 2) of ``--entries`` entries with a consistent set
    of heads (computed with :mod:`ledger.merkle`), then times :func:`verify_export_file`
    over it (heads passed in, no chain; as ``libshare audit verify`` runs it) beside the
    baseline of reading and ``json.loads``-ing every line. ``--v1`` also writes the same
    trail in format version 1 and times its verification.

    python scripts/bench/trail.py [--appends 100000] [--batch 256] [--single 2000]
                                  [--entries 1000000] [--seed 2026] [--v1]

Prints a table, then, as its last line, one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from time import perf_counter

from ledger import merkle
from ledger.access import canonical_entry
from ledger.audit import Head
from ledger.store import Database
from ledger.trail import Trail
from ledger.trail_export import verify_export_file

_YEAR = datetime(2026, 1, 1, tzinfo=UTC)
_MEMBERS = ["CN-XJTU", "CN-FDU", "CN-SJTU", "CN-ZJU", "CN-NJU", "CN-WHU"]
_OUTCOMES = [
    ("allow", "allowed", ["attribute", "watermark"]),
    ("allow", "allowed", ["attribute", "delete-after-30-days"]),
    ("deny", "limit_exceeded", []),
    ("deny", "no_licence", []),
]


def entry(rnd: random.Random, n: int) -> bytes:
    """One realistic decision entry (the shape of ``ledger.access._entry``), canonical."""
    decision, reason, obligations = rnd.choice(_OUTCOMES)
    fee = rnd.choice([None, 0, 1500, 4200]) if decision == "allow" else None
    at = _YEAR + timedelta(seconds=n * 7 + rnd.randrange(7), microseconds=rnd.randrange(10**6))
    return canonical_entry(
        {
            "v": 1,
            "decision_id": f"0x{rnd.getrandbits(256):064x}",
            "at": at.isoformat(),
            "supplier": "CN-PKU",
            "resource_id": f"0x{rnd.getrandbits(256):064x}",
            "requesting_member": rnd.choice(_MEMBERS),
            "patron": f"{rnd.getrandbits(256):064x}",
            "patron_category": rnd.choice(["student", "faculty", "staff"]),
            "purpose": rnd.choice(["research", "teaching", "personal_study"]),
            "method": rnd.choice(["copy", "loan", "secure_electronic"]),
            "scope": rnd.choice(["part", "whole"]),
            "destination_country": rnd.choice(["CN", "CN", "CN", "US", "DE", "JP"]),
            "campaign": rnd.choice([None, None, "free-month"]),
            "decision": decision,
            "reason": reason,
            "term": "consortium-2026" if decision == "allow" else None,
            "licence_id": rnd.randrange(1, 400),
            "licence_version": rnd.randrange(1, 4),
            "fee_minor": fee,
            "currency": "CNY" if fee is not None else None,
            "obligations": obligations,
        }
    )


def bench_appends(folder: Path, bodies: list[bytes], batch: int) -> float:
    """Append ``bodies`` in transactions of ``batch`` entries; return entries per second."""
    db = Database(f"sqlite:///{folder / f'trail-{batch}.sqlite'}")
    trail = Trail(db, "CN-PKU")
    try:
        start = perf_counter()
        for i in range(0, len(bodies), batch):
            with trail.lock, db.session() as session:  # one durable transaction per batch
                appender = trail.begin(session)
                for body in bodies[i : i + batch]:
                    appender.append(body)
                appender.write()
            trail.promote(appender)  # after the commit, as AccessService._process does
        elapsed = perf_counter() - start
        assert trail.head().size == len(bodies)
        return len(bodies) / elapsed
    finally:
        db.close()


def write_export(path: Path, n: int, seed: int, v1: Path | None = None) -> list[Head]:
    """Write an export of ``n`` entries; return heads at about 1/3, 2/3 and 9/10 of it.

    With ``v1``, also write the same export in format version 1 there.
    """
    rnd = random.Random(seed)
    sizes = sorted({max(1, n // 3), max(1, 2 * n // 3), max(1, 9 * n // 10)})
    frontier = merkle.CompactRange()
    heads: list[Head] = []
    dumps = json.dumps
    old = v1.open("w", encoding="utf-8", newline="\n") if v1 is not None else None
    with path.open("w", encoding="utf-8", newline="\n") as out:
        header = {
            "type": "libshare-trail",
            "version": 2,
            "member": "CN-PKU",
            "account": "0x" + "ab" * 20,
            "chain_id": 1337,
            "trail_anchor": "0x" + "cd" * 20,
            "exported_at": _YEAR.isoformat(),
            "size": n,
        }
        out.write(dumps(header, separators=(",", ":")) + "\n")
        if old is not None:
            old.write(dumps(dict(header, version=1), separators=(",", ":")) + "\n")
        for seq in range(n):
            body = entry(rnd, seq)
            leaf = merkle.leaf_hash(body)
            frontier.append(leaf)
            text = body.decode()
            out.write(f'{{"type":"entry","seq":{seq},"leaf_hash":"{leaf.hex()}","body":{text}}}\n')
            if old is not None:
                line = {"type": "entry", "seq": seq, "leaf_hash": leaf.hex(), "body": text}
                old.write(dumps(line, separators=(",", ":"), ensure_ascii=False) + "\n")
            if frontier.size in sizes:
                heads.append(Head(frontier.size, bytes(frontier.root()), seq, "0x" + "00" * 32))
        for h in heads:
            line = {"type": "head", "size": h.size, "root": h.root.hex(), "block": h.block}
            text = dumps(dict(line, tx=h.tx_hash), separators=(",", ":")) + "\n"
            out.write(text)
            if old is not None:
                old.write(text)
    if old is not None:
        old.close()
    return heads


def bench_parse(path: Path) -> float:
    """Time reading + json.loads of every line (the baseline); return seconds."""
    start = perf_counter()
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            json.loads(line)
    return perf_counter() - start


def bench_verify(path: Path, heads: list[Head]) -> tuple[float, int]:
    """Time verify_export_file as `audit verify` calls it; return seconds and entries."""
    start = perf_counter()
    report = verify_export_file(path, heads)
    verify_s = perf_counter() - start
    assert report.heads == len(heads) and report.file_heads == len(heads)
    return verify_s, report.entries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--appends", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--single", type=int, default=2_000)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--v1", action="store_true", help="also time a format version 1 export")
    args = parser.parse_args()

    rnd = random.Random(args.seed)
    bodies = [entry(rnd, n) for n in range(args.appends)]
    mean_bytes = sum(map(len, bodies)) / len(bodies)
    with tempfile.TemporaryDirectory(prefix="libshare-bench-trail-") as tmp:
        folder = Path(tmp)
        grouped = bench_appends(folder, bodies, args.batch)
        single = bench_appends(folder, bodies[: args.single], 1)
        export = folder / "trail.jsonl"
        export_v1 = folder / "trail-v1.jsonl" if args.v1 else None
        gen_start = perf_counter()
        heads = write_export(export, args.entries, args.seed, export_v1)
        gen_s = perf_counter() - gen_start
        size_mb = export.stat().st_size / 1e6
        parse_s = bench_parse(export)
        verify_s, entries = bench_verify(export, heads)
        verify_v1_s = bench_verify(export_v1, heads)[0] if export_v1 is not None else None

    rows = [
        (f"append, group commit ({args.batch}/txn)", f"{args.appends:,}", f"{grouped:,.0f} /s"),
        ("append, one txn per entry (baseline)", f"{args.single:,}", f"{single:,.0f} /s"),
        ("read + json.loads lines (baseline)", f"{entries:,}", f"{parse_s:.2f} s"),
        ("verify_export_file (format 2, 2 cores)", f"{entries:,}", f"{verify_s:.2f} s"),
    ]
    if verify_v1_s is not None:
        rows.append(("verify_export_file (format 1)", f"{entries:,}", f"{verify_v1_s:.2f} s"))
    print(
        f"python {platform.python_version()} on {platform.machine()}, entries ~{mean_bytes:.0f} B,"
        f" export {size_mb:.0f} MB (generated in {gen_s:.1f} s), {len(heads)} heads"
    )
    print(f"{'measure':<42} {'n':>10} {'result':>14}")
    for name, n, value in rows:
        print(f"{name:<42} {n:>10} {value:>14}")
    figures = {
        "python": platform.python_version(),
        "entry_bytes": round(mean_bytes),
        "appends_per_s_group_commit": round(grouped),
        "appends_per_s_single": round(single),
        "group_batch": args.batch,
        "verify_entries": entries,
        "verify_s": round(verify_s, 3),
        "parse_only_s": round(parse_s, 3),
        "verify_over_parse": round(verify_s / parse_s, 2),
        "verify_v1_s": round(verify_v1_s, 3) if verify_v1_s is not None else None,
    }
    sys.stdout.flush()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
