#!/usr/bin/env bash
# Peak memory of `hprune quantise` (and of a GGUF export of the same folder's import) on a real-shape checkpoint
# written by Tests/Benchmarks/streaming/generate.py. Samples /proc/PID/status every 0.2 s: VmHWM (peak RSS, which counts
# the touched pages of the mmapped input) and the peak of RssAnon (memory beyond the mapped input: what the
# issue's ≤ 2 GB bound is about).
#
#   Tests/Benchmarks/streaming/run.sh /tmp/sd35l [.build/release/hprune]
set -euo pipefail
MODEL=${1:?usage: run.sh MODEL_DIR [HPRUNE]}
HPRUNE=${2:-.build/release/hprune}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

measure() {   # measure LABEL CMD...
    local label=$1; shift
    local start=$(date +%s.%N)
    "$@" > "$OUT/log" 2>&1 &
    local pid=$! anon=0 hwm=0
    while kill -0 $pid 2>/dev/null; do
        if [[ -r /proc/$pid/status ]]; then
            local a=$(awk '/^RssAnon:/ {print $2}' /proc/$pid/status 2>/dev/null || echo 0)
            local h=$(awk '/^VmHWM:/ {print $2}' /proc/$pid/status 2>/dev/null || echo 0)
            (( ${a:-0} > anon )) && anon=${a:-0}
            (( ${h:-0} > hwm )) && hwm=${h:-0}
        fi
        sleep 0.2
    done
    wait $pid || { cat "$OUT/log"; exit 1; }
    local end=$(date +%s.%N)
    printf '%-28s peak RssAnon %6.2f GB   peak RSS (VmHWM) %6.2f GB   %6.1f s\n' "$label" \
        "$(echo "$anon / 1048576" | bc -l)" "$(echo "$hwm / 1048576" | bc -l)" "$(echo "$end - $start" | bc -l)"
}

echo "model: $MODEL ($(du -sh "$MODEL" | cut -f1)), $(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2}'), load: $(uptime | sed 's/.*load average: //')"
measure "quantise nf4" "$HPRUNE" quantise "$MODEL" --format nf4 --out "$OUT/nf4"
rm -rf "$OUT/nf4"
measure "import (store)" "$HPRUNE" import "$MODEL" --store "$OUT/store"
cat > "$OUT/r.yaml" <<YAML
recipe: 1
name: streaming
models: { m: { path: $MODEL } }
stages:
  prune: { kind: prune, model: m, remove: "1" }
YAML
measure "prune (run)" "$HPRUNE" run "$OUT/r.yaml" --store "$OUT/store"
measure "export diffusers" "$HPRUNE" export latest:prune --out "$OUT/exp" --store "$OUT/store"
rm -rf "$OUT/exp"
measure "export gguf q8_0" "$HPRUNE" export latest:prune --format gguf --quant q8_0 --out "$OUT/m.gguf" --store "$OUT/store"
