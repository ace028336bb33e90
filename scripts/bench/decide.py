"""Benchmark the access decision: ``counters_needed`` + ``evaluate`` on the consortium terms.

Runs a mixed, realistic stream of share requests (article and whole-book copies, loans,
international deliveries in and out of the free-delivery month, and the usual denials)
against an in-memory counter store, timing each decision on its own. Beside it, in the
same run and loop, it times the floor: an empty timed interval, one dict lookup, and
building the ``Request`` the caller has to build anyway.

    python scripts/bench/decide.py [--n 100000] [--warmup 10000] [--seed 2026]

Prints a table, then, as its last line, one JSON object with the figures (microseconds).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from time import perf_counter_ns

from ledger.licence import (
    CounterKey,
    Licence,
    Method,
    PatronCategory,
    Purpose,
    Request,
    Scope,
    consortium_terms,
    counters_needed,
    evaluate,
)

# (weight, method, scope, purpose, category, international)
_MIX = [
    (50, Method.copy, Scope.part, Purpose.research, PatronCategory.student, False),
    (12, Method.copy, Scope.whole, Purpose.personal_study, PatronCategory.faculty, False),
    (8, Method.secure_electronic, Scope.part, Purpose.teaching, PatronCategory.faculty, False),
    (8, Method.loan, Scope.whole, Purpose.research, PatronCategory.staff, False),
    (10, Method.copy, Scope.part, Purpose.research, PatronCategory.student, True),
    (4, Method.copy, Scope.whole, Purpose.research, PatronCategory.student, True),
    (3, Method.copy, Scope.part, Purpose.commercial, PatronCategory.student, False),
    (3, Method.copy, Scope.part, Purpose.research, PatronCategory.walk_in, False),
    (2, Method.print, Scope.part, Purpose.research, PatronCategory.student, False),
]
_MEMBERS = ["CN-XJTU", "CN-FDU", "CN-SJTU", "CN-ZJU", "CN-NJU", "CN-WHU"]
_ABROAD = ["US", "DE", "JP", "GB", "HK"]
_YEAR = datetime(2026, 1, 1, tzinfo=UTC)


def _fields(rnd: random.Random) -> dict[str, object]:
    _, method, scope, purpose, category, international = rnd.choices(
        _MIX, weights=[m[0] for m in _MIX]
    )[0]
    # A third of the traffic falls in the free-delivery month (March), the rest over the year.
    day = rnd.randrange(59, 90) if rnd.random() < 0.33 else rnd.randrange(0, 365)
    at = _YEAR + timedelta(days=day, seconds=rnd.randrange(86_400))
    return {
        "resource_id": f"res:PKU:{rnd.randrange(20_000):05d}",
        "title_id": f"title:{rnd.randrange(15_000):05d}" if rnd.random() < 0.9 else None,
        "requesting_member": rnd.choice(_MEMBERS),
        "requesting_tier": rnd.randrange(1, 4),
        "patron": f"{rnd.getrandbits(256):064x}"
        if rnd.random() < 0.3
        else f"p{rnd.randrange(2_000)}",
        "patron_category": category,
        "purpose": purpose,
        "method": method,
        "scope": scope,
        "destination_country": rnd.choice(_ABROAD) if international else "CN",
        "campaign": None,
        "at": at,
    }


def _pct(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000


def run(n: int, warmup: int, seed: int) -> dict[str, object]:
    """Time ``n`` decisions after ``warmup`` untimed ones; return the figures in µs."""
    rnd = random.Random(seed)
    licence = Licence(licence_id=1, version=1, licensor="CN-PKU", terms=consortium_terms())
    fields = [_fields(rnd) for _ in range(n + warmup)]
    store: dict[CounterKey, int] = {}
    probe = {"k": 1}
    decide_ns: list[int] = []
    floor_ns: list[int] = []
    lookup_ns: list[int] = []
    build_ns: list[int] = []
    outcomes: Counter[str] = Counter()
    for i, kw in enumerate(fields):
        t0 = perf_counter_ns()
        request = Request(**kw)  # type: ignore[arg-type]
        t1 = perf_counter_ns()
        keys = counters_needed(licence, request)
        t2 = perf_counter_ns()
        counters = {k: store.get(k, 0) for k in keys}  # the store read: the caller's I/O
        t3 = perf_counter_ns()
        decision = evaluate(licence, request, counters)
        t4 = perf_counter_ns()
        for k in decision.increments:
            store[k] = store.get(k, 0) + 1
        t5 = perf_counter_ns()
        t6 = perf_counter_ns()
        probe.get("k")
        t7 = perf_counter_ns()
        if i < warmup:
            continue
        build_ns.append(t1 - t0)
        decide_ns.append((t2 - t1) + (t4 - t3))
        floor_ns.append(t6 - t5)
        lookup_ns.append(t7 - t6)
        outcomes[decision.reason] += 1
    rows = {
        "decide": decide_ns,
        "baseline_timer_floor": floor_ns,
        "baseline_dict_lookup": lookup_ns,
        "baseline_build_request": build_ns,
    }
    return {
        "bench": "decide",
        "n": n,
        "python": platform.python_version(),
        **{
            f"{name}_{stat}_us": round(f(values), 3)
            for name, values in rows.items()
            for stat, f in (
                ("median", lambda v: statistics.median(v) / 1000),
                ("p99", lambda v: _pct(v, 0.99)),
            )
        },
        "reasons": dict(sorted(outcomes.items())),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--warmup", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    figures = run(args.n, args.warmup, args.seed)
    print(f"access decision benchmark — {args.n} requests, CPython {figures['python']}")
    print(f"{'what':<34}{'median µs':>12}{'p99 µs':>12}")
    for name in (
        "decide",
        "baseline_build_request",
        "baseline_dict_lookup",
        "baseline_timer_floor",
    ):
        label = "counters_needed + evaluate" if name == "decide" else name.replace("_", " ")
        print(f"{label:<34}{figures[f'{name}_median_us']:>12.3f}{figures[f'{name}_p99_us']:>12.3f}")
    reasons = figures["reasons"]
    assert isinstance(reasons, dict)
    print("outcomes: " + ", ".join(f"{k} {v}" for k, v in reasons.items()))
    sys.stdout.write(json.dumps(figures, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
