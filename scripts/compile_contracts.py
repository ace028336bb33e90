"""Compile libshare's contracts reproducibly and write the committed artifacts.

    python scripts/compile_contracts.py            # writes contracts/artifacts/*.json
    python scripts/compile_contracts.py --check    # exit 1 if the committed ones differ

The compiler is the solc-js pinned in ``contracts/package.json`` (install it with
``npm ci --prefix contracts``), driven by ``contracts/compile.js``. Source unit names are
relative (``src/Consortium.sol``), so the metadata, and with it the bytecode, is the same
on every machine. Run time never needs the compiler: ``ledger.contracts`` reads the
artifacts.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS_DIR = ROOT / "contracts"
DEFAULT_OUT = CONTRACTS_DIR / "artifacts"
CONTRACT_NAMES = ("Consortium", "LicenceRegistry", "ResourceRegistry", "TrailAnchor")
EVM_VERSION = "prague"
OPTIMIZER = {"enabled": True, "runs": 200}
OUTPUT_SELECTION = (
    "abi",
    "evm.bytecode.object",
    "evm.deployedBytecode.object",
    "evm.methodIdentifiers",
    "metadata",
)
INSTALL_HINT = "run `npm ci --prefix contracts`"


class CompileError(Exception):
    """The contracts could not be compiled; the message is one line (or the solc errors)."""


def build_input(contracts_dir: Path = CONTRACTS_DIR) -> dict[str, Any]:
    """Return the solc standard-JSON input for every ``src/*.sol`` under ``contracts_dir``."""
    sources = {
        f"src/{path.name}": {"content": path.read_text(encoding="utf-8")}
        for path in sorted((contracts_dir / "src").glob("*.sol"))
    }
    return {
        "language": "Solidity",
        "sources": sources,
        "settings": {
            "optimizer": dict(OPTIMIZER),
            "evmVersion": EVM_VERSION,
            "viaIR": False,
            # Only our own sources; the OpenZeppelin ones are compiled but not emitted.
            "outputSelection": {unit: {"*": list(OUTPUT_SELECTION)} for unit in sources},
        },
    }


def run_solc(standard_input: dict[str, Any], contracts_dir: Path = CONTRACTS_DIR) -> dict[str, Any]:
    """Compile ``standard_input`` with the pinned solc-js; return the standard-JSON output.

    Raises :class:`CompileError` when node or solc is missing or the compilation fails.
    """
    node = shutil.which("node")
    if node is None:
        raise CompileError(f"node not installed: install Node.js 18 or later, then {INSTALL_HINT}")
    if not (contracts_dir / "node_modules" / "solc" / "package.json").is_file():
        raise CompileError(f"solc not installed: {INSTALL_HINT}")
    proc = subprocess.run(
        [node, str(contracts_dir / "compile.js")],
        input=json.dumps(standard_input),
        capture_output=True,
        text=True,
        cwd=contracts_dir,
        check=False,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise CompileError(f"contracts/compile.js failed (exit {proc.returncode}): {last}")
    output: dict[str, Any] = json.loads(proc.stdout)
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        shown = "\n".join(e.get("formattedMessage", e.get("message", "")).rstrip() for e in errors)
        raise CompileError(f"compilation failed:\n{shown}")
    for warning in output.get("errors", []):
        print(warning.get("formattedMessage", "").rstrip(), file=sys.stderr)
    return output


def artifacts_from_output(output: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Return ``{name: artifact}`` for the four contracts from a solc standard-JSON output."""
    artifacts: dict[str, dict[str, Any]] = {}
    for name in CONTRACT_NAMES:
        try:
            compiled = output["contracts"][f"src/{name}.sol"][name]
        except KeyError:
            raise CompileError(
                f"solc produced no contract {name} (is src/{name}.sol there?)"
            ) from None
        metadata = compiled["metadata"]
        artifacts[name] = {
            "contractName": name,
            "abi": compiled["abi"],
            "bytecode": "0x" + compiled["evm"]["bytecode"]["object"],
            "deployedBytecode": "0x" + compiled["evm"]["deployedBytecode"]["object"],
            "metadata": metadata,
            "methodIdentifiers": compiled["evm"]["methodIdentifiers"],
            "compiler": {
                "solc": json.loads(metadata)["compiler"]["version"],
                "evmVersion": EVM_VERSION,
                "optimizer": dict(OPTIMIZER),
            },
        }
    return artifacts


def render(artifact: dict[str, Any]) -> str:
    """The exact text an artifact file holds."""
    return json.dumps(artifact, indent=2, sort_keys=True) + "\n"


def compile_to(out_dir: Path, contracts_dir: Path = CONTRACTS_DIR) -> list[Path]:
    """Compile the contracts and write one ``<Name>.json`` per contract into ``out_dir``."""
    artifacts = artifacts_from_output(run_solc(build_input(contracts_dir), contracts_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, artifact in artifacts.items():
        path = out_dir / f"{name}.json"
        path.write_text(render(artifact), encoding="utf-8")
        written.append(path)
    return written


def differing_artifacts(committed_dir: Path = DEFAULT_OUT) -> list[str]:
    """Recompile into a temporary directory; return the names of artifacts that differ
    from (or are missing in) ``committed_dir``."""
    with tempfile.TemporaryDirectory(prefix="libshare-solc-") as tmp:
        fresh_dir = Path(tmp)
        compile_to(fresh_dir)
        differing = []
        for name in CONTRACT_NAMES:
            committed = committed_dir / f"{name}.json"
            fresh = (fresh_dir / f"{name}.json").read_bytes()
            if not committed.is_file() or committed.read_bytes() != fresh:
                differing.append(name)
        return differing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="artifact directory")
    parser.add_argument(
        "--check",
        action="store_true",
        help="compile into a temporary directory and fail if --out differs",
    )
    args = parser.parse_args(argv)
    try:
        if args.check:
            differing = differing_artifacts(args.out)
            if differing:
                names = ", ".join(f"{name}.json" for name in differing)
                print(
                    f"artifacts out of date in {args.out}: {names} — "
                    "run `python scripts/compile_contracts.py`",
                    file=sys.stderr,
                )
                return 1
            print(f"artifacts in {args.out} are up to date")
            return 0
        for path in compile_to(args.out):
            print(f"wrote {path}")
        return 0
    except CompileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
