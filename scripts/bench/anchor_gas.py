"""Gas per usage-trail entry when heads are anchored in batches with consistency proofs.

    python scripts/bench/anchor_gas.py [--entries 10000] [--baseline 200]

A member anchors one head covering 10,000 new entries; the TrailAnchor contract checks
the RFC 9162 consistency proof from the previous head with the SHA-256 precompile. The
figure is that transaction's gas divided by the entries it covers, for several starting
sizes (the proof length varies with them). In the same run, the baseline: recording each
share as its own transaction — one storage-slot update and an event per entry (a head
anchored after every single entry, which is what a per-share ledger write costs).

Prints a table, then, as its last line, one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

from eth_tester import EthereumTester, PyEVMBackend
from web3 import EthereumTesterProvider, Web3
from web3.contract import Contract

from ledger import merkle
from ledger.contracts import load_artifact

GAS = 29_000_000


def deploy(w3: Web3, name: str, *args: object) -> Contract:
    artifact = load_artifact(name)
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    receipt = w3.eth.wait_for_transaction_receipt(
        factory.constructor(*args).transact({"from": w3.eth.accounts[0]})
    )
    return w3.eth.contract(address=receipt["contractAddress"], abi=artifact.abi)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--baseline", type=int, default=200)
    args = parser.parse_args()

    w3 = Web3(EthereumTesterProvider(EthereumTester(PyEVMBackend())))
    members = w3.eth.accounts[1:5]
    founders = [(f"CN-{i}", 1, b"CN", account) for i, account in enumerate(members)]
    consortium = deploy(w3, "Consortium", 1, founders)
    trail = deploy(w3, "TrailAnchor", consortium.address)

    starts = [1_000, 12_345, 65_536]
    total = max(starts) + args.entries + args.baseline + 1
    leaves = [merkle.leaf_hash(os.urandom(64)) for _ in range(total)]
    hasher = merkle.range_hasher(leaves)

    def anchor(member: str, old: int, new: int) -> int:
        proof = merkle.consistency_proof(old, new, hasher) if old else []
        fn = trail.functions.anchor(new, hasher(0, new), proof)
        receipt = w3.eth.wait_for_transaction_receipt(fn.transact({"from": member, "gas": GAS}))
        assert receipt["status"] == 1
        return int(receipt["gasUsed"])

    rows = []
    for member, start in zip(members, starts, strict=False):
        anchor(member, 0, start)
        gas = anchor(member, start, start + args.entries)
        proof_len = len(merkle.consistency_proof(start, start + args.entries, hasher))
        rows.append((f"{start:,} -> {start + args.entries:,}", proof_len, gas, gas / args.entries))

    member = members[3]
    anchor(member, 0, 1)
    single = [anchor(member, n, n + 1) for n in range(1, args.baseline + 1)]
    per_share = statistics.mean(single)

    print("| anchored head | proof hashes | gas | gas per entry |")
    print("|---|---:|---:|---:|")
    for label, proof_len, gas, per in rows:
        print(f"| {label} | {proof_len} | {gas:,} | {per:.1f} |")
    print(
        f"| baseline: one transaction per share ({args.baseline} shares) | - | "
        f"{per_share:,.0f} mean | {per_share:,.0f} |"
    )
    worst = max(per for *_, per in rows)
    print(
        json.dumps(
            {
                "entries_per_head": args.entries,
                "gas_per_entry_worst": round(worst, 2),
                "gas_per_entry": {label: round(per, 2) for label, _, _, per in rows},
                "baseline_gas_per_share": round(per_share),
            }
        )
    )


if __name__ == "__main__":
    main()
