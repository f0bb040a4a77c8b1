#!/usr/bin/env bash
# Times `skein validate` on a generated workflow of 2,000 tasks with 4,000 expressions,
# and on the spec's examples, and prints the median and range of several runs with the
# peak memory. Usage: scripts/bench-validate.sh [RUNS]   (default 7)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-7}"
cargo build --release --quiet
skein="${CARGO_TARGET_DIR:-target}/release/skein"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

awk 'BEGIN {
  print "document: {dsl: \047" "1.0.3" "\047, namespace: bench, name: big, version: \0471.0.0\047}"
  print "do:"
  for (i = 0; i < 2000; i++) {
    printf "  - t%d:\n      set:\n        a%d: ${ .a + %d }\n        b%d: ${ \"item \\(.x) \\(%d)\" }\n", i, i, i, i, i
  }
}' > "$work/big.yaml"

measure() {
  local label="$1"; shift
  local times=() mems=()
  for _ in $(seq "$runs"); do
    /usr/bin/time -f "%e %M" -o "$work/t" "$skein" validate "$@" 2>/dev/null >/dev/null || true
    read -r t m < "$work/t"
    times+=("$t"); mems+=("$m")
  done
  local sorted=($(printf '%s\n' "${times[@]}" | sort -n))
  local msorted=($(printf '%s\n' "${mems[@]}" | sort -n))
  echo "$label: median ${sorted[$((runs / 2))]} s (min ${sorted[0]}, max ${sorted[$((runs - 1))]}), peak RSS median $((msorted[$((runs / 2))] / 1024)) MiB, $runs runs"
}

measure "2,000 tasks / 4,000 expressions" "$work/big.yaml"
spec="${SKEIN_SPEC_DIR:-spec}"
[ -d "$spec" ] || spec=../shared/spec/serverless-workflow-1.0.3
if [ -d "$spec/examples" ]; then
  measure "the spec's examples" "$spec"/examples/*.yaml
else
  echo "the spec's examples: skipped, no spec data (scripts/fetch-spec.sh fetches it)" >&2
fi
