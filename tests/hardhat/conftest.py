"""The Hardhat JSON-RPC node that .ci/run starts (LIBSHARE_TEST_RPC).

Locally, without a node, these tests skip; in CI (CI set) a missing node fails them.
"""

from __future__ import annotations

import os

import httpx
import pytest


@pytest.fixture(scope="session")
def rpc_url() -> str:
    """The node's JSON-RPC URL; skip (locally) or fail (CI) when it is not configured."""
    url = os.environ.get("LIBSHARE_TEST_RPC")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("LIBSHARE_TEST_RPC is not set: .ci/run must start the Hardhat node")
        pytest.skip("no JSON-RPC node (set LIBSHARE_TEST_RPC, e.g. a local Hardhat node)")
    body = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
    try:
        httpx.post(url, json=body, timeout=10).raise_for_status()
    except httpx.HTTPError as exc:
        pytest.fail(f"LIBSHARE_TEST_RPC={url} is set but the node does not answer: {exc}")
    return url
