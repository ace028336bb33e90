"""Start or stop a local Hardhat JSON-RPC node on 127.0.0.1 for tests and benchmarks.

    python scripts/hardhat_node.py start --dir DIR [--port 8545]   # prints the RPC URL
    python scripts/hardhat_node.py stop --dir DIR

The node is started directly (node .../hardhat/internal/cli/cli.js node), not through
npx, so the recorded PID is the node's own. It binds 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HARDHAT = ROOT / "services" / "hardhat"
CLI = HARDHAT / "node_modules" / "hardhat" / "internal" / "cli" / "cli.js"


def _answers(url: str) -> bool:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []})
    request = urllib.request.Request(
        url, data=body.encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return "result" in json.loads(response.read())
    except (OSError, ValueError):
        return False


def start(folder: Path, port: int) -> int:
    if not CLI.exists():
        print("hardhat is not installed: run bash .ci/install-services.sh", file=sys.stderr)
        return 2
    folder.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}"
    if _answers(url):
        print(f"port {port} already answers JSON-RPC; stop that node first", file=sys.stderr)
        return 2
    log = (folder / "hardhat.log").open("ab")
    env = dict(os.environ, HARDHAT_DISABLE_TELEMETRY_PROMPT="true")
    proc = subprocess.Popen(
        ["node", str(CLI), "node", "--hostname", "127.0.0.1", "--port", str(port),
         "--config", str(HARDHAT / "hardhat.config.js")],
        cwd=HARDHAT, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )  # fmt: skip
    (folder / "hardhat.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            print(
                f"hardhat exited with {proc.returncode}; see {folder / 'hardhat.log'}",
                file=sys.stderr,
            )
            return 1
        if _answers(url):
            print(url)
            return 0
        time.sleep(0.2)
    proc.kill()
    print("hardhat did not answer within 60 s", file=sys.stderr)
    return 1


def stop(folder: Path) -> int:
    pid_file = folder / "hardhat.pid"
    if not pid_file.exists():
        print(f"no hardhat pid file in {folder}: nothing to stop", file=sys.stderr)
        return 0
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            os.kill(pid, 0)
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    pid_file.unlink()
    print(f"stopped hardhat (pid {pid})", file=sys.stderr)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--port", type=int, default=8545)
    args = parser.parse_args()
    return start(args.dir, args.port) if args.action == "start" else stop(args.dir)


if __name__ == "__main__":
    sys.exit(main())
