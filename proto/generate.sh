#!/usr/bin/env bash
# Regenerates the TypeScript code for proto/ into libs/proto/src/gen (ts-proto via buf, both from
# node_modules: no network, no protoc download).
#
#   bash proto/generate.sh           format the .proto files (buf format -w), lint them (STANDARD),
#                                    then regenerate libs/proto/src/gen (stale files removed)
#   bash proto/generate.sh --check   fail if a .proto file is not formatted or fails lint, or if the
#                                    committed libs/proto/src/gen differs from a fresh generation in
#                                    a temp dir (lists the stale files)
#
# Also available as `pnpm proto:generate` / `pnpm proto:check`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

BUF="$ROOT/node_modules/.bin/buf"
PLUGIN="$ROOT/node_modules/.bin/protoc-gen-ts_proto"
GEN_DIR="libs/proto/src/gen"

for tool in "$BUF" "$PLUGIN"; do
  if [[ ! -x "$tool" ]]; then
    echo "proto/generate.sh: $tool is missing; run 'pnpm install' first" >&2
    exit 2
  fi
done

mode="write"
case "${1:-}" in
  "") ;;
  --check) mode="check" ;;
  *)
    echo "usage: bash proto/generate.sh [--check]" >&2
    exit 2
    ;;
esac

if [[ "$mode" == "write" ]]; then
  "$BUF" format --write proto
elif ! "$BUF" format --diff --exit-code proto; then
  echo "proto:check: .proto files are not formatted; run 'pnpm proto:generate'" >&2
  exit 1
fi

echo "buf lint (STANDARD)"
"$BUF" lint proto

generate() {
  # buf.gen.yaml names the plugin relative to the repository root (the working directory here).
  "$BUF" generate proto --template proto/buf.gen.yaml --output "$1"
}

if [[ "$mode" == "write" ]]; then
  rm -rf "$GEN_DIR"
  mkdir -p "$GEN_DIR"
  generate "$GEN_DIR"
  echo "generated $(find "$GEN_DIR" -type f | wc -l | tr -d ' ') files into $GEN_DIR"
  exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
generate "$tmp"

if [[ ! -d "$GEN_DIR" ]]; then
  echo "proto:check: $GEN_DIR does not exist; run 'pnpm proto:generate'" >&2
  exit 1
fi

stale=()
while IFS= read -r file; do
  rel="${file#"$tmp"/}"
  if [[ ! -f "$GEN_DIR/$rel" ]]; then
    stale+=("$GEN_DIR/$rel (missing)")
  elif ! cmp -s "$file" "$GEN_DIR/$rel"; then
    stale+=("$GEN_DIR/$rel (differs)")
  fi
done < <(find "$tmp" -type f | LC_ALL=C sort)
while IFS= read -r file; do
  rel="${file#"$GEN_DIR"/}"
  if [[ ! -f "$tmp/$rel" ]]; then
    stale+=("$GEN_DIR/$rel (no longer generated)")
  fi
done < <(find "$GEN_DIR" -type f | LC_ALL=C sort)

if ((${#stale[@]} > 0)); then
  echo "proto:check: generated code is stale; run 'pnpm proto:generate' and commit the result:" >&2
  printf '  %s\n' "${stale[@]}" >&2
  exit 1
fi
echo "proto:check: $GEN_DIR is up to date"
