#!/usr/bin/env bash
# Copies each service, with only its production dependencies, into <out>/<app> (pnpm deploy), and
# the order example's workers and definition into <out>/examples/order-processing. Run after the
# apps are built. infra/Dockerfile runs it in its build stage; tests/deploy runs it too and starts
# what it produced, so the images' contents are tested without a Docker engine.
#
#   bash infra/deploy-apps.sh /deploy
set -euo pipefail
out=${1:?usage: deploy-apps.sh <output folder>}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mkdir -p "$out"
for app in orchestrator worker-manager metrics-collector event-monitor; do
  if [[ ! -f "apps/$app/package.json" ]]; then
    # Not in this checkout (event-monitor is built on another branch): an empty folder keeps the
    # Dockerfile's COPY valid.
    mkdir -p "$out/$app"
    continue
  fi
  rm -rf "${out:?}/$app"
  # --legacy: pnpm 10's deploy otherwise needs injected workspace packages in the lockfile.
  pnpm --filter "@multiagents/$app" deploy --prod --legacy "$out/$app" >/dev/null
  rm -rf "$out/$app/src" "$out/$app/tsconfig.json" "$out/$app/tsconfig.lib.json" "$out/$app/jest.config.js"
  # The gRPC server reads proto/ for reflection; it looks next to the app.
  cp -r proto "$out/$app/proto"
done
mkdir -p "$out/examples/order-processing"
cp -r examples/order-processing/dist/. "$out/examples/order-processing/"
cp examples/order-processing/src/workflow.yaml "$out/examples/order-processing/workflow.yaml"
