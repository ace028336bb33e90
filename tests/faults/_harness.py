"""What the fault tests share: a consortium in a data dir, `libshare serve` as a real
process, and a bounded load of access checks over HTTP that records every answer.

The consortium is set up by the HTTP benchmark's own code (``scripts/bench/check_http.py``,
``set_up``), so the fault tests run the service the benchmark measures, only with fewer
resources. The server is a subprocess (``python -m api.cli serve``) so that it can be
killed with SIGKILL like a crashed machine, and restarted on the same data dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
START_TIMEOUT_S = 120.0  # imports, keystore, chain and index: a few seconds on a quiet machine
STOP_TIMEOUT_S = 30.0
REQUEST_TIMEOUT_S = 30.0  # an answer slower than this counts as no answer


def _load_check_http() -> ModuleType:
    """``scripts/bench/check_http.py`` as a module (scripts/ is not a package)."""
    path = ROOT / "scripts" / "bench" / "check_http.py"
    spec = importlib.util.spec_from_file_location("libshare_bench_check_http", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_http = _load_check_http()
PASSWORD: str = check_http.PASSWORD


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Consortium:
    """A data dir holding a deployed consortium: CN-A owns ``resource_ids``, CN-B asks."""

    data_dir: Path
    delivery_token: str  # CN-B's delivery key
    auditor_token: str  # CN-C's auditor key: reads CN-A's trail heads
    resource_ids: list[str]


def set_up_consortium(
    data_dir: Path, *, resources: int, licences: int, rpc: str | None = None
) -> Consortium:
    """The benchmark's consortium (CN-A, CN-B, CN-C on ``rpc`` or the embedded chain)."""
    from ledger.instance import Instance, InstanceConfig
    from ledger.keys import LIGHT_SCRYPT_N

    token, ids = check_http.set_up(data_dir, resources, licences, rpc)
    config = InstanceConfig(data_dir, PASSWORD, chain_url=rpc, scrypt_n=LIGHT_SCRYPT_N)
    with Instance(config) as instance:
        auditor, _ = instance.apikeys.create("CN-C", "auditor", label="fault tests")
    return Consortium(data_dir, token, auditor, list(ids))


def serve_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """The environment `libshare serve` runs with: password, data dir, ``LIBSHARE_<NAME>``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIBSHARE_")}
    env.update(LIBSHARE_KEYSTORE_PASSWORD=PASSWORD, LIBSHARE_DATA_DIR=str(data_dir))
    env.update({f"LIBSHARE_{name.upper()}": value for name, value in settings.items()})
    return env


class Server:
    """`libshare serve` in a subprocess on 127.0.0.1, its output in ``log``.

    ``start`` waits (bounded) until ``/v1/health`` answers; ``kill9`` is SIGKILL;
    ``stop`` is SIGTERM (a graceful shutdown), then SIGKILL if it does not exit in time.
    """

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.env = env
        self.port = port
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> float:
        """Start the server; return the seconds until it answered ``/v1/health``."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        t0 = time.monotonic()
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "api.cli", "serve", "--host", HOST,
                 "--port", str(self.port), "--no-access-log"],
                env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        while time.monotonic() - t0 < START_TIMEOUT_S:
            if self.proc.poll() is not None:
                raise AssertionError(f"libshare serve exited at start:\n{self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/v1/health", timeout=2).status_code == 200:
                    return time.monotonic() - t0
            time.sleep(0.1)
        raise AssertionError(f"libshare serve did not answer in {START_TIMEOUT_S:.0f} s")

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=STOP_TIMEOUT_S)

    def stop(self) -> bool:
        """Stop it if it runs (SIGTERM, then SIGKILL); return whether it shut down cleanly.

        uvicorn finishes its shutdown (the app's lifespan: the anchoring thread, the
        decision writer, the database) and then re-raises SIGTERM, so a clean exit is
        -SIGTERM (or 0) with the shutdown logged.
        """
        if self.proc is None:
            return False
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT_S)
        clean = self.proc.returncode in (0, -signal.SIGTERM)
        return clean and "Application shutdown complete" in self.tail(5)

    def tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


# -- load --------------------------------------------------------------------------------


@dataclass
class Answer:
    """One access check sent: its request, when, and what came back (if anything)."""

    request: int  # index into the load's bodies
    sent: float  # monotonic
    seconds: float
    status: int | None  # None: the connection failed or broke before an answer
    body: dict[str, Any] | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass
class Load:
    """Access checks from ``concurrency`` async clients, drawn from ``bodies`` in order.

    Each :meth:`run` is bounded: it stops when ``until`` (called after every answer)
    says so, when the bodies run out, or at ``max_seconds``. Bodies not sent stay for the
    next run. ``interval`` spaces each client's requests (a moderate, steady rate).
    """

    url: str
    token: str
    bodies: list[dict[str, str]]
    concurrency: int
    interval: float = 0.0
    answers: list[Answer] = field(default_factory=list)
    _next: deque[int] = field(default_factory=deque, init=False)

    def __post_init__(self) -> None:
        self._next.extend(range(len(self.bodies)))

    @property
    def acknowledged(self) -> list[Answer]:
        return [a for a in self.answers if a.ok]

    def run(self, until: Callable[[Load], bool], max_seconds: float) -> None:
        asyncio.run(self._run(until, max_seconds))

    async def _run(self, until: Callable[[Load], bool], max_seconds: float) -> None:
        done = asyncio.Event()
        deadline = time.monotonic() + max_seconds
        headers = {"Authorization": f"Bearer {self.token}"}
        limits = httpx.Limits(max_connections=self.concurrency)
        timeout = httpx.Timeout(REQUEST_TIMEOUT_S)

        async def client(http: httpx.AsyncClient) -> None:
            while self._next and not done.is_set() and time.monotonic() < deadline:
                index = self._next.popleft()
                sent = time.monotonic()
                try:
                    response = await http.post("/v1/access/check", json=self.bodies[index])
                except httpx.TransportError as exc:
                    answer = Answer(index, sent, time.monotonic() - sent, None, None, repr(exc))
                else:
                    answer = Answer(
                        index, sent, time.monotonic() - sent, response.status_code, response.json()
                    )
                self.answers.append(answer)
                if until(self):
                    done.set()
                if self.interval:
                    await asyncio.sleep(self.interval)

        async with httpx.AsyncClient(
            base_url=self.url, headers=headers, limits=limits, timeout=timeout
        ) as http:
            await asyncio.gather(*(client(http) for _ in range(self.concurrency)))


def parse_time(text: str) -> datetime:
    """An ISO 8601 time as the API (``Z``) or a trail entry (``+00:00``) writes it."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
