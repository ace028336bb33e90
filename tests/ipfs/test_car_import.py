"""A CAR written by libshare is imported by a real IPFS node, which then serves the same bytes."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from ledger.blockstore import LocalBlockstore
from ledger.car import write_car
from ledger.cid import Profile
from ledger.kubo import KuboStore

pytestmark = pytest.mark.ipfs


@pytest.mark.parametrize("profile", [Profile.KUBO_V0, Profile.V1_RAW_256K])
def test_the_daemon_imports_our_car_and_serves_byte_identical_content(
    kubo_api: str, tmp_path: Path, profile: Profile
) -> None:
    local = LocalBlockstore(tmp_path / "blocks")
    files = [os.urandom(n) for n in (0, 1000, 3 * 262_144 + 17)]
    roots = [local.put([data], profile=profile).cid for data in files]
    car = io.BytesIO()
    write_car(roots, local.get_block, car)
    with KuboStore(kubo_api) as node:
        assert sorted(node.dag_import(car.getvalue())) == sorted(set(roots))
        for root, data in zip(roots, files, strict=True):
            assert b"".join(node.cat(root)) == data
