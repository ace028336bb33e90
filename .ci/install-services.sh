#!/usr/bin/env bash
# Install the services the integration tests start: the pinned js-ipfs daemon and Hardhat.
# Runs OUTSIDE the network namespace: it needs the npm registry.
set -euo pipefail
cd "$(dirname "$0")/.."
npm ci --prefix services/ipfs --no-audit --no-fund
npm ci --prefix services/hardhat --no-audit --no-fund
