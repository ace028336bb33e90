"""The federation tests run on the Hardhat node that .ci/run starts (LIBSHARE_TEST_RPC)."""

from __future__ import annotations

from tests.hardhat.conftest import rpc_url

__all__ = ["rpc_url"]
