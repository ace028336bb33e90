#!/usr/bin/env bash
# Runs inside `unshare -n`: bring loopback up, start the services, run the tests, stop.
set -euo pipefail
cd "$(dirname "$0")/.."
ip link set lo up

env_file="$(mktemp)"
bash .ci/services.sh start "$env_file"
trap 'bash .ci/services.sh stop || true; rm -f "$env_file"' EXIT
set -a
# shellcheck disable=SC1090
. "$env_file"
set +a

# The README's test command (its installs ran before entering the namespace).
pytest
