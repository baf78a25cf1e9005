#!/usr/bin/env bash
# Builds the given Nx projects (and what they depend on) quietly: output only when something fails.
# Used by `pnpm start` and `pnpm bench` so the demo's output stays readable.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Jest's global setup built everything before the tests started (jest.global-setup.js): building
# again during them would replace dist/ folders under services other test files are running.
if [[ "${MULTIAGENTS_TESTS_BUILT:-}" == 1 ]]; then
  exit 0
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! NX_DAEMON=false NX_NO_CLOUD=true npx nx run-many -t build -p "$@" --output-style=static >"$log" 2>&1; then
  cat "$log" >&2
  echo "build failed: $*" >&2
  exit 1
fi
