"""Benchmark ledger.sealed against raw AES-256-GCM over one big buffer (the floor).

Measures, over ``--size-mib`` MiB of random plaintext fed in 1 MiB chunks:

* ``seal``: :func:`ledger.sealed.seal`, output discarded as it streams;
* ``open``: :func:`ledger.sealed.open_sealed` over the sealed segments held in memory;
* ``aesgcm-encrypt`` / ``aesgcm-decrypt``: one ``AESGCM`` call over the whole buffer;
* ``seal-rss``: in a fresh child process, sealing the stream from a generator, the peak
  RSS beside the same child that only imports (what streaming adds).

Prints a table, then one JSON object with the figures on the last line.

    python scripts/bench/seal.py --size-mib 256 [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

_CHUNK = 1 << 20


def _best(repeat: int, run: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def _rss_child(mode: str, size_mib: int) -> None:
    """In a child: seal ``size_mib`` MiB from a generator (or only import); print RSS."""
    from ledger.sealed import new_data_key, seal

    if mode == "seal":
        chunk = os.urandom(_CHUNK)

        def source() -> Iterator[bytes]:
            for _ in range(size_mib):
                yield chunk

        for _ in seal(source(), new_data_key()):
            pass
    print(json.dumps({"rss_mib": _peak_rss_mib()}))


def _peak_rss_mib() -> float:
    """This process's peak RSS: VmHWM (per address space, so not inherited from the
    parent across exec as ``ru_maxrss`` is on Linux); ``ru_maxrss`` elsewhere."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss(mode: str, size_mib: int) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--size-mib", str(size_mib)],
        check=True,
        capture_output=True,
        text=True,
    )
    value: float = json.loads(out.stdout.strip().splitlines()[-1])["rss_mib"]
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", choices=["seal", "import"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _rss_child(args.child, args.size_mib)
        return

    base = _rss("import", args.size_mib)  # before this process grows: see _peak_rss_mib
    peak = _rss("seal", args.size_mib)

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from ledger.sealed import DEFAULT_SEGMENT_SIZE, new_data_key, open_sealed, seal

    size = args.size_mib << 20
    plaintext = os.urandom(size)
    chunks = [plaintext[i : i + _CHUNK] for i in range(0, size, _CHUNK)]
    key = new_data_key()
    sealed = list(seal(chunks, key))

    def run_seal() -> None:
        for _ in seal(chunks, key):
            pass

    def run_open() -> None:
        for _ in open_sealed(sealed, key):
            pass

    aead, nonce = AESGCM(key), os.urandom(12)
    whole = aead.encrypt(nonce, plaintext, None)
    results: dict[str, Any] = {
        "size_mib": args.size_mib,
        "segment_size": DEFAULT_SEGMENT_SIZE,
        "cpu": os.cpu_count(),
    }
    timings = {
        "seal": _best(args.repeat, run_seal),
        "open": _best(args.repeat, run_open),
        "aesgcm-encrypt": _best(args.repeat, lambda: aead.encrypt(nonce, plaintext, None)),
        "aesgcm-decrypt": _best(args.repeat, lambda: aead.decrypt(nonce, whole, None)),
    }
    rows = []
    for name, seconds in timings.items():
        mib_s = args.size_mib / seconds
        results[name.replace("-", "_") + "_mib_s"] = round(mib_s, 1)
        rows.append((name, seconds, mib_s))
    results["seal_rss_mib"] = round(peak, 1)
    results["seal_rss_added_mib"] = round(peak - base, 1)
    floor = timings["aesgcm-encrypt"]
    print(f"{'what':<16}{'seconds':>10}{'MiB/s':>10}{'x floor':>10}")
    for name, seconds, mib_s in rows:
        print(f"{name:<16}{seconds:>10.3f}{mib_s:>10.1f}{seconds / floor:>10.2f}")
    print(
        f"seal {args.size_mib} MiB from a generator: peak RSS {peak:.1f} MiB "
        f"({peak - base:+.1f} MiB over an import-only child)"
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
