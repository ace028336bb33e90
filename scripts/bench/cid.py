"""Benchmark ledger.cid against raw sha-256 (and optionally an IPFS daemon).

Writes a random file of ``--size-mib`` MiB into a temporary directory (deleted after),
then times, each in a fresh child process so that its peak RSS is its own:

* ``cid_of_file`` under ``kubo-v0`` computing the CID alone, as ``libshare cid`` does;
* ``cid_of_file`` under ``kubo-v0`` and ``unixfs-v1-2025`` computing the CID and the
  whole-file sha-256 in one pass, as the content store uses it;
* raw ``hashlib.sha256`` over the same file, read the same way: the physical limit;
* with ``--ipfs-api URL``, a daemon's ``/api/v0/add?only-hash=true`` on the same bytes,
  under the kubo-v0 options (its CID must equal ``cid_of_file kubo-v0``'s). The js-ipfs
  daemon of ``services/ipfs`` runs only in a private network namespace:
  ``unshare -n bash -c 'ip link set lo up; bash .ci/services.sh start; python
  scripts/bench/cid.py --ipfs-api http://127.0.0.1:5002; bash .ci/services.sh stop'``.

Prints a table, then one JSON object with the figures on the last line.

    python scripts/bench/cid.py --size-mib 256 [--repeat 3] [--ipfs-api http://127.0.0.1:5002]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any

_PIECE = 8 << 20


def _child(kind: str, path: str, repeat: int) -> None:
    """Run one measurement in this (child) process and print it as JSON."""
    from ledger.cid import Profile, cid_of_file

    best = float("inf")
    cid = ""
    for _ in range(repeat):
        start = time.perf_counter()
        if kind == "sha256":
            digest = hashlib.sha256()
            buffer = memoryview(bytearray(_PIECE))
            with open(path, "rb", buffering=0) as handle:
                while n := handle.readinto(buffer):
                    digest.update(buffer[:n])
            cid = digest.hexdigest()
        elif kind.endswith("+sha256"):
            cid = cid_of_file(path, Profile(kind.removesuffix("+sha256"))).cid
        else:
            cid = cid_of_file(path, Profile(kind), sha256=False).cid
        best = min(best, time.perf_counter() - start)
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"seconds": best, "rss_mib": rss_mib, "result": cid}))


def _measure(kind: str, path: str, repeat: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, path, str(repeat)],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _ipfs(url: str, path: str, repeat: int) -> dict[str, Any]:
    import httpx

    best = float("inf")
    cid = ""
    for _ in range(repeat):
        start = time.perf_counter()
        with open(path, "rb") as handle:
            response = httpx.post(
                f"{url.rstrip('/')}/api/v0/add",
                params={
                    "only-hash": "true",
                    "pin": "false",
                    "quieter": "true",
                    # kubo-v0, spelt out: daemons differ in their defaults
                    "cid-version": "0",
                    "raw-leaves": "false",
                    "chunker": "size-262144",
                },
                files={"file": ("bench.bin", handle)},
                timeout=600,
            )
        response.raise_for_status()
        cid = json.loads(response.text.strip().splitlines()[-1])["Hash"]
        best = min(best, time.perf_counter() - start)
    return {"seconds": best, "rss_mib": None, "result": cid}


def main() -> None:
    """Parse the command line, run the measurements, print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs")
    parser.add_argument("--ipfs-api", default=None, help="e.g. http://127.0.0.1:5002")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "PATH", "REPEAT"), help="internal")
    args = parser.parse_args()
    if args.child:
        kind, path, repeat = args.child
        _child(kind, path, int(repeat))
        return

    size = args.size_mib << 20
    with tempfile.TemporaryDirectory(prefix="libshare-bench-") as tmp:
        path = os.path.join(tmp, "bench.bin")
        with open(path, "wb") as handle:
            left = size
            while left:
                n = min(left, _PIECE)
                handle.write(os.urandom(n))
                left -= n
        rows: dict[str, dict[str, Any] | None] = {}
        rows["sha256"] = _measure("sha256", path, args.repeat)
        rows["kubo-v0"] = _measure("kubo-v0", path, args.repeat)
        rows["kubo-v0+sha256"] = _measure("kubo-v0+sha256", path, args.repeat)
        rows["unixfs-v1-2025+sha256"] = _measure("unixfs-v1-2025+sha256", path, args.repeat)
        rows["ipfs-daemon"] = _ipfs(args.ipfs_api, path, args.repeat) if args.ipfs_api else None

    raw = args.size_mib / rows["sha256"]["seconds"]  # type: ignore[index]
    figures: dict[str, Any] = {"size_mib": args.size_mib, "cpus": os.cpu_count()}
    print(f"{'what':<36}{'MiB/s':>10}{'x sha256':>10}{'peak RSS MiB':>14}  result")
    for name, row in rows.items():
        label = {"sha256": "raw hashlib sha-256", "ipfs-daemon": "IPFS add?only-hash"}.get(
            name, f"cid_of_file {name}"
        )
        if row is None:
            print(f"{label:<36}{'not measured':>10}")
            figures[name] = None
            continue
        speed = args.size_mib / row["seconds"]
        rss = "-" if row["rss_mib"] is None else f"{row['rss_mib']:.1f}"
        print(f"{label:<36}{speed:>10.0f}{speed / raw:>10.2f}{rss:>14}  {row['result']}")
        figures[name] = {
            "mib_s": round(speed, 1),
            "ratio_to_sha256": round(speed / raw, 3),
            "peak_rss_mib": None if row["rss_mib"] is None else round(row["rss_mib"], 1),
            "result": row["result"],
        }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
