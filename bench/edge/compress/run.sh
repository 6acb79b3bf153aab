#!/usr/bin/env bash
# bench/edge/compress: prompt compression ratio against the LLM's perplexity of
# the reference continuation (issue 14). Pairs of (first 160 tokens of a story,
# its next 64 tokens) from held-out TinyStories (valid.txt: no model saw it in
# training); each prompt shortened to keep ratios 1.0 .. 0.3 by duet compress
# (the SLM's surprisal), by random dropping (same count, the same first and
# last tokens kept, median of 5 seeds) and by truncating the front; models/llm.gguf
# scores the continuation after each. See bench/bench_compress.c.
#
# usage: bench/edge/compress/run.sh [--slm models/slm-draft.gguf] [--llm models/llm.gguf] [--pairs 40]
#                                   [--seeds 5] [--keep-tail 8] [--segment N] [--pair-offset K] [-t THREADS]
#                                   [--out DIR] [--png PATH] [--json]
# --pair-offset K picks other stories (K < 6 with 40 pairs: disjoint sets; see bench_compress).
# Writes DIR/results.json, DIR/table.md and the plot (default DIR: build/bench-compress, PATH: docs/img/compress.png).
# BIN=path/to/bench_compress picks another build.
set -euo pipefail
here=$(cd "$(dirname "$0")/../../.." && pwd)
bin=${BIN:-$here/build/bench/bench_compress}
slm=$here/models/slm-draft.gguf llm=$here/models/llm.gguf
png=$here/docs/img/compress.png pairs=40 seeds=5 tail=8 segment=0 offset=0 threads=1 json=0 out=$here/build/bench-compress
while [ $# -gt 0 ]; do
  case $1 in
    --slm) slm=$2; shift ;;
    --llm) llm=$2; shift ;;
    --pairs) pairs=$2; shift ;;
    --seeds) seeds=$2; shift ;;
    --keep-tail) tail=$2; shift ;;
    --segment) segment=$2; shift ;;
    --pair-offset) offset=$2; shift ;;
    -t) threads=$2; shift ;;
    --out) out=$2; shift ;;
    --png) png=$2; shift ;;
    --json) json=1 ;;
    *) echo "usage: $0 [--slm M] [--llm M] [--pairs N] [--seeds N] [--keep-tail N] [--segment N] [--pair-offset K] [-t N] [--out DIR] [--png PATH] [--json]" >&2; exit 2 ;;
  esac
  shift
done
[ -x "$bin" ] || { echo "$0: $bin not built (cmake --build build --target bench_compress)" >&2; exit 1; }
mkdir -p "$out" "$(dirname "$png")"
"$bin" --slm "$slm" --llm "$llm" --text "$here/../shared/data/tinystories/valid.txt" --pairs "$pairs" \
  --seeds "$seeds" --keep-tail "$tail" --segment "$segment" --pair-offset "$offset" --ratios 1,0.9,0.8,0.7,0.6,0.5,0.4,0.3 -t "$threads" --json > "$out/results.json"
python3 "$here/bench/edge/compress/report.py" "$out/results.json" "$out" "$png" > "$out/table.md"
if command -v gnuplot >/dev/null; then gnuplot "$out/compress.gp"; fi
if [ $json = 1 ]; then cat "$out/results.json"; else cat "$out/table.md"; echo; echo "plot: $png"; fi
