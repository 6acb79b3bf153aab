#!/usr/bin/env bash
# bench/server: 1, 4 and 16 concurrent streaming clients against three servers on
# the shipped model models/llm.gguf, one server at a time on 127.0.0.1 (a free port),
# started and stopped here:
#   duet serve -m llm.gguf                         profile llm (plain decoding)
#   duet serve -m llm.gguf --draft slm-draft.gguf  profile duet-spec (speculative)
#   llama.cpp's llama-server -m llm.gguf           (../shared/ref-bin, --no-webui)
# Every server gets the same threads (-t), the same slots (duet --slots, llama-server
# -np; default: the largest client count, 16, so no client ever waits for a slot) and
# the same context per slot (512, the model's trained context: llama-server -c is
# slots x 512). For each client count the servers run one after another (interleaved).
# Each client loops over story prompts (first sentences of valid.txt's paragraphs),
# POST /v1/completions with stream, max_tokens 128, temperature 0, ignore_eos and
# stream_options.include_usage, reading the events to [DONE]; DURATION seconds per run.
# Measured per run: requests completed/failed, aggregate generated tok/s, p50/p99
# time to first token and per-token latency, server VmRSS before (after a warm-up
# request) and after the load. Details: bench/server/bench.py.
#
# usage: bench/server/run.sh [--duration 60] [--clients "1 4 16"] [--threads 2] [--slots N]
#                            [--servers "llm duet-spec llama"] [--max-requests 1000] [--json] [--out DIR]
# Writes DIR/results.json, DIR/table.md, DIR/server.png (gnuplot), DIR/logs/ (server
# logs) and DIR/outputs/ (generated texts); default DIR: build/bench-server.
# With --json, stdout is exactly the one JSON object of results.json.
# Goals: tok/s at 4 clients >= 2.5x one client; above llama-server at 4 and 16
# clients; p99 TTFT at 16 clients < 1 s (the table ends with them).
# A server that does not start (the reference llama-server is an AVX-512 build: on a CPU
# without AVX-512 it dies of SIGILL) is reported "not run" with the reason, the rest goes on,
# and the goals that need it read "not measured".
# Env: DUET (default build/duet), LLAMA_SERVER (default ../shared/ref-bin/llama.cpp/llama-server).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
duet=${DUET:-$here/build/duet}
llama=${LLAMA_SERVER:-$here/../shared/ref-bin/llama.cpp/llama-server}
model=$here/models/llm.gguf
draft=$here/models/slm-draft.gguf
valid=$here/../shared/data/tinystories/valid.txt
duration=60 clients="1 4 16" threads=2 slots=0 servers="llm duet-spec llama" max_requests=1000 json=0
out=$here/build/bench-server
usage() {
  echo "usage: $0 [--duration S] [--clients \"1 4 16\"] [--threads N] [--slots N] [--servers \"llm duet-spec llama\"] [--max-requests N] [--json] [--out DIR]" >&2
  exit 2
}
while [ $# -gt 0 ]; do
  case $1 in
    --duration) [ $# -ge 2 ] || usage; duration=$2; shift ;;
    --clients) [ $# -ge 2 ] || usage; clients=$2; shift ;;
    --threads|-t) [ $# -ge 2 ] || usage; threads=$2; shift ;;
    --slots) [ $# -ge 2 ] || usage; slots=$2; shift ;;
    --servers) [ $# -ge 2 ] || usage; servers=$2; shift ;;
    --max-requests) [ $# -ge 2 ] || usage; max_requests=$2; shift ;;
    --out) [ $# -ge 2 ] || usage; out=$2; shift ;;
    --json) json=1 ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) usage ;;
  esac
  shift
done
[ -x "$duet" ] || { echo "$0: $duet not built (cmake --build build --target duet-cli)" >&2; exit 1; }
for f in "$model" "$draft" "$valid"; do [ -f "$f" ] || { echo "$0: missing $f" >&2; exit 1; }; done
mkdir -p "$out"
out=$(cd "$out" && pwd)
python3 "$here/bench/server/bench.py" --duet "$duet" --llama-server "$llama" --model "$model" --draft "$draft" \
  --valid "$valid" --clients "$clients" --servers "$servers" --duration "$duration" --threads "$threads" \
  --slots "$slots" --max-requests "$max_requests" --out "$out"
python3 "$here/bench/server/report.py" "$out/results.json" "$out" > "$out/table.md"
if command -v gnuplot >/dev/null; then gnuplot "$out/server.gp"; else echo "$0: no gnuplot: no $out/server.png" >&2; fi
if [ $json = 1 ]; then cat "$out/results.json"; else cat "$out/table.md"; echo "plot: $out/server.png"; fi
