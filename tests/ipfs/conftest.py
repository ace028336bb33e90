"""The IPFS daemon the tests of this folder run against.

``LIBSHARE_IPFS_API`` names its RPC API (``.ci/services.sh start`` prints it). Without it
the tests that need the daemon are skipped on a developer's machine and fail in CI, so a
CI run can never pass them silently. Every test that uses :func:`kubo_api` carries the
``ipfs`` marker (``pytest -m ipfs`` / ``-m "not ipfs"``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from ledger.kubo import KuboStore


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs the daemon with ``ipfs``."""
    for item in items:
        if "kubo_api" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.ipfs)


@pytest.fixture(scope="session")
def kubo_api() -> str:
    """The daemon's API URL; skip (locally) or fail (CI) when it is not configured."""
    url = os.environ.get("LIBSHARE_IPFS_API")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("LIBSHARE_IPFS_API is not set: .ci/run must start the IPFS daemon")
        pytest.skip("no IPFS daemon (set LIBSHARE_IPFS_API)")
    try:
        httpx.post(f"{url.rstrip('/')}/api/v0/id", timeout=10).raise_for_status()
    except httpx.HTTPError as exc:
        pytest.fail(f"LIBSHARE_IPFS_API={url} is set but the daemon does not answer: {exc}")
    return url.rstrip("/")


@pytest.fixture
def kubo_store(kubo_api: str) -> Iterator[KuboStore]:
    """A :class:`KuboStore` on the daemon, with short lookups so misses are quick."""
    with KuboStore(kubo_api, timeout=30.0, lookup_timeout=0.5) as store:
        yield store
