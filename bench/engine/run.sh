#!/usr/bin/env bash
# bench/engine: duet against llama.cpp, side by side, on the same files and
# threads. A `duet synth` llama of 134M parameters (n_vocab 32000, n_embd 768,
# 12 layers, 12 heads, n_ff 2048) in F32, F16, Q8_0, Q4_0, Q4_K_M, Q5_K_M and
# Q6_K; for each type and thread count, `duet bench` and llama.cpp's
# `llama-bench` run one after the other (interleaved, so both see the same
# machine), prefill 512 and decode 128, medians of RUNS runs; the ratio is
# duet / llama.cpp. Also the peak resident memory of each against the file
# size for a short generation (16 prompt tokens, 16 decoded; the prefill-512
# run's own peak adds that prompt's KV cache and activations), and duet's
# decode under a competing load (2 busy processes).
#
# llama.cpp's reference build (../shared/ref-bin/llama.cpp, or $LLAMA_BENCH)
# is only a measuring instrument. Where it is absent, or cannot run on this CPU
# (it is built for AVX-512: an AVX2-only machine kills it with SIGILL), the
# script says so and prints duet's own figures without ratios.
#
# usage: bench/engine/run.sh [--json] [--types "F32 Q4_0"] [--threads "1 2"] [--runs N] [--no-load]
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
duet=${DUET:-$here/build/duet}
cache=${CACHE:-$here/build/bench-models}
llama_bench=${LLAMA_BENCH:-$here/../shared/ref-bin/llama.cpp/llama-bench}
types="F32 F16 Q8_0 Q4_0 Q4_K_M Q5_K_M Q6_K"
threads_list="1 2"
runs=5 json=0 load=1
while [ $# -gt 0 ]; do
  case $1 in
    --json) json=1 ;;
    --types) types=$2; shift ;;
    --threads) threads_list=$2; shift ;;
    --runs) runs=$2; shift ;;
    --no-load) load=0 ;;
    *) echo "usage: $0 [--json] [--types \"F32 Q4_0\"] [--threads \"1 2\"] [--runs N] [--no-load]" >&2; exit 2 ;;
  esac
  shift
done
log() { echo "bench/engine: $*" >&2; }

mkdir -p "$cache"
base=$cache/llama134m-F32.gguf
if [ ! -f "$base" ]; then
  log "synthesising $base ..."
  "$duet" synth --arch llama --n-embd 768 --n-layer 12 --n-head 12 --n-head-kv 12 --n-ff 2048 \
    --n-vocab 32000 --ctx 2048 --type F32 --seed 1 -o "$base" >&2
fi
for t in $types; do
  f=$cache/llama134m-$t.gguf
  if [ ! -f "$f" ]; then
    log "quantizing $f"
    "$duet" quantize -i "$base" -o "$f" --type "$t" >/dev/null 2>&1
  fi
done

# Peak RSS (bytes) of a command, from the kernel's accounting of the child.
peak_rss() {
  python3 - "$@" <<'PY'
import resource, subprocess, sys
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
PY
}

# Can the reference run here? A tiny bench on the smallest file answers.
llama_ok=0 llama_why=""
if [ ! -x "$llama_bench" ]; then
  llama_why="llama.cpp's llama-bench not found at $llama_bench"
else
  small=$cache/llama134m-Q4_0.gguf
  [ -f "$small" ] || small=$base
  set +e
  "$llama_bench" -m "$small" -t 1 -p 8 -n 8 -r 1 -o json >/dev/null 2>&1
  rc=$?
  set -e
  if [ $rc -eq 0 ]; then llama_ok=1
  elif [ $rc -eq 132 ]; then
    llama_why="llama.cpp's reference build cannot run on this CPU: it dies with SIGILL (illegal instruction; it was compiled for AVX-512, this CPU has $(grep -q avx512f /proc/cpuinfo && echo AVX-512 || echo 'AVX2 only'))"
  else
    llama_why="llama.cpp's llama-bench failed (exit $rc) on $small"
  fi
fi
[ $llama_ok = 1 ] || log "$llama_why; duet's figures only, no ratios"

# llama-bench's JSON (a list with one entry per test) -> "prefill decode" tok/s.
llama_figures() {
  python3 -c '
import json, sys
rows = json.load(sys.stdin)
pp = next(r["avg_ts"] for r in rows if r["n_prompt"] > 0 and r["n_gen"] == 0)
tg = next(r["avg_ts"] for r in rows if r["n_gen"] > 0 and r["n_prompt"] == 0)
print(json.dumps({"prefill_tok_s": pp, "decode_tok_s": tg}))'
}

results=()
for t in $types; do
  f=$cache/llama134m-$t.gguf
  for th in $threads_list; do
    log "$t, $th thread(s): duet"
    dj=$("$duet" bench -m "$f" -t "$th" -r "$runs" --json 2>/dev/null)
    # duet's own reading, taken before its bandwidth probe allocates a buffer of the model's size
    drss=$("$duet" bench -m "$f" -t "$th" -p 16 -n 16 -r 1 --json 2>/dev/null |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["peak_rss_bytes"])')
    lj=null lrss=null
    if [ $llama_ok = 1 ]; then
      log "$t, $th thread(s): llama.cpp"
      lj=$("$llama_bench" -m "$f" -t "$th" -p 512 -n 128 -r "$runs" -o json 2>/dev/null | llama_figures)
      lrss=$(peak_rss "$llama_bench" -m "$f" -t "$th" -p 16 -n 16 -r 1)
    fi
    fb=$(stat -c %s "$f")
    results+=("{\"type\":\"$t\",\"threads\":$th,\"file_bytes\":$fb,\"duet\":$dj,\"duet_short_peak_rss_bytes\":$drss,\"llama\":$lj,\"llama_short_peak_rss_bytes\":$lrss}")
  done
done

loaded=null
if [ $load = 1 ]; then # two busy processes, one per core, while duet decodes
  load_type=Q4_0
  case " $types " in *" Q4_0 "*) ;; *) load_type=${types%% *} ;; esac
  busy() { while :; do :; done; }
  busy & b1=$!
  busy & b2=$!
  trap 'kill $b1 $b2 2>/dev/null || true' EXIT
  lj=$("$duet" bench -m "$cache/llama134m-$load_type.gguf" -t 2 -r "$runs" -p 64 --json 2>/dev/null)
  kill $b1 $b2 2>/dev/null || true
  trap - EXIT
  loaded="{\"type\":\"$load_type\",\"threads\":2,\"duet\":$lj}"
fi

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
simd=$(grep -q avx512f /proc/cpuinfo && echo AVX-512 || echo AVX2)
all=$( (IFS=,; echo "{\"runs\":$runs,\"cpu\":\"$cpu\",\"simd\":\"$simd\",\"llama_available\":$([ $llama_ok = 1 ] && echo true || echo false),\"llama_note\":\"${llama_why//\"/\'}\",\"results\":[${results[*]}],\"under_load\":$loaded}") )
if [ $json = 1 ]; then
  echo "$all"
  exit 0
fi
python3 - "$all" <<'PY'
import json, sys
a = json.loads(sys.argv[1])
print(f"{a['cpu']} ({a['simd']}), medians of {a['runs']} runs\n")
print("| type | threads | file MB | prefill 512 tok/s | decode 128 tok/s | decode % of roofline | "
      "peak RSS / file, short run | same, prefill-512 run | prefill x llama.cpp | decode x llama.cpp | "
      "llama.cpp peak RSS / file, short run |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for r in a["results"]:
    d, l = r["duet"], r["llama"]
    f = r["file_bytes"]
    cells = [r["type"], str(r["threads"]), f"{f / 1e6:.0f}", f"{d['prefill_tok_s']:.0f}", f"{d['decode_tok_s']:.1f}",
             f"{d['decode_pct_roofline']:.0f}%", f"{r['duet_short_peak_rss_bytes'] / f:.2f}x", f"{d['rss_over_file']:.2f}x"]
    if l:
        cells += [f"{d['prefill_tok_s'] / l['prefill_tok_s']:.2f}", f"{d['decode_tok_s'] / l['decode_tok_s']:.2f}",
                  f"{r['llama_short_peak_rss_bytes'] / f:.2f}x"]
    else:
        cells += ["n/a", "n/a", "n/a"]
    print("| " + " | ".join(cells) + " |")
if not a["llama_available"]:
    print(f"\nNo ratios: {a['llama_note']}.")
if a["under_load"]:
    u = a["under_load"]
    print(f"\nUnder a competing load (2 busy processes on 2 cores): {u['type']} decode with 2 threads: "
          f"{u['duet']['decode_tok_s']:.1f} tok/s")
PY
