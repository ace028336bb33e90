#!/usr/bin/env bash
# Start / stop the services the integration tests talk to: the IPFS daemon and a Hardhat
# JSON-RPC node.
# Run INSIDE a private network namespace (unshare -n, lo up), after install-services.sh:
#
#   bash .ci/services.sh start [ENV_FILE]   # last line: LIBSHARE_IPFS_API=http://127.0.0.1:PORT
#   bash .ci/services.sh stop
#
# `start` also writes LIBSHARE_IPFS_API=… and LIBSHARE_TEST_RPC=… to ENV_FILE when given,
# for `set -a; . ENV_FILE; set +a`.
# The IPFS repo lives in $LIBSHARE_SERVICES_DIR (default ${TMPDIR:-/tmp}/libshare-services)
# and is made afresh on every start. The API port is $LIBSHARE_IPFS_API_PORT (default 5002).
set -euo pipefail
cd "$(dirname "$0")/.."

python="${PYTHON:-python3}"
dir="${LIBSHARE_SERVICES_DIR:-${TMPDIR:-/tmp}/libshare-services}"
repo="$dir/ipfs"
port="${LIBSHARE_IPFS_API_PORT:-5002}"

case "${1:-}" in
  start)
    mkdir -p "$dir"
    "$python" scripts/ipfs_daemon.py stop --repo "$repo" >&2 # a daemon left by an earlier run
    rm -rf "$repo"
    url="$("$python" scripts/ipfs_daemon.py start --repo "$repo" --api-port "$port")"
    "$python" scripts/hardhat_node.py stop --dir "$dir/hardhat" >&2
    rpc="$("$python" scripts/hardhat_node.py start --dir "$dir/hardhat" --port "${LIBSHARE_HARDHAT_PORT:-8545}")"
    lines="LIBSHARE_TEST_RPC=$rpc
LIBSHARE_IPFS_API=$url"
    if [ -n "${2:-}" ]; then
      printf '%s\n' "$lines" > "$2"
    fi
    echo "$lines"
    ;;
  stop)
    "$python" scripts/hardhat_node.py stop --dir "$dir/hardhat" || true
    "$python" scripts/ipfs_daemon.py stop --repo "$repo"
    ;;
  *)
    echo "usage: $0 start [ENV_FILE] | stop" >&2
    exit 64
    ;;
esac
