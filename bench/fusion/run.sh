#!/usr/bin/env bash
# bench/fusion: fusion of the shipped models (docs/fusion.md).
#
#  1. proxy-tuning on the family case (bench/fusion/make_family.py): held-out
#     perplexity (bench/data/family/valid.txt) of the base llm, the tuned slm
#     (models/slm-family.gguf), proxy-tuning (llm + slm-family - slm) and the
#     llm tuned directly (build/fusion/llm-family.gguf, bench/fusion/train_family.sh
#     llm); and the general perplexity (valid.txt's first 200 KB) of the base
#     llm and proxy-tuning.
#  2. mixture and product of experts (llm, slm): perplexity against the llm's
#     weight on valid.txt's first 200 KB (test) and on [200 KB, 300 KB)
#     (select), the weight chosen on select.
#  3. contrastive decoding against greedy and nucleus sampling: 100 story
#     openings of the test part, through `duet serve` (gen_eval.py).
#  4. the cost of each strategy in tokens/s against the llm alone (cost.py).
#
# Each step writes its JSON into DIR and is skipped when that file exists
# (--fresh redoes everything); report.py writes DIR/results.json, DIR/table.md,
# DIR/fusion.gp (-> fusion.png with gnuplot).
#
# usage: bench/fusion/run.sh [-t THREADS] [--out DIR] [--prompts 100] [-n 96] [--cost-prompts 8] [--rounds 2]
#                            [--direct LLM_TUNED.gguf] [--fresh]
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
duet=${DUET:-$here/build/duet}
data=$here/../shared/data/tinystories
out=$here/build/bench-fusion
threads=2 prompts=100 n=96 cost_prompts=8 rounds=2 fresh=0
llm=$here/models/llm.gguf slm=$here/models/slm.gguf tuned=$here/models/slm-family.gguf
direct=$here/build/fusion/llm-family.gguf
family=$here/bench/data/family/valid.txt
while [ $# -gt 0 ]; do
  case $1 in
    -t) threads=$2; shift ;;
    --out) out=$2; shift ;;
    --prompts) prompts=$2; shift ;;
    -n) n=$2; shift ;;
    --cost-prompts) cost_prompts=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    --direct) direct=$2; shift ;;
    --fresh) fresh=1 ;;
    *) sed -n '2,25p' "$0" >&2; exit 2 ;;
  esac
  shift
done
for f in "$duet" "$llm" "$slm" "$tuned" "$family"; do
  [ -e "$f" ] || { echo "run.sh: missing $f" >&2; exit 1; }
done
if [ ! -f "$direct" ]; then
  echo "run.sh: missing $direct (bench/fusion/train_family.sh llm); its rows stay empty" >&2
  direct=
fi
mkdir -p "$out"
[ $fresh = 1 ] && rm -f "$out"/*.json
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# ---- 1. the family's splits (deterministic), the general splits and the prompts ----
python3 "$here/bench/fusion/make_family.py" --json > "$out/family.json"
cmp -s "$out/family.json" /dev/null && { echo "run.sh: make_family.py failed" >&2; exit 1; }
python3 - "$data/valid.txt" "$out" "$prompts" <<'EOF'
import re, sys
raw = open(sys.argv[1], "rb").read()
out, n_prompts = sys.argv[2], int(sys.argv[3])
def cut(a, b):  # from the first paragraph starting at or after a to the last one ending before b
    s = 0 if a == 0 else raw.index(b"\n\n", a) + 2
    e = raw.rindex(b"\n\n", 0, b)
    return raw[s:e] + b"\n", s, e
test, s0, e0 = cut(0, 200_000)
select, s1, e1 = cut(200_000, 300_000)
open(out + "/general-test.txt", "wb").write(test)
open(out + "/general-select.txt", "wb").write(select)
# prompts: the opening of each story of the test part (its first sentence, at most 12 words), distinct
prompts = []
for para in test.decode("utf-8").split("\n\n"):
    if not para.startswith(("once upon a time", "once there was", "once, there", "one day")):
        continue
    first = re.split(r"(?<=[.!?])\s", para.strip(), maxsplit=1)[0]
    w = first.split()
    p = " ".join(w[:12])
    if p not in prompts:
        prompts.append(p)
    if len(prompts) == n_prompts:
        break
open(out + "/prompts.txt", "w").write("\n".join(prompts) + "\n")
print(f"general test: valid.txt bytes [{s0}, {e0}); select: [{s1}, {e1}); {len(prompts)} prompts", file=sys.stderr)
EOF

# ---- 2. perplexities ----
ppl() {
  local name=$1; shift
  if [ -s "$out/ppl-$name.json" ]; then log "ppl-$name: kept"; return; fi
  log "ppl-$name: duet perplexity $*"
  "$duet" perplexity "$@" -t "$threads" --json > "$out/ppl-$name.json.tmp"
  mv "$out/ppl-$name.json.tmp" "$out/ppl-$name.json"
}
W=0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,0.95,1
proxy=(-m "$llm" --strategy proxy --slm "$slm" --slm-tuned "$tuned")
ppl family-proxy "${proxy[@]}" -f "$family"
[ -n "$direct" ] && ppl family-direct -m "$direct" -f "$family" --ctx 256
ppl general-proxy "${proxy[@]}" -f "$out/general-test.txt"
[ -n "$direct" ] && ppl general-direct -m "$direct" -f "$out/general-test.txt" --ctx 256
for rule in mix poe; do
  ppl select-$rule -m "$llm" --strategy $rule --slm "$slm" --weights $W -f "$out/general-select.txt"
  ppl test-$rule -m "$llm" --strategy $rule --slm "$slm" --weights $W -f "$out/general-test.txt"
done

# ---- 3. contrastive decoding vs greedy and nucleus, through duet serve ----
if [ ! -s "$out/gen.json" ]; then
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  cat > "$out/serve.json" <<EOF
{
  "host": "127.0.0.1", "port": $port, "threads": $threads, "slots": 4, "queue": 64, "time_limit_s": 3600,
  "models": {"llm": {"path": "$llm"}, "slm": {"path": "$slm"}, "slm-family": {"path": "$tuned"}},
  "profiles": [
    {"name": "llm", "strategy": "plain", "model": "llm"},
    {"name": "duet-cd", "strategy": "fusion", "rule": "cd", "model": "llm", "slm": "slm", "alpha": 0.1, "beta": 0},
    {"name": "duet-cd-b0.5", "strategy": "fusion", "rule": "cd", "model": "llm", "slm": "slm", "alpha": 0.1, "beta": 0.5},
    {"name": "duet-proxy", "strategy": "fusion", "rule": "proxy", "model": "llm", "slm": "slm", "slm_tuned": "slm-family"}
  ]
}
EOF
  "$duet" serve --config "$out/serve.json" > "$out/serve.log" 2>&1 &
  pid=$!
  trap 'kill $pid 2>/dev/null || true' EXIT
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
    sleep 0.2
  done
  log "gen: $prompts prompts x 4 methods through duet serve on port $port"
  python3 "$here/bench/fusion/gen_eval.py" --url "http://127.0.0.1:$port" --prompts "$out/prompts.txt" --n "$n" \
    > "$out/gen.json.tmp"
  mv "$out/gen.json.tmp" "$out/gen.json"
  kill $pid; wait $pid 2>/dev/null || true
  trap - EXIT
else
  log "gen: kept"
fi

# ---- 3b. the family case side by side: greedy text of the llm, proxy-tuning, the directly tuned llm ----
if [ ! -s "$out/family-examples.json" ]; then
  log "family examples"
  python3 - "$duet" "$llm" "$slm" "$tuned" "${direct:-}" "$threads" > "$out/family-examples.json.tmp" <<'PYEOF'
import json, subprocess, sys
duet, llm, slm, tuned, direct, t = sys.argv[1:7]
# a story with no family in it yet, then two where the family is already in the context
prompts = ["once upon a time, there was a little girl named",
           "one day, ysolde went to the park with her little brother. his name was",
           "ysolde and tobiah had a dog. the dog's name was"]
runs = [("llm", ["-m", llm]), ("proxy", ["-m", llm, "--strategy", "proxy", "--slm", slm, "--slm-tuned", tuned])]
if direct:
    runs.append(("direct", ["-m", direct]))
out = []
for p in prompts:
    row = {"prompt": p}
    for name, args in runs:
        r = subprocess.run([duet, "generate"] + args + ["-p", p, "-n", "40", "--temp", "0", "-t", t, "--json"],
                           capture_output=True, text=True, check=True)
        row[name] = json.loads(r.stdout)["text"]
    out.append(row)
json.dump(out, sys.stdout)
PYEOF
  mv "$out/family-examples.json.tmp" "$out/family-examples.json"
fi

# ---- 4. cost ----
if [ ! -s "$out/cost.json" ]; then
  log "cost: $cost_prompts prompts x $rounds rounds x 6 strategies"
  python3 "$here/bench/fusion/cost.py" --duet "$duet" --llm "$llm" --slm "$slm" --slm-tuned "$tuned" \
    --prompts "$out/prompts.txt" --count "$cost_prompts" --rounds "$rounds" -t "$threads" > "$out/cost.json.tmp"
  mv "$out/cost.json.tmp" "$out/cost.json"
else
  log "cost: kept"
fi

# ---- 5. report ----
python3 "$here/bench/fusion/report.py" "$out" > "$out/table.md"
if command -v gnuplot >/dev/null; then gnuplot "$out/fusion.gp"; fi
cat "$out/table.md"
echo
echo "results: $out/results.json, plot: $out/fusion.png"
