#!/usr/bin/env bash
# bench/engine: prefill (512) and decode (128) tokens/s of a ~134M-parameter
# llama (n_vocab 32000, n_embd 768, 12 layers, 12 heads, n_ff 2048) made by
# `duet synth`, in F32, F16, Q8_0, Q4_0 and Q4_K_M, at 1 and 2 threads, with
# decode as % of the bandwidth roofline; then 2-thread Q4_0 decode while a
# competing process keeps both cores busy. Medians of RUNS runs (duet bench).
#
# usage: bench/engine/run.sh [--json] [--types "F32 Q4_0"] [--runs N]
# The anchor is llama.cpp (July 2025 CPU build) measured on this machine type,
# 2 threads (from the issue); the ratio column is duet / anchor.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
duet=${DUET:-$here/build/duet}
cache=${CACHE:-$here/build/bench-models}
types="F32 F16 Q8_0 Q4_0 Q4_K_M"
runs=5
json=0
while [ $# -gt 0 ]; do
  case $1 in
    --json) json=1 ;;
    --types) types=$2; shift ;;
    --runs) runs=$2; shift ;;
    *) echo "usage: $0 [--json] [--types \"F32 Q4_0\"] [--runs N]" >&2; exit 2 ;;
  esac
  shift
done
declare -A anchor_pp=([F32]=843 [F16]=625 [Q8_0]=623 [Q4_0]=799 [Q4_K_M]=736)
declare -A anchor_tg=([F32]=57 [F16]=73 [Q8_0]=125 [Q4_0]=255 [Q4_K_M]=240)

mkdir -p "$cache"
base=$cache/llama134m-F32.gguf
if [ ! -f "$base" ]; then
  echo "synthesising $base ..." >&2
  "$duet" synth --arch llama --n-embd 768 --n-layer 12 --n-head 12 --n-head-kv 12 --n-ff 2048 \
    --n-vocab 32000 --ctx 2048 --type F32 --seed 1 -o "$base" >&2
fi
for t in $types; do
  f=$cache/llama134m-$t.gguf
  [ -f "$f" ] || "$duet" quantize -i "$base" -o "$f" --type "$t" >&2
done

results=()
row() { # type threads json
  python3 - "$@" <<'PY'
import json, sys
t, th, js, app, atg = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
print(f"| {t} | {th} | {js['prefill_tok_s']:.0f} | {js['decode_tok_s']:.1f} | {js['bandwidth_gb_s']:.1f} | "
      f"{js['decode_pct_roofline']:.0f}% | {js['prefill_tok_s']/app:.2f} | {js['decode_tok_s']/atg:.2f} |")
PY
}
table="| type | threads | prefill 512 tok/s | decode 128 tok/s | bandwidth GB/s | decode % of roofline | prefill / llama.cpp | decode / llama.cpp |
|---|---|---|---|---|---|---|---|"
for t in $types; do
  for th in 1 2; do
    js=$("$duet" bench -m "$cache/llama134m-$t.gguf" -t $th -r "$runs" --json)
    results+=("{\"type\":\"$t\",\"threads\":$th,\"bench\":$js}")
    table+=$'\n'$(row "$t" "$th" "$js" "${anchor_pp[$t]}" "${anchor_tg[$t]}")
  done
done

# Competing load: two busy processes (one per core) while duet decodes.
load_type=Q4_0
case " $types " in *" Q4_0 "*) ;; *) load_type=${types%% *} ;; esac
busy() { while :; do :; done; }
busy & b1=$!
busy & b2=$!
trap 'kill $b1 $b2 2>/dev/null || true' EXIT
js=$("$duet" bench -m "$cache/llama134m-$load_type.gguf" -t 2 -r "$runs" -p 64 --json)
kill $b1 $b2 2>/dev/null || true
trap - EXIT
results+=("{\"type\":\"$load_type\",\"threads\":2,\"background_load\":true,\"bench\":$js}")
loaded=$(python3 -c "import json,sys; j=json.loads(sys.argv[1]); print(f\"{j['decode_tok_s']:.1f}\")" "$js")

if [ $json = 1 ]; then
  (IFS=,; echo "{\"runs\":$runs,\"results\":[${results[*]}]}")
else
  echo "$table"
  echo
  echo "Under a competing load (2 busy processes on 2 cores): $load_type decode with 2 threads: $loaded tok/s"
fi
