#!/usr/bin/env bash
# Install the services the integration tests start (today: the pinned js-ipfs daemon).
# Runs OUTSIDE the network namespace: it needs the npm registry.
set -euo pipefail
cd "$(dirname "$0")/.."
npm ci --prefix services/ipfs --no-audit --no-fund
