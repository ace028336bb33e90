"""Start or stop a private PostgreSQL 15 cluster on 127.0.0.1 for tests, CI and benchmarks.

    python scripts/postgres_cluster.py start --dir DIR [--port P]   # prints the URL last
    python scripts/postgres_cluster.py stop --dir DIR

``start`` makes the cluster in DIR/data with ``initdb`` on first use, starts it with
``pg_ctl`` on 127.0.0.1 and the given port (a free one if none is given), creates the
database ``libshare`` and prints its SQLAlchemy URL as the last line of stdout. A
cluster already in DIR is started again as it is. ``stop`` stops it with
``pg_ctl stop -m fast`` (open sessions are rolled back, nothing committed is lost).

The cluster listens on 127.0.0.1 only, its Unix socket lives in DIR/socket, and it
trusts exactly those two ways in (no password: only this machine's own processes can
reach it). ``fsync`` stays on: the tests run with the durability of production.

``initdb`` and ``postgres`` refuse to run as root. Run as root (as CI is), the script
runs them as the ``postgres`` user (or ``nobody`` if there is none; override with
``LIBSHARE_PG_USER``) and gives DIR to that user, so DIR must be reachable by it: a
directory under /tmp, not one inside a 0700 directory such as /tmp/pytest-of-root.
The binaries come from /usr/lib/postgresql/15/bin (override with ``LIBSHARE_PG_BIN``).
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import socket
import subprocess
import sys
from pathlib import Path

BIN = Path(os.environ.get("LIBSHARE_PG_BIN", "/usr/lib/postgresql/15/bin"))
SUPERUSER = "libshare"  # the cluster's bootstrap role; the URL connects as it
DATABASE = "libshare"
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 60

HBA = """\
# Written by scripts/postgres_cluster.py: trust the private socket and 127.0.0.1 only.
local   all   all                  trust
host    all   all   127.0.0.1/32   trust
"""


class ClusterError(Exception):
    """What went wrong, said so that the caller knows what to do."""


def url(port: int) -> str:
    return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{port}/{DATABASE}"


def _run_as() -> str | None:
    """The user that runs initdb and postgres when we are root; None when we are not."""
    if os.geteuid() != 0:
        return None
    wanted = os.environ.get("LIBSHARE_PG_USER")
    for name in [wanted] if wanted else ["postgres", "nobody"]:
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise ClusterError(
        f"running as root, and there is no {wanted or 'postgres or nobody'} user to run "
        "PostgreSQL as (it refuses root): set LIBSHARE_PG_USER to an unprivileged user"
    )


def _owner(path: Path) -> str | None:
    """Who runs the cluster in ``path``: its owner when we are root, else ourselves."""
    if os.geteuid() != 0:
        return None
    return pwd.getpwuid(path.stat().st_uid).pw_name


def _tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        raise ClusterError(
            f"{path} not found: install the PostgreSQL 15 server (apt-get install "
            "postgresql-15) or set LIBSHARE_PG_BIN to the directory holding initdb and pg_ctl"
        )
    return str(path)


def _run(
    args: list[str], *, user: str | None, cwd: Path, timeout: float, check: bool = True
) -> subprocess.CompletedProcess[str]:
    command = ["runuser", "-u", user, "--", *args] if user else args
    try:
        result = subprocess.run(
            command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise ClusterError(f"{Path(args[0]).name} did not finish within {timeout:.0f} s") from exc
    if check and result.returncode != 0:
        output = (result.stderr or result.stdout).strip()
        raise ClusterError(f"{Path(args[0]).name} failed ({result.returncode}): {output}")
    return result


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As postgres binds: connections of a stopped cluster in TIME_WAIT do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _give(path: Path, user: str | None) -> None:
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _init(folder: Path, user: str | None) -> None:
    """initdb into folder/data, then loopback-only settings and trust rules."""
    data = folder / "data"
    sockets = folder / "socket"
    if folder.exists() and {p.name for p in folder.iterdir()} - {"socket", "port"}:
        raise ClusterError(
            f"{folder} holds other files and no cluster: give a new or empty directory "
            "(it becomes the cluster's, owned by the user that runs it)"
        )
    for path in (folder, sockets):
        path.mkdir(parents=True, exist_ok=True)
        _give(path, user)
    sockets.chmod(0o700)
    if user is not None and _run(["test", "-w", str(folder)], user=user, cwd=Path("/"),
                                 timeout=10, check=False).returncode != 0:  # fmt: skip
        raise ClusterError(
            f"user {user} cannot write {folder} (a parent directory is closed to it, such "
            "as a 0700 /tmp/pytest-of-root): choose a directory it can reach, e.g. under /tmp"
        )
    _run(
        [_tool("initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust",
         "--encoding=UTF8", "--locale=C", "--no-instructions"],
        user=user, cwd=folder, timeout=180,
    )  # fmt: skip
    with (data / "postgresql.conf").open("a", encoding="utf-8") as conf:
        conf.write(
            "\n# scripts/postgres_cluster.py\n"
            "listen_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{sockets}'\n"
            "fsync = on\n"
            "max_connections = 200\n"
        )
    (data / "pg_hba.conf").write_text(HBA, encoding="utf-8")  # the file keeps its owner


def _running(data: Path, user: str | None) -> bool:
    status = _run([_tool("pg_ctl"), "status", "-D", str(data)], user=user, cwd=data.parent,
                  timeout=30, check=False)  # fmt: skip
    return status.returncode == 0


def start(folder: Path, port: int | None) -> str:
    """Make (on first use) and start the cluster in ``folder``; return its URL."""
    folder = folder.resolve()
    data = folder / "data"
    if (data / "PG_VERSION").exists():
        user = _owner(data)
    else:
        user = _run_as()
        _init(folder, user)
    if _running(data, user):
        raise ClusterError(f"the cluster in {folder} is already running: stop it first")
    port = port or _free_port()
    if not _port_is_free(port):
        raise ClusterError(f"port {port} on 127.0.0.1 is taken: choose another, or none")
    log = folder / "postgres.log"
    result = _run(
        [_tool("pg_ctl"), "start", "-D", str(data), "-l", str(log), "-w",
         "-t", str(START_TIMEOUT_S), "-o", f"-p {port}"],
        user=user, cwd=folder, timeout=START_TIMEOUT_S + 10, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-10:] if log.exists() else []
        raise ClusterError(
            f"pg_ctl could not start the cluster in {folder} within {START_TIMEOUT_S} s "
            f"({result.stderr.strip() or result.stdout.strip()}); the log ends:\n" + "\n".join(tail)
        )
    (folder / "port").write_text(f"{port}\n")
    psql = [_tool("psql"), "-h", "127.0.0.1", "-p", str(port), "-U", SUPERUSER, "-d", "postgres",
            "-v", "ON_ERROR_STOP=1", "-tAc"]  # fmt: skip
    exists = _run([*psql, f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"],
                  user=None, cwd=folder, timeout=30)  # fmt: skip
    if exists.stdout.strip() != "1":
        _run([*psql, f"CREATE DATABASE {DATABASE}"], user=None, cwd=folder, timeout=60)
    return url(port)


def stop(folder: Path) -> str:
    """Stop the cluster in ``folder`` (fast shutdown); say what was done."""
    folder = folder.resolve()
    data = folder / "data"
    if not (data / "PG_VERSION").exists():
        return f"no cluster in {folder}: nothing to stop"
    user = _owner(data)
    if not _running(data, user):
        return f"the cluster in {folder} is not running"
    _run(
        [_tool("pg_ctl"), "stop", "-D", str(data), "-m", "fast", "-w", "-t", str(STOP_TIMEOUT_S)],
        user=user, cwd=folder, timeout=STOP_TIMEOUT_S + 10,
    )  # fmt: skip
    return f"stopped the cluster in {folder}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--port", type=int, default=None, help="default: a free port")
    args = parser.parse_args()
    if shutil.which("runuser") is None and os.geteuid() == 0:
        print("running as root needs runuser (util-linux) to drop to postgres", file=sys.stderr)
        return 2
    try:
        if args.action == "start":
            print(start(args.dir, args.port))
        else:
            print(stop(args.dir), file=sys.stderr)
    except ClusterError as exc:
        print(f"postgres_cluster: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
