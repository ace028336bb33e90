"""Benchmark resource registration on a Hardhat node: resources per second, gas per resource.

Deploys a consortium on the node (``--rpc URL``, or a Hardhat node this script starts on
a free 127.0.0.1 port and stops afterwards) and registers, all through production code:

(a) ``--resources`` resources with :meth:`ConsortiumContracts.register_resources` — packed
    ``registerBatch`` transactions of ``--batch``, up to ``--in-flight`` sent ahead of
    their receipts — then the same again one batch at a time (``in_flight=1``);
(b) ``--single`` resources, one ``register`` transaction each (the baseline);
(b') with the node mining a block every ``--block-ms`` instead of one per transaction (as
    a Besu network does; Hardhat's ``evm_setIntervalMining``), ``--resources`` again in
    flight and one batch at a time: the case ``in_flight`` is for;
(c) ``--end-to-end`` resources through :func:`ledger.registration.register_resources`, as
    the API and the CLI do: content sealed and stored, metadata and rows in SQL, the
    batches on chain, and the index synced before it returns.

Resources are licensed, have a 34-byte CIDv0 and no provenance links. Gas is the
receipts' ``gasUsed`` (the 21,000 per transaction included) over the resources.

    python scripts/bench/register.py [--rpc URL] [--resources 2000] [--batch 200]
                                     [--in-flight 8] [--single 200] [--end-to-end 200]
                                     [--block-ms 1000]

Prints a table, then, as its last line, one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from time import perf_counter

from _consortium import Consortium, open_consortium, resource_inputs, rpc_node
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.types import RPCEndpoint

from ledger.onchain import ConsortiumContracts, ResourceInput
from ledger.registration import NewResource, register_resources


def batched(
    contracts: ConsortiumContracts,
    owner: LocalAccount,
    items: list[ResourceInput],
    batch: int,
    in_flight: int,
) -> tuple[float, int, int]:
    """Register ``items`` in batches; return (resources/s, gas/resource, transactions)."""
    start = perf_counter()
    done = contracts.register_resources_mined(owner, items, batch_size=batch, in_flight=in_flight)
    elapsed = perf_counter() - start
    assert sum(len(ids) for ids, _ in done) == len(items)
    gas = sum(tx.gas_used for _, tx in done)
    return len(items) / elapsed, round(gas / len(items)), len(done)


def single(
    contracts: ConsortiumContracts, owner: LocalAccount, items: list[ResourceInput]
) -> tuple[float, int]:
    """Register ``items`` one ``register`` transaction each; return (resources/s, gas/res)."""
    w3 = contracts.chain.w3
    first = w3.eth.block_number + 1
    start = perf_counter()
    for item in items:
        contracts.register_resource(owner, item)
    elapsed = perf_counter() - start
    gas = gas_used_by(w3, owner.address, first, w3.eth.block_number)
    return len(items) / elapsed, round(gas / len(items))


def gas_used_by(w3: Web3, sender: str, first: int, last: int) -> int:
    """The gas of every transaction ``sender`` had mined in blocks ``first..last``."""
    total = 0
    for number in range(first, last + 1):
        for tx in w3.eth.get_block(number, full_transactions=True)["transactions"]:
            if not isinstance(tx, bytes) and tx["from"] == sender:
                total += int(w3.eth.get_transaction_receipt(tx["hash"])["gasUsed"])
    return total


@contextmanager
def mining_every(w3: Web3, block_ms: int) -> Iterator[None]:
    """The (Hardhat) node mines a block every ``block_ms`` instead of per transaction."""
    w3.provider.make_request(RPCEndpoint("evm_setAutomine"), [False])
    w3.provider.make_request(RPCEndpoint("evm_setIntervalMining"), [block_ms])
    try:
        yield
    finally:
        w3.provider.make_request(RPCEndpoint("evm_setIntervalMining"), [0])
        w3.provider.make_request(RPCEndpoint("evm_setAutomine"), [True])


def end_to_end(consortium: Consortium, n: int, licence_id: int) -> float:
    """Register ``n`` small sealed resources through ledger.registration; resources/s."""
    items = [
        NewResource(
            f"chapter {i} of a digitised thesis".encode() * 40,
            "text",
            {"title": f"Thesis {i}", "creator": "Bench"},
            licence_id,
        )
        for i in range(n)
    ]
    start = perf_counter()
    registered = register_resources(consortium.instance, consortium.member, items)
    elapsed = perf_counter() - start
    assert len(registered) == n
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rpc", help="a JSON-RPC node to use instead of starting Hardhat")
    parser.add_argument("--resources", type=int, default=2_000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument("--single", type=int, default=200)
    parser.add_argument("--end-to-end", type=int, default=200)
    parser.add_argument("--block-ms", type=int, default=1000, help="0: skip the timed blocks")
    args = parser.parse_args()

    with rpc_node(args.rpc) as url, tempfile.TemporaryDirectory(prefix="libshare-bench-") as tmp:
        consortium = open_consortium(Path(tmp), url)
        try:
            contracts = consortium.contracts
            owner = consortium.member.account
            licence = consortium.licence_id
            client = str(contracts.chain.w3.client_version)
            e2e = end_to_end(consortium, args.end_to_end, licence) if args.end_to_end else None
            # Warm up (the node compiles its EVM paths, web3 builds its caches) untimed.
            batched(contracts, owner, resource_inputs("warm", args.batch, licence), args.batch, 1)
            piped = batched(
                contracts, owner, resource_inputs("piped", args.resources, licence),
                args.batch, args.in_flight,
            )  # fmt: skip
            serial = batched(
                contracts, owner, resource_inputs("serial", args.resources, licence),
                args.batch, 1,
            )  # fmt: skip
            one = single(contracts, owner, resource_inputs("single", args.single, licence))
            timed: list[tuple[float, int, int]] = []
            if args.block_ms:
                with mining_every(contracts.chain.w3, args.block_ms):
                    for tag, flight in (("timed-piped", args.in_flight), ("timed-serial", 1)):
                        items = resource_inputs(tag, args.resources, licence)
                        timed.append(batched(contracts, owner, items, args.batch, flight))
        finally:
            consortium.instance.close()

    rows = [
        (
            f"registerBatch of {args.batch}, {args.in_flight} in flight",
            args.resources,
            piped[0],
            piped[1],
        ),
        (f"registerBatch of {args.batch}, one at a time", args.resources, serial[0], serial[1]),
        ("register, one tx per resource (baseline)", args.single, one[0], one[1]),
    ]
    if timed:
        every = f"block every {args.block_ms} ms"
        rows.append((f"{every}, {args.in_flight} in flight", args.resources, *timed[0][:2]))
        rows.append((f"{every}, one at a time", args.resources, *timed[1][:2]))
    print(f"python {platform.python_version()} on {platform.machine()}, node {client}")
    print(f"{'path':<46} {'resources':>9} {'resources/s':>12} {'gas/resource':>13}")
    for name, n, rate, gas in rows:
        print(f"{name:<46} {n:>9,} {rate:>12,.0f} {gas:>13,}")
    if e2e is not None:
        name = "ledger.registration end to end (seal+SQL+index)"
        print(f"{name:<46} {args.end_to_end:>9,} {e2e:>12,.0f} {'':>13}")
    figures = {
        "node": client,
        "batch": args.batch,
        "in_flight": args.in_flight,
        "resources": args.resources,
        "register_per_s_batched": round(piped[0]),
        "register_per_s_batched_one_at_a_time": round(serial[0]),
        "gas_per_resource_batched": piped[1],
        "batch_transactions": piped[2],
        "register_per_s_single": round(one[0]),
        "gas_per_resource_single": one[1],
        "register_per_s_end_to_end": round(e2e) if e2e is not None else None,
        "block_ms": args.block_ms or None,
        "register_per_s_timed_blocks_batched": round(timed[0][0]) if timed else None,
        "register_per_s_timed_blocks_one_at_a_time": round(timed[1][0]) if timed else None,
    }
    sys.stdout.flush()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
