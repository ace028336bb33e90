#!/usr/bin/env bash
# Start / stop the services the integration tests talk to (today: the IPFS daemon).
# Run INSIDE a private network namespace (unshare -n, lo up), after install-services.sh:
#
#   bash .ci/services.sh start [ENV_FILE]   # last line: LIBSHARE_IPFS_API=http://127.0.0.1:PORT
#   bash .ci/services.sh stop
#
# `start` also writes that line to ENV_FILE when given, for `set -a; . ENV_FILE; set +a`.
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
    line="LIBSHARE_IPFS_API=$url"
    if [ -n "${2:-}" ]; then
      printf '%s\n' "$line" > "$2"
    fi
    echo "$line"
    ;;
  stop)
    "$python" scripts/ipfs_daemon.py stop --repo "$repo"
    ;;
  *)
    echo "usage: $0 start [ENV_FILE] | stop" >&2
    exit 64
    ;;
esac
