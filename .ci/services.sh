#!/usr/bin/env bash
# Start / stop the services the integration tests talk to: the IPFS daemon, a Hardhat
# JSON-RPC node and a private PostgreSQL 15 cluster.
# Run INSIDE a private network namespace (unshare -n, lo up), after install-services.sh:
#
#   bash .ci/services.sh start [ENV_FILE]   # prints LIBSHARE_TEST_RPC=…, LIBSHARE_IPFS_API=…,
#                                           # LIBSHARE_TEST_DATABASE=…
#   bash .ci/services.sh stop
#
# `start` also writes those lines to ENV_FILE when given, for `set -a; . ENV_FILE; set +a`.
# Everything lives in $LIBSHARE_SERVICES_DIR (default ${TMPDIR:-/tmp}/libshare-services): the
# IPFS repo and the PostgreSQL cluster are made afresh on every start. Ports: the IPFS API
# on $LIBSHARE_IPFS_API_PORT (default 5002), Hardhat on $LIBSHARE_HARDHAT_PORT (8545),
# PostgreSQL on $LIBSHARE_POSTGRES_PORT (default: a free port). All bind 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

python="${PYTHON:-python3}"
dir="${LIBSHARE_SERVICES_DIR:-${TMPDIR:-/tmp}/libshare-services}"
repo="$dir/ipfs"
port="${LIBSHARE_IPFS_API_PORT:-5002}"
pg="$dir/postgres"

case "${1:-}" in
  start)
    mkdir -p "$dir"
    "$python" scripts/ipfs_daemon.py stop --repo "$repo" >&2 # a daemon left by an earlier run
    rm -rf "$repo"
    url="$("$python" scripts/ipfs_daemon.py start --repo "$repo" --api-port "$port")"
    "$python" scripts/hardhat_node.py stop --dir "$dir/hardhat" >&2
    rpc="$("$python" scripts/hardhat_node.py start --dir "$dir/hardhat" --port "${LIBSHARE_HARDHAT_PORT:-8545}")"
    "$python" scripts/postgres_cluster.py stop --dir "$pg" >&2 # a cluster left by an earlier run
    rm -rf "$pg"
    db="$("$python" scripts/postgres_cluster.py start --dir "$pg" ${LIBSHARE_POSTGRES_PORT:+--port "$LIBSHARE_POSTGRES_PORT"} | tail -n 1)"
    lines="LIBSHARE_TEST_RPC=$rpc
LIBSHARE_IPFS_API=$url
LIBSHARE_TEST_DATABASE=$db"
    if [ -n "${2:-}" ]; then
      printf '%s\n' "$lines" > "$2"
    fi
    echo "$lines"
    ;;
  stop)
    "$python" scripts/postgres_cluster.py stop --dir "$pg" || true
    "$python" scripts/hardhat_node.py stop --dir "$dir/hardhat" || true
    "$python" scripts/ipfs_daemon.py stop --repo "$repo"
    ;;
  *)
    echo "usage: $0 start [ENV_FILE] | stop" >&2
    exit 64
    ;;
esac
