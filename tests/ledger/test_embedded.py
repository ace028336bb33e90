"""The embedded chain keeps its state across restarts."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.embedded import EmbeddedChain
from ledger.errors import ConfigError

SINK = "0x" + "11" * 20


def test_restart_resumes_at_the_same_head_block_and_hash(tmp_path: Path) -> None:
    path = tmp_path / "chain.sqlite"
    with EmbeddedChain(path) as chain:
        for _ in range(3):
            chain.w3.eth.send_transaction({"from": chain.faucet, "to": SINK, "value": 5})
        chain.commit()
        head = chain.w3.eth.get_block("latest")
    with EmbeddedChain(path) as again:
        resumed = again.w3.eth.get_block("latest")
        assert resumed["number"] == head["number"] == 3
        assert resumed["hash"] == head["hash"]
        assert again.w3.eth.get_balance(again.w3.to_checksum_address(SINK)) == 15


def test_chain_keeps_growing_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "chain.sqlite"
    with EmbeddedChain(path) as chain:
        chain.w3.eth.send_transaction({"from": chain.faucet, "to": SINK, "value": 1})
        first = chain.w3.eth.get_block(1)["hash"]
    with EmbeddedChain(path) as chain:
        chain.w3.eth.send_transaction({"from": chain.faucet, "to": SINK, "value": 1})
        assert chain.w3.eth.block_number == 2
        assert chain.w3.eth.get_block(2)["parentHash"] == first


def test_uncommitted_blocks_are_not_kept(tmp_path: Path) -> None:
    path = tmp_path / "chain.sqlite"
    chain = EmbeddedChain(path)
    chain.w3.eth.send_transaction({"from": chain.faucet, "to": SINK, "value": 1})
    chain.commit()
    chain.w3.eth.send_transaction({"from": chain.faucet, "to": SINK, "value": 1})
    # simulate a crash: no commit, no close
    with EmbeddedChain(path) as again:
        assert again.w3.eth.block_number == 1


def test_a_corrupt_chain_file_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "chain.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ConfigError, match=r"chain\.sqlite is unreadable"):
        EmbeddedChain(path)
