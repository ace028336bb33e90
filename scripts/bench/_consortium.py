"""What the chain benchmarks share: a Hardhat node for the run, a consortium on it, resources.

Not a benchmark itself; ``register.py`` and ``indexer.py`` import it from beside them.
"""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ledger.instance import Instance, InstanceConfig
from ledger.keys import LIGHT_SCRYPT_N, MemberKeys
from ledger.licence import consortium_terms
from ledger.onchain import ConsortiumContracts, FounderInput, ResourceInput
from ledger.registration import issue_licence

ROOT = Path(__file__).resolve().parents[2]
HARDHAT_NODE = ROOT / "scripts" / "hardhat_node.py"
PASSWORD = "bench-password"
START_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def rpc_node(rpc: str | None) -> Iterator[str]:
    """``rpc`` if given; else a Hardhat node on a free 127.0.0.1 port, stopped afterwards."""
    if rpc:
        yield rpc
        return
    with tempfile.TemporaryDirectory(prefix="libshare-bench-hardhat-") as folder:
        command = [sys.executable, str(HARDHAT_NODE)]
        started = subprocess.run(
            [*command, "start", "--dir", folder, "--port", str(free_port())],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
        )
        if started.returncode != 0:
            raise SystemExit(f"could not start a Hardhat node: {started.stderr.strip()}")
        try:
            yield started.stdout.strip()
        finally:
            subprocess.run(
                [*command, "stop", "--dir", folder], capture_output=True, timeout=60, check=False
            )


@dataclass
class Consortium:
    instance: Instance
    contracts: ConsortiumContracts
    member: MemberKeys  # CN-A, who registers
    licence_id: int  # issued by CN-A


def open_consortium(data_dir: Path, rpc: str, *, database_url: str | None = None) -> Consortium:
    """An instance on ``rpc`` with a freshly deployed consortium and one licence of CN-A."""
    instance = Instance(
        InstanceConfig(
            data_dir,
            PASSWORD,
            chain_url=rpc,
            database_url=database_url,
            scrypt_n=LIGHT_SCRYPT_N,
        )
    )
    admin = instance.keystore.create("ADMIN")
    member = instance.keystore.create("CN-A")
    for keys in (admin, member):
        instance.chain.fund_from_node(keys.account.address, 10**19)
    founders = [FounderInput("CN-A", 1, "CN", member.account.address)]
    contracts = ConsortiumContracts.deploy(instance.chain, admin.account, founders, 1)
    instance.record_deployment(contracts)
    licence_id, _ = issue_licence(instance, member.account, consortium_terms())
    return Consortium(instance, contracts, member, licence_id)


def resource_inputs(
    tag: str, n: int, licence_id: int, *, link_every: int = 0
) -> list[ResourceInput]:
    """``n`` distinct resources as production registers them: sealed content (a CIDv0
    dag-pb root, 34 bytes), a metadata hash, one licence; every ``link_every``-th one
    (0: none) digitised from a source."""
    items = []
    for i in range(n):
        content = hashlib.sha256(f"{tag}-{i}".encode()).digest()
        stored = hashlib.sha256(b"sealed:" + content).digest()
        metadata = hashlib.sha256(b"dc:" + content).digest()
        links: tuple[tuple[str, bytes], ...] = ()
        if link_every and i % link_every == 0:
            links = (("digitised_from", hashlib.sha256(b"source:" + content).digest()),)
        items.append(ResourceInput(content, b"\x12\x20" + stored, metadata, licence_id, links))
    return items
