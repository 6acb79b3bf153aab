#!/usr/bin/env bash
# bench/edge: the edge-cloud grid (docs/edge-cloud.md, "Measured: bench/edge").
# duet serve holds models/llm.gguf with every forward pass made to last at
# least 5, 20 or 50 ms (--forward-delay-ms: a large model on a busy server);
# bench/edge/delay_proxy.py adds a 0, 20 or 80 ms round trip on loopback (no
# change to the machine's network settings); duet generate on the "device"
# answers with the SLM alone, the remote LLM's own stream, remote speculative
# decoding (--policy spec), the round-trip-aware policy (--policy auto), and a
# cascade (SLM first, the remote's stream when unsure). Tokens/s, time to
# first token, the server's forward passes per generated token, the policy's
# predicted speedup beside the measured one, and whether the outputs agree.
#
# usage: bench/edge/run.sh [--prompts 3] [-n 48] [--repeats 2] [--rtts 0,20,80] [--delays 5,20,50] [--budget-s 480]
#                          [--json] [--out DIR]
# BIN=path/to/duet (default build/duet). Writes DIR/results.json, DIR/summary.json,
# DIR/table.md and DIR/edge.png (default DIR: build/bench-edge).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
bin=${BIN:-$here/build/duet}
out=$here/build/bench-edge json=0 extra=()
while [ $# -gt 0 ]; do
  case $1 in
    --prompts|-n|--rtts|--delays|--budget-s|--threshold|--repeats) extra+=("$1" "$2"); shift ;;
    --out) out=$2; shift ;;
    --json) json=1 ;;
    *) echo "usage: $0 [--prompts N] [-n N] [--repeats R] [--rtts 0,20,80] [--delays 5,20,50] [--budget-s S] [--threshold T] [--out DIR] [--json]" >&2; exit 2 ;;
  esac
  shift
done
[ -x "$bin" ] || { echo "bench/edge: no duet binary at $bin (set BIN=)" >&2; exit 1; }
mkdir -p "$out"
timeout 900 python3 "$here/bench/edge/bench.py" --duet "$bin" "${extra[@]}" > "$out/results.json"
python3 "$here/bench/edge/report.py" "$out/results.json" "$out" > "$out/table.md"
if command -v gnuplot >/dev/null; then gnuplot "$out/edge.gp"; fi
if [ $json = 1 ]; then python3 "$here/bench/edge/report.py" "$out/results.json" "$out" --json
else cat "$out/table.md"; echo; echo "plot: $out/edge.png"; fi
