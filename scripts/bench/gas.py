"""Gas used by every write function of the four contracts, on the in-process EVM.

    python scripts/bench/gas.py

Prints a Markdown table ``| contract | function | gas | note |`` and, as its last line,
one JSON object with the same figures (key ``Contract.function[/variant]``). The batch
rows (packed entries, as :meth:`ledger.onchain.ResourceInput.packed` makes them) divide
by the number of resources, next to a baseline of single ``register`` calls.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from eth_tester import EthereumTester, PyEVMBackend
from web3 import EthereumTesterProvider, Web3
from web3.contract import Contract
from web3.types import TxReceipt

from ledger.contracts import load_artifact
from ledger.merkle import consistency_proof, leaf_hash, root_from_leaves
from ledger.onchain import RELATIONS, ResourceInput

TX_GAS = 29_000_000
TERMS = json.dumps(
    {
        "actions": ["copy_article", "loan", "secure_electronic"],
        "purposes": ["personal_study", "teaching", "research"],
        "members": {"tiers": [1, 2, 3]},
        "limits": [{"scope": "patron", "action": "copy_whole", "max": 3}],
    },
    sort_keys=True,
    separators=(",", ":"),
)


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


class Bench:
    def __init__(self) -> None:
        self.w3 = Web3(EthereumTesterProvider(EthereumTester(PyEVMBackend())))
        self.accounts = self.w3.eth.accounts
        self.rows: list[tuple[str, str, int, str]] = []

    def deploy(self, name: str, *args: Any, note: str = "") -> Contract:
        artifact = load_artifact(name)
        factory = self.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        tx = factory.constructor(*args).transact({"from": self.accounts[0]})
        receipt = self.w3.eth.wait_for_transaction_receipt(tx)
        self.rows.append((name, "deploy", receipt["gasUsed"], note))
        return self.w3.eth.contract(address=receipt["contractAddress"], abi=artifact.abi)

    def send(self, fn: Any, sender: str) -> TxReceipt:
        fn.call({"from": sender})  # raise a revert here rather than mine a failed tx
        tx = fn.transact({"from": sender, "gas": TX_GAS})
        receipt = self.w3.eth.wait_for_transaction_receipt(tx)
        assert receipt["status"] == 1
        return receipt

    def measure(
        self, contract: str, function: str, fn: Any, sender: str, note: str = "", per: int = 1
    ) -> int:
        gas = int(self.send(fn, sender)["gasUsed"]) // per
        self.rows.append((contract, function, gas, note))
        return gas


def resource(owner_tag: str, i: int, licence_id: int, links: int = 0) -> tuple[Any, ...]:
    content = sha(f"{owner_tag}-{i}".encode())
    return (
        content,
        bytes.fromhex("1220") + content,  # a CIDv0 multihash: 34 bytes
        sha(b"dc:" + content),
        licence_id,
        [(1, sha(f"source-{i}-{j}".encode())) for j in range(links)],
    )


def packed(rs: list[tuple[Any, ...]]) -> bytes:
    """``rs`` as one registerBatch argument."""
    names = {number: name for name, number in RELATIONS.items()}
    return b"".join(
        ResourceInput(c, cid, m, lic, tuple((names[rel], t) for rel, t in links)).packed()
        for c, cid, m, lic, links in rs
    )


def run() -> Bench:
    b = Bench()
    admin, a, bb, c, candidate, auditor = b.accounts[:6]
    founders = [("CN-A", 1, b"CN", a), ("CN-B", 2, b"CN", bb), ("DE-C", 3, b"DE", c)]
    consortium = b.deploy("Consortium", 2, founders, note="3 founders")
    licences = b.deploy("LicenceRegistry", consortium.address)
    resources = b.deploy("ResourceRegistry", consortium.address, licences.address)
    anchor = b.deploy("TrailAnchor", consortium.address)

    # Consortium
    f = consortium.functions
    b.measure(
        "Consortium", "proposeAdmission", f.proposeAdmission(("FR-D", 2, b"FR", candidate)), a
    )
    b.measure("Consortium", "approveAdmission", f.approveAdmission(1), a, "first approval")
    b.measure("Consortium", "approveAdmission", f.approveAdmission(1), bb, "second approval")
    b.measure("Consortium", "executeAdmission", f.executeAdmission(1), c)
    auditor_role = Web3.keccak(text="AUDITOR")
    b.measure("Consortium", "grantRole", f.grantRole(auditor_role, auditor), admin, "AUDITOR")
    b.measure("Consortium", "revokeRole", f.revokeRole(auditor_role, auditor), admin, "AUDITOR")

    # LicenceRegistry
    f = licences.functions
    note = f"{len(TERMS)}-byte terms JSON"
    b.measure("LicenceRegistry", "issue", f.issue(sha(TERMS.encode()), TERMS), a, note)
    b.send(f.issue(sha(TERMS.encode()), TERMS), a)  # licence 2, to revoke
    b.measure("LicenceRegistry", "issueVersion", f.issueVersion(1, sha(b"v2"), TERMS), a, note)
    b.measure("LicenceRegistry", "revoke", f.revoke(2), a)

    # ResourceRegistry
    f = resources.functions
    first = f.register(resource("s", 0, 1))
    single = [b.measure("ResourceRegistry", "register", first, a, "licensed, CIDv0, no links")]
    for i in range(1, 5):
        gas = int(b.send(f.register(resource("s", i, 1)), a)["gasUsed"])
        single.append(gas)
    baseline = sum(single) // len(single)
    b.rows.append(("ResourceRegistry", "register (mean of 5)", baseline, "baseline per resource"))
    b.measure(
        "ResourceRegistry", "register", f.register(resource("l", 0, 1, links=2)), a, "2 links"
    )
    b.measure("ResourceRegistry", "register", f.register(resource("u", 0, 0)), a, "no licence")
    for n in (1, 10, 50, 100, 200):
        batch = [resource(f"b{n}", i, 1) for i in range(n)]
        b.measure(
            "ResourceRegistry",
            f"registerBatch/{n} per resource",
            f.registerBatch(packed(batch)),
            a,
            f"{n} resources, one licence",
            per=n,
        )
    batch = [resource("bl", i, 1, links=1) for i in range(100)]
    b.measure(
        "ResourceRegistry",
        "registerBatch/100 per resource",
        f.registerBatch(packed(batch)),
        a,
        "100 resources, one link each",
        per=100,
    )
    old = f.resourceIdOf(a, resource("s", 0, 1)[0]).call()
    b.measure("ResourceRegistry", "supersede", f.supersede(old, resource("v2", 0, 1)), a)
    b.measure("ResourceRegistry", "setLicence", f.setLicence(old, 0), a, "licence 1 -> none")

    # TrailAnchor
    f = anchor.functions
    leaves = [leaf_hash(f"entry {i}".encode()) for i in range(65_536)]
    sizes = [1_000, 1_024, 5_000, 65_536]
    previous = 0
    for size in sizes:
        proof = [bytes(p) for p in consistency_proof(previous, size, leaves)] if previous else []
        root = bytes(root_from_leaves(leaves[:size]))
        note = f"{previous} -> {size}, proof of {len(proof)}" if previous else f"first head {size}"
        b.measure("TrailAnchor", "anchor", f.anchor(size, root, proof), a, note)
        previous = size
    return b


def main() -> None:
    bench = run()
    print("| contract | function | gas | note |")
    print("|---|---|---:|---|")
    figures: dict[str, int] = {}
    for contract, function, gas, note in bench.rows:
        print(f"| {contract} | {function} | {gas:,} | {note} |")
        key = f"{contract}.{function}"
        if note and key in figures:
            key = f"{key} ({note})"
        figures.setdefault(key, gas)
    print(json.dumps(figures, sort_keys=False))


if __name__ == "__main__":
    main()
