#!/usr/bin/env bash
# bench/speculative: the shipped pair (models/llm.gguf verified, a draft model
# drafting): 50 story prompts from valid.txt plus a hostile set (random-token
# prompts, foreign-script/code text), 128 new tokens, temperature 0 and 0.8:
# tokens/s of llm alone vs each draft source, fixed draft lengths 1..8 and
# adaptive, with the speedup predicted from measured acceptance and cost ratio.
#
# Also: N = 1, 4, 8 concurrent speculative requests stepped together by one
# driver against the same requests one after another (aggregate tokens/s).
#
# usage: bench/speculative/run.sh [--draft models/slm-draft.gguf] [--target models/llm.gguf] [--prompts 50] [--hostile 20]
#                                 [-n 128] [-t THREADS] [--json] [--out DIR] [--cpu-clock (with -t 1)]
# Writes DIR/results.json, DIR/table.md and DIR/speedup.png (default DIR: build/bench-speculative).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
bin=${BIN:-$here/build/bench/bench_speculative}
data=$here/../shared/data
target=$here/models/llm.gguf
draft=$here/models/slm-draft.gguf
[ -f "$draft" ] || draft=$here/models/slm-kd.gguf
prompts=50 hostile=20 n=128 threads=1 json=0 out=$here/build/bench-speculative concurrent=1,4,8 groups=4 conc_only= cpu_clock=
while [ $# -gt 0 ]; do
  case $1 in
    --draft) draft=$2; shift ;;
    --target) target=$2; shift ;;
    --prompts) prompts=$2; shift ;;
    --hostile) hostile=$2; shift ;;
    -n) n=$2; shift ;;
    -t) threads=$2; shift ;;
    --out) out=$2; shift ;;
    --json) json=1 ;;
    --concurrent) concurrent=$2; shift ;;
    --groups) groups=$2; shift ;;
    --concurrent-only) conc_only=--concurrent-only ;;
    --cpu-clock) cpu_clock=--cpu-clock ;;
    *) echo "usage: $0 [--draft M] [--target M] [--prompts N] [--hostile N] [-n N] [-t N] [--out DIR] [--json] [--concurrent 1,4,8] [--groups 4] [--concurrent-only] [--cpu-clock]" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$out"
"$bin" --target "$target" --draft "$draft" --valid "$data/tinystories/valid.txt" \
  --foreign "$data/vocab/ggml-vocab-qwen2.fuzz.inp" --prompts "$prompts" --hostile "$hostile" -n "$n" -t "$threads" \
  --concurrent "$concurrent" --groups "$groups" $conc_only $cpu_clock > "$out/results.json"
python3 "$here/bench/speculative/report.py" "$out/results.json" "$out" > "$out/table.md"
if command -v gnuplot >/dev/null && [ -f "$out/speedup.gp" ]; then gnuplot "$out/speedup.gp"; fi
if [ $json = 1 ]; then cat "$out/results.json"; else cat "$out/table.md"; echo; echo "plot: $out/speedup.png"; fi
