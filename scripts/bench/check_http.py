"""Benchmark access checks over HTTP: `libshare serve` on loopback at concurrency 32.

Sets up a consortium on the embedded chain in a temporary data dir — 10,000 resources
under 100 licences, requests from 100,000 patrons — starts `libshare serve` on
127.0.0.1, and drives ``POST /v1/access/check`` from a separate client process. Every
decision is durably committed (SQLite WAL, synchronous=FULL, group commit) before its
answer. In the same run it measures the baseline a naive gate would use: a server that
reads the resource and its licence from the chain on every request (and, to favour it,
keeps no counters and writes no trail).

    python scripts/bench/check_http.py [--resources 10000] [--licences 100]
        [--patrons 100000] [--requests 20000] [--concurrency 32] [--seconds 60]

Prints a table, then, as its last line, one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

PASSWORD = "bench-only-password"
HOST = "127.0.0.1"


# -- set-up ----------------------------------------------------------------------------


def set_up(data_dir: Path, resources: int, licences: int, rpc: str | None) -> tuple[str, list[str]]:
    """Deploy, issue licences and register resources; return a delivery key and the ids."""
    from ledger.instance import Instance, InstanceConfig
    from ledger.keys import LIGHT_SCRYPT_N
    from ledger.licence import Campaign, Fee, consortium_terms
    from ledger.onchain import ConsortiumContracts, FounderInput
    from ledger.registration import NewResource, issue_licence, register_resources

    config = InstanceConfig(data_dir, PASSWORD, chain_url=rpc, scrypt_n=LIGHT_SCRYPT_N)
    with Instance(config) as instance:
        admin = instance.keystore.create("ADMIN")
        members = {lib: instance.keystore.create(lib) for lib in ("CN-A", "CN-B", "CN-C")}
        for keys in (admin, *members.values()):
            instance.chain.fund_from_node(keys.account.address, 10**20)
        founders = [
            FounderInput(lib, tier, "CN", members[lib].account.address)
            for tier, lib in enumerate(members, start=1)
        ]
        contracts = ConsortiumContracts.deploy(instance.chain, admin.account, founders, 1)
        instance.record_deployment(contracts)
        now = datetime.now(UTC)
        day = timedelta(days=1)
        owner = members["CN-A"]
        licence_ids = []
        for n in range(licences):
            terms = consortium_terms(
                valid_from=now - 10 * day,
                valid_until=now + 300 * day,
                campaigns=(Campaign(f"free-{n}", now + 30 * day, now + 60 * day, True),),
                fee=Fee(500 + n, "CNY"),
            )
            licence_ids.append(issue_licence(instance, owner.account, terms)[0])
        items = [
            NewResource(
                f"resource {i}".encode(),
                "text",
                {"title": f"Resource {i}"},
                licence_ids[i % len(licence_ids)],
            )
            for i in range(resources)
        ]
        ids: list[str] = []
        for start in range(0, len(items), 100):
            ids += [
                r.resource_id
                for r in register_resources(instance, owner, items[start : start + 100])
            ]
        token, _ = instance.apikeys.create("CN-B", "delivery", label="bench")
    return token, ids


# -- servers ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def start_server(args: list[str], port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            httpx.get(f"http://{HOST}:{port}/v1/health", timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not start within 120 s")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def naive_gate(data_dir: Path, port: int, rpc: str | None) -> None:
    """The baseline: read the resource and its licence from the chain on every request."""
    import uvicorn
    from fastapi import FastAPI
    from web3 import Web3

    from ledger.chain import Chain
    from ledger.licence import Request, counters_needed, evaluate
    from ledger.licence_json import terms_from_json
    from ledger.licence_terms import Licence, Method, PatronCategory, Purpose, Scope
    from ledger.onchain import ConsortiumContracts, Deployment

    chain = Chain.open_rpc(rpc) if rpc else Chain.open_embedded(data_dir / "chain.sqlite")
    contracts = ConsortiumContracts(chain, Deployment.load(data_dir / "deployment.json"))
    issued = contracts.licences.events.LicenceIssued()
    app = FastAPI()

    @app.get("/v1/health")
    def health() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/v1/access/check")
    def check(body: dict[str, Any]) -> dict[str, Any]:
        resource = chain.call(contracts.resources.functions.resourceOf(body["resource_id"]))
        licence_id = int(resource[1])  # ResourceRegistry.Resource: owner, licenceId, ...
        info = chain.call(contracts.licences.functions.licenceOf(licence_id))
        version = int(info[1])
        logs = chain.w3.eth.get_logs(
            {
                "address": contracts.licences.address,
                "fromBlock": contracts.deployment.block,
                "toBlock": "latest",
                "topics": [issued.topic, "0x" + licence_id.to_bytes(32, "big").hex()],
            }
        )
        events = [issued.process_log(log) for log in logs]
        terms_json = next(e["args"]["termsJson"] for e in events if e["args"]["version"] == version)
        licence = Licence(licence_id, version, "", terms_from_json(json.loads(terms_json)))
        request = Request(
            body["resource_id"], None, body["requesting_member"], 2, body["patron_id"],
            PatronCategory(body["patron_category"]), Purpose(body["purpose"]),
            Method(body["method"]), Scope(body["scope"]), body["destination_country"],
            None, datetime.now(UTC),
        )  # fmt: skip
        decision = evaluate(licence, request, dict.fromkeys(counters_needed(licence, request), 0))
        return {"decision": str(decision.outcome), "reason": str(decision.reason)}

    del Web3
    uvicorn.run(app, host=HOST, port=port, log_level="warning")


# -- the client ------------------------------------------------------------------------


def client(url: str, token: str, ids_file: Path, n: int, concurrency: int, seconds: float) -> None:
    """Send ``n`` checks with ``concurrency`` in flight; print latencies as JSON."""
    import httpx

    ids = json.loads(ids_file.read_text())
    rnd = random.Random(7)
    mixes = [("copy", "part", 60), ("copy", "whole", 20), ("loan", "whole", 10),
             ("secure_electronic", "part", 10)]  # fmt: skip
    bodies = []
    for _ in range(n):
        method, scope = rnd.choices([(m, s) for m, s, _ in mixes], [w for *_, w in mixes])[0]
        bodies.append(
            {
                "resource_id": rnd.choice(ids),
                "requesting_member": "CN-B",
                "patron_id": f"patron-{rnd.randrange(100_000)}",
                "patron_category": rnd.choice(["faculty", "student", "staff"]),
                "purpose": rnd.choice(["research", "teaching", "personal_study"]),
                "method": method,
                "scope": scope,
                "destination_country": "CN" if rnd.random() < 0.9 else "US",
            }
        )
    latencies: list[float] = []
    errors = 0

    async def worker(queue: asyncio.Queue[dict[str, Any]], http: httpx.AsyncClient) -> None:
        nonlocal errors
        deadline = start + seconds
        while not queue.empty() and time.perf_counter() < deadline:
            body = queue.get_nowait()
            t0 = time.perf_counter()
            response = await http.post("/v1/access/check", json=body)
            latencies.append(time.perf_counter() - t0)
            if response.status_code != 200:
                errors += 1

    async def main() -> float:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for body in bodies:
            queue.put_nowait(body)
        limits = httpx.Limits(max_connections=concurrency)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=url, limits=limits, headers=headers) as http:
            await http.post("/v1/access/check", json=bodies[0])  # warm up
            t0 = time.perf_counter()
            await asyncio.gather(*(worker(queue, http) for _ in range(concurrency)))
            return time.perf_counter() - t0

    start = time.perf_counter()
    elapsed = asyncio.run(main())
    print(json.dumps({"elapsed": elapsed, "latencies": latencies, "errors": errors}))


WRK_SCRIPT = r"""
local ids = {%(ids)s}
local categories = {"faculty", "student", "staff"}
local purposes = {"research", "teaching", "personal_study"}
local methods = {{"copy", "part"}, {"copy", "part"}, {"copy", "part"}, {"copy", "whole"},
                 {"loan", "whole"}, {"secure_electronic", "part"}}
local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer %(token)s"}
math.randomseed(7)
request = function()
  local m = methods[math.random(#methods)]
  local country = "CN"
  if math.random() < 0.1 then country = "US" end
  local body = string.format(
    '{"resource_id":"%%s","requesting_member":"CN-B","patron_id":"patron-%%d",' ..
    '"patron_category":"%%s","purpose":"%%s","method":"%%s","scope":"%%s",' ..
    '"destination_country":"%%s"}',
    ids[math.random(#ids)], math.random(100000) - 1, categories[math.random(#categories)],
    purposes[math.random(#purposes)], m[1], m[2], country)
  return wrk.format("POST", "/v1/access/check", headers, body)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p99_us": %%d, "errors": %%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout + e.status))
end
"""


def run_wrk(
    url: str, token: str, ids: list[str], args: argparse.Namespace, tmp: Path
) -> dict[str, float]:
    """Drive the server with wrk (C, one thread): the client then costs the server little CPU."""
    script = tmp / "check.lua"
    script.write_text(WRK_SCRIPT % {"ids": ",".join(f'"{i}"' for i in ids), "token": token})
    out = subprocess.run(
        ["wrk", "-t1", f"-c{args.concurrency}", f"-d{int(args.seconds)}s", "--timeout", "10s",
         "-s", str(script), url],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"wrk failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "checks_per_s": result["requests"] / (result["duration_us"] / 1e6),
        "p50_ms": result["p50_us"] / 1000,
        "p99_ms": result["p99_us"] / 1000,
        "requests": result["requests"],
        "errors": result["errors"],
    }


def run_client(url: str, token: str, ids_file: Path, args: argparse.Namespace) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--client", url, "--token", token, "--ids", str(ids_file),
         "--requests", str(args.requests), "--concurrency", str(args.concurrency),
         "--seconds", str(args.seconds)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"load client failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    lat = sorted(result["latencies"])
    return {
        "checks_per_s": len(lat) / result["elapsed"],
        "p50_ms": 1000 * statistics.median(lat),
        "p99_ms": 1000 * lat[int(0.99 * (len(lat) - 1))],
        "requests": len(lat),
        "errors": result["errors"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resources", type=int, default=10_000)
    parser.add_argument("--licences", type=int, default=100)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--client")
    parser.add_argument("--token")
    parser.add_argument("--ids", type=Path)
    parser.add_argument("--naive-gate", type=Path)
    parser.add_argument(
        "--rpc", help="set up on this JSON-RPC node (e.g. Hardhat) instead of the embedded chain"
    )
    parser.add_argument("--port", type=int)
    args = parser.parse_args()
    if args.client:
        client(args.client, args.token, args.ids, args.requests, args.concurrency, args.seconds)
        return
    if args.naive_gate:
        naive_gate(args.naive_gate, args.port, args.rpc)
        return

    with tempfile.TemporaryDirectory(prefix="libshare-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        t0 = time.perf_counter()
        token, ids = set_up(data_dir, args.resources, args.licences, args.rpc)
        setup_s = time.perf_counter() - t0
        ids_file = Path(tmp) / "ids.json"
        ids_file.write_text(json.dumps(ids))
        env = dict(os.environ, LIBSHARE_KEYSTORE_PASSWORD=PASSWORD, LIBSHARE_DATA_DIR=str(data_dir))
        if args.rpc:
            env["LIBSHARE_CHAIN_URL"] = args.rpc

        port = free_port()
        server = start_server(
            [sys.executable, "-m", "api.cli", "serve", "--port", str(port), "--no-access-log"],
            port,
            env,
        )
        drive = (
            (lambda u: run_wrk(u, token, ids, args, Path(tmp)))
            if shutil.which("wrk")
            else (lambda u: run_client(u, token, ids_file, args))
        )
        client_name = "wrk" if shutil.which("wrk") else "python httpx client (install wrk)"
        try:
            drive(f"http://{HOST}:{port}")  # warm-up: caches, keys, connections
            ours = drive(f"http://{HOST}:{port}")
        finally:
            stop_server(server)

        port = free_port()
        gate = start_server(
            [sys.executable, __file__, "--naive-gate", str(data_dir), "--port", str(port)]
            + (["--rpc", args.rpc] if args.rpc else []),
            port,
            env,
        )
        try:
            naive = drive(f"http://{HOST}:{port}")
        finally:
            stop_server(gate)

    rows = [("libshare serve (index + group commit)", ours),
            ("naive gate (licence read from the chain per request)", naive)]  # fmt: skip
    print(
        f"{args.resources} resources, {args.licences} licences, 100000 patrons, "
        f"concurrency {args.concurrency}, set-up {setup_s:.0f} s, {os.cpu_count()} cores, "
        f"load from {client_name}"
    )
    print(f"{'server':<56} {'checks/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for name, r in rows:
        print(
            f"{name:<56} {r['checks_per_s']:>9.0f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
            f"{r['errors']:>7.0f}"
        )
    print(json.dumps({"libshare": ours, "naive_gate": naive, "concurrency": args.concurrency}))


if __name__ == "__main__":
    main()
