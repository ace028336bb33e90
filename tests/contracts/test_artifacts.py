"""The committed artifacts: complete, loadable, and exactly what the pinned solc builds."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from ledger.contracts import CONTRACT_NAMES, artifacts_dir, load_artifact
from ledger.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "contracts" / "artifacts"


def compile_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "compile_contracts", ROOT / "scripts" / "compile_contracts.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", CONTRACT_NAMES)
def test_committed_artifact_has_every_field(name: str) -> None:
    artifact = json.loads((COMMITTED / f"{name}.json").read_text())
    assert set(artifact) == {
        "contractName",
        "abi",
        "bytecode",
        "deployedBytecode",
        "metadata",
        "methodIdentifiers",
        "compiler",
    }
    assert artifact["contractName"] == name
    assert artifact["compiler"]["solc"].startswith("0.8.30+commit.")
    assert artifact["compiler"]["evmVersion"] == "prague"
    assert artifact["compiler"]["optimizer"] == {"enabled": True, "runs": 200}
    metadata = json.loads(artifact["metadata"])
    assert all(not source.startswith("/") for source in metadata["sources"])


@pytest.mark.parametrize("name", CONTRACT_NAMES)
def test_artifact_loads_as_bytes_and_abi(name: str) -> None:
    artifact = load_artifact(name)
    assert artifact.name == name
    assert artifact.bytecode[:1] == b"\x60"  # PUSH1: a creation code prologue
    assert artifact.deployed_bytecode and artifact.deployed_bytecode in artifact.bytecode
    assert any(entry.get("type") == "error" for entry in artifact.abi)


def test_checkout_reads_the_committed_artifacts() -> None:
    assert artifacts_dir() == COMMITTED


def test_missing_artifact_is_a_config_error_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no compiled contract 'Consortium' .*compile_contracts"):
        load_artifact("Consortium", tmp_path)


def test_unreadable_artifact_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "Consortium.json").write_text("{not json")
    with pytest.raises(ConfigError, match="unreadable"):
        load_artifact("Consortium", tmp_path)


@pytest.mark.solc
def test_recompiling_gives_byte_identical_artifacts(tmp_path: Path) -> None:
    if not (ROOT / "contracts" / "node_modules" / "solc" / "package.json").is_file():
        pytest.fail("contracts/node_modules/solc is missing: run npm ci --prefix contracts")
    script = compile_script()
    script.compile_to(tmp_path)
    differing = [
        name
        for name in CONTRACT_NAMES
        if (tmp_path / f"{name}.json").read_bytes() != (COMMITTED / f"{name}.json").read_bytes()
    ]
    assert differing == [], f"stale artifacts {differing}: run scripts/compile_contracts.py"
