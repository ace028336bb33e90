"""Fault tests: `libshare serve` as a real process, broken under load (see _harness.py).

The chain-outage test needs a Hardhat node (``LIBSHARE_TEST_RPC``); it uses the same
fixture as tests/hardhat: skipped locally without a node, failed in CI.
"""

from __future__ import annotations

from tests.hardhat.conftest import rpc_url

__all__ = ["rpc_url"]
