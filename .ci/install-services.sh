#!/usr/bin/env bash
# Install the services the integration tests start: the pinned js-ipfs daemon, Hardhat and
# the PostgreSQL 15 server binaries (Debian's package, only if they are missing).
# Runs OUTSIDE the network namespace: it needs the npm registry and Debian's.
set -euo pipefail
cd "$(dirname "$0")/.."
npm ci --prefix services/ipfs --no-audit --no-fund
npm ci --prefix services/hardhat --no-audit --no-fund
if [ ! -x "${LIBSHARE_PG_BIN:-/usr/lib/postgresql/15/bin}/initdb" ]; then
  # Binaries only: scripts/postgres_cluster.py makes its own cluster, so the package must
  # not create (or start) a system-wide one.
  mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/libshare.conf
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
fi
