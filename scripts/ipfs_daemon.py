"""Start and stop the pinned js-ipfs daemon that serves the Kubo RPC API to the IPFS tests.

The daemon comes from ``services/ipfs`` (``npm ci --prefix services/ipfs``). An IPFS node
left at its defaults dials public bootstrap peers, asks public delegate and preload
nodes, and announces itself by MDNS. This script never lets it: it refuses to run
outside a private network namespace (one whose only interface is ``lo``), writes a
config with an empty ``Bootstrap`` list, routing ``none``, no delegates, MDNS, WebRTC
star, relay, NAT port mapping or pubsub, and every address on 127.0.0.1, *before* the
daemon first starts, checks that config again on every start, and starts the daemon
``--offline`` (no libp2p at all) without preloading unless ``--online`` is given.

    unshare -n bash -c 'ip link set lo up
      python scripts/ipfs_daemon.py start --repo /tmp/ipfs-repo --api-port 5002
      ...
      python scripts/ipfs_daemon.py stop --repo /tmp/ipfs-repo'

``start`` prints the API URL (``http://127.0.0.1:PORT``) on its last line once
``POST /api/v0/id`` answers. Exit status: 0 done, 1 failed, 2 refused as unsafe.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CLI = ROOT / "services" / "ipfs" / "node_modules" / "ipfs" / "src" / "cli.js"
PID_FILE = "daemon.pid"
LOG_FILE = "daemon.log"
LOOPBACK = "127.0.0.1"
_SIOCGIFFLAGS = 0x8913  # linux/sockios.h
_IFF_UP = 0x1


class DaemonError(Exception):
    """A step failed; the message says what to do. ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------- the namespace guard


def require_private_netns() -> None:
    """Refuse unless the only network interface is ``lo`` and it is up.

    Asks the kernel about *this* process's namespace (``if_nameindex`` and
    ``SIOCGIFFLAGS``): ``/sys/class/net`` would show the namespace that mounted sysfs,
    which inside a bare ``unshare -n`` is still the host's.
    """
    names = sorted(name for _, name in socket.if_nameindex())
    if names != ["lo"]:
        others = ", ".join(n for n in names if n != "lo") or "none, not even lo"
        raise DaemonError(
            f"refusing to start an IPFS daemon: this network namespace has interfaces "
            f"besides lo ({others}), so the node could reach other machines. Run it in "
            "a private namespace: unshare -n bash -c 'ip link set lo up; python "
            "scripts/ipfs_daemon.py start ...'",
            code=2,
        )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, request))[1]
    if not flags & _IFF_UP:
        raise DaemonError(
            "the loopback interface is down in this namespace: run `ip link set lo up` first",
            code=2,
        )


# ---------------------------------------------------------------- the safe config


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def safe_settings(api_port: int, gateway_port: int, swarm_port: int) -> dict[str, Any]:
    """The config keys that keep a js-ipfs node on this machine, by top-level section."""
    return {
        "Addresses": {
            "Swarm": [f"/ip4/{LOOPBACK}/tcp/{swarm_port}"],
            "Announce": [],
            "NoAnnounce": [],
            "API": f"/ip4/{LOOPBACK}/tcp/{api_port}",
            "Gateway": f"/ip4/{LOOPBACK}/tcp/{gateway_port}",
            "RPC": "",  # no gRPC server (ipfs-daemon starts one only when this is set)
            "Delegates": [],  # the default list asks node*.delegate.ipfs.io
        },
        "Bootstrap": [],
        "Discovery": {"MDNS": {"Enabled": False}, "webRTCStar": {"Enabled": False}},
        "Routing": {"Type": "none"},
        "Pubsub": {"Enabled": False},
        "Swarm": {"DisableNatPortMap": True},  # no UPnP / NAT-PMP
        "relay": {"enabled": False, "hop": {"enabled": False, "active": False}},
    }


def apply_safe_settings(config: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """Overwrite ``config`` with ``settings``, one level into each section."""
    for section, values in settings.items():
        if isinstance(values, dict) and isinstance(config.get(section), dict):
            config[section].update(values)
        else:
            config[section] = values
    return config


def unsafe_settings(config: dict[str, Any]) -> list[str]:
    """What in ``config`` could make the node talk to anything but 127.0.0.1."""
    problems = []
    addresses = config.get("Addresses", {})
    if config.get("Bootstrap"):
        problems.append("Bootstrap is not empty")
    if addresses.get("Delegates"):
        problems.append("Addresses.Delegates is not empty")
    if config.get("Routing", {}).get("Type") != "none":
        problems.append("Routing.Type is not none")
    if config.get("Discovery", {}).get("MDNS", {}).get("Enabled", True):
        problems.append("Discovery.MDNS is enabled")
    if config.get("Discovery", {}).get("webRTCStar", {}).get("Enabled", True):
        problems.append("Discovery.webRTCStar is enabled")
    if config.get("relay", {}).get("enabled", True):
        problems.append("relay is enabled")
    if not config.get("Swarm", {}).get("DisableNatPortMap", False):
        problems.append("NAT port mapping is enabled")
    local = f"/ip4/{LOOPBACK}/"
    for addr in addresses.get("Swarm", []):
        if not addr.startswith(local):
            problems.append(f"swarm address {addr} is not on {LOOPBACK}")
    for key in ("API", "Gateway"):
        values = addresses.get(key, [])
        for addr in [values] if isinstance(values, str) else values:
            if addr and not addr.startswith(local):
                problems.append(f"Addresses.{key} {addr} is not on {LOOPBACK}")
    if addresses.get("Announce"):
        problems.append("Addresses.Announce is not empty")
    return problems


# ---------------------------------------------------------------- the daemon


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise DaemonError("node is not on PATH: install Node.js 18 or later")
    if not CLI.exists():
        raise DaemonError(
            f"js-ipfs is not installed ({CLI} is missing): run bash .ci/install-services.sh "
            "(npm ci --prefix services/ipfs) outside the network namespace first"
        )
    return node


def _env(repo: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["IPFS_PATH"] = str(repo)
    env.pop("DEBUG", None)  # libp2p's debug logging would flood the log
    return env


def _read_pid(repo: Path) -> int | None:
    try:
        return int((repo / PID_FILE).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _is_our_daemon(pid: int, repo: Path) -> bool:
    """Whether ``pid`` is alive and is the node daemon of ``repo`` (not a reused pid).

    js-ipfs renames its process to ``ipfs`` (``process.title``), which overwrites the
    command line, so the check reads the executable and the environment instead.
    """
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    node = os.path.basename(exe).startswith("node")
    return node and f"IPFS_PATH={repo}".encode() in environ and _alive(pid)


def _answers(url: str, timeout: float = 2.0) -> bool:
    request = urllib.request.Request(f"{url}/api/v0/id", method="POST", data=b"")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def _init_repo(node: str, repo: Path, settings: dict[str, Any]) -> None:
    """Create the repo with the safe settings already in its first config."""
    repo.mkdir(parents=True, exist_ok=True)
    seed = repo.parent / f".{repo.name}.init-config.json"
    seed.write_text(json.dumps(settings))
    try:
        # --empty-repo: no help files are added, so nothing is offered for preloading.
        result = subprocess.run(
            [node, str(CLI), "init", "--empty-repo", str(seed)],
            env=_env(repo),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        seed.unlink(missing_ok=True)
    if result.returncode != 0 or not (repo / "config").exists():
        raise DaemonError(f"jsipfs init failed in {repo}:\n{result.stdout}{result.stderr}")


def start(repo: Path, api_port: int, gateway_port: int | None, wait: float, online: bool) -> str:
    """Initialise ``repo`` if needed, start the daemon and return its API URL."""
    require_private_netns()
    node = _node()
    repo = repo.resolve()
    url = f"http://{LOOPBACK}:{api_port}"
    pid = _read_pid(repo)
    if pid is not None and _is_our_daemon(pid, repo):
        raise DaemonError(
            f"a daemon already runs on {repo} (pid {pid}): stop it first with "
            f"python scripts/ipfs_daemon.py stop --repo {repo}"
        )
    if _answers(url, timeout=0.5):
        raise DaemonError(f"something already answers at {url}: choose another --api-port")
    settings = safe_settings(api_port, gateway_port or free_port(), free_port())
    if not (repo / "config").exists():
        _init_repo(node, repo, settings)
    config_path = repo / "config"
    config = apply_safe_settings(json.loads(config_path.read_text()), settings)
    problems = unsafe_settings(config)
    if problems:  # a bug in this script, never a user's choice
        raise DaemonError("refusing to start, the config is unsafe: " + "; ".join(problems), 2)
    config_path.write_text(json.dumps(config, indent=2))

    command = [node, str(CLI), "daemon", "--no-enable-preload"]
    if not online:
        command.append("--offline")
    with open(repo / LOG_FILE, "ab") as log:
        process = subprocess.Popen(
            command,
            env=_env(repo),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives the shell that started it
        )
    (repo / PID_FILE).write_text(f"{process.pid}\n")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if process.poll() is not None:
            (repo / PID_FILE).unlink(missing_ok=True)
            raise DaemonError(
                f"the daemon exited with status {process.returncode}; its log "
                f"({repo / LOG_FILE}) ends:\n{_tail(repo / LOG_FILE)}"
            )
        if _answers(url):
            return url
        time.sleep(0.25)
    _terminate(process.pid)
    (repo / PID_FILE).unlink(missing_ok=True)
    raise DaemonError(
        f"the daemon did not answer at {url} within {wait:.0f} s; its log ends:\n"
        f"{_tail(repo / LOG_FILE)}"
    )


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def _terminate(pid: int, grace: float = 15.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def stop(repo: Path) -> str:
    """Stop the daemon started on ``repo``; say what was done."""
    repo = repo.resolve()
    pid = _read_pid(repo)
    if pid is None:
        return f"no daemon pid file in {repo}: nothing to stop"
    if not _is_our_daemon(pid, repo):
        (repo / PID_FILE).unlink(missing_ok=True)
        return f"the daemon of {repo} (pid {pid}) was not running"
    _terminate(pid)
    (repo / PID_FILE).unlink(missing_ok=True)
    return f"stopped the daemon of {repo} (pid {pid})"


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run ``start`` or ``stop``."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    start_cmd = commands.add_parser("start", help="initialise if needed and start the daemon")
    start_cmd.add_argument("--repo", type=Path, required=True, help="the IPFS repo directory")
    start_cmd.add_argument("--api-port", type=int, default=5002)
    start_cmd.add_argument("--gateway-port", type=int, default=None, help="default: a free port")
    start_cmd.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the API")
    start_cmd.add_argument(
        "--online",
        action="store_true",
        help="start libp2p too (still loopback only, in the namespace); default --offline",
    )
    stop_cmd = commands.add_parser("stop", help="stop the daemon started on --repo")
    stop_cmd.add_argument("--repo", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            print(start(args.repo, args.api_port, args.gateway_port, args.wait, args.online))
        else:
            print(stop(args.repo))
    except DaemonError as exc:
        print(f"ipfs_daemon: {exc}", file=sys.stderr)
        return exc.code
    return 0


if __name__ == "__main__":
    sys.exit(main())
