#!/usr/bin/env bash
# bench/routing: routing, cascades and token deferral between the shipped
# models on the cloze test split (bench/data/cloze-test.jsonl; items and the
# scoring rule: bench/routing/README.md). Results: docs/routing.md.
#
#  1. one run of each model alone with --dump: models/slm.gguf (SLM),
#     models/slm-draft.gguf (mid), models/llm.gguf (LLM). The dumps hold each
#     item's correctness, the SLM's routing signals and each answer's mean/min
#     token log-probability: every routing and cascade curve over all
#     thresholds is drawn from them offline (report.py);
#  2. duet route-fit on the calibration stories (every admissible target of
#     them, build_cloze.py --dense): the logistic routers (label: the SLM wrong
#     and the LLM right), calibrated there to an LLM share of 0.5; the same on
#     the 618-item calibration split alone; and, as an optimistic estimate of
#     what any logistic router on these signals can do, fitted on the test split;
#  3. measured operating points on the test split, each a real duet eval run
#     through the strategy (they check the offline curves and give seconds):
#     the logistic router, each signal's threshold router calibrated on the
#     calibration split, random routing, 2- and 3-tier cascades, deferral at
#     several etas;
#  4. report.py: accuracy against LLM share (and seconds), APGR, CPT(50/80/95),
#     random routing as the baseline, the oracle as the bound; the plot (gnuplot).
#
# usage: bench/routing/run.sh [-t THREADS] [--out DIR] [--limit N] [--reuse] [--etas "0.2 0.4 0.6 0.8"]
#   --limit N  only the first N items of each split, 6N of the dense calibration set (a quick look; noisy)
#   --reuse    keep the results already in DIR (rerun only what is missing)
# Writes DIR/*.json, DIR/*.jsonl, DIR/results.md, DIR/results.json, DIR/routing.png
# (default DIR: build/bench-routing).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
duet=${DUET:-$here/build/duet}
slm=$here/models/slm.gguf mid=$here/models/slm-draft.gguf llm=$here/models/llm.gguf
test_items=$here/bench/data/cloze-test.jsonl calib_items=$here/bench/data/cloze-calib.jsonl
threads=$(nproc) out=$here/build/bench-routing limit=0 reuse=0 etas="0.2 0.4 0.6 0.8"
while [ $# -gt 0 ]; do
  case $1 in
    -t) threads=$2; shift ;;
    --out) out=$2; shift ;;
    --limit) limit=$2; shift ;;
    --reuse) reuse=1 ;;
    --etas) etas=$2; shift ;;
    *) echo "usage: $0 [-t N] [--out DIR] [--limit N] [--reuse] [--etas \"0.2 0.4\"]" >&2; exit 2 ;;
  esac
  shift
done
[ -x "$duet" ] || { echo "$0: build duet first (cmake --build build --target duet-cli)" >&2; exit 1; }
mkdir -p "$out"
test_f=$test_items calib_f=$calib_items
if [ "$limit" -gt 0 ]; then
  head -n "$limit" "$test_items" > "$out/test-items.jsonl"; test_f=$out/test-items.jsonl
  head -n "$limit" "$calib_items" > "$out/calib-items.jsonl"; calib_f=$out/calib-items.jsonl
fi
common=(-t "$threads" --json)

# step NAME ARGS...: duet ARGS > DIR/NAME.json, unless --reuse and it exists
step() {
  local name=$1; shift
  if [ $reuse = 1 ] && [ -s "$out/$name.json" ]; then echo "[reuse] $name" >&2; return; fi
  echo "[run] $name: duet $*" >&2
  "$duet" "$@" > "$out/$name.json.tmp"
  mv "$out/$name.json.tmp" "$out/$name.json"
}

# 1. each model alone, with the per-item dumps
step slm eval --strategy slm --slm "$slm" -f "$test_f" --dump "$out/slm.jsonl" "${common[@]}"
step mid eval --strategy slm --slm "$mid" -f "$test_f" --dump "$out/mid.jsonl" "${common[@]}"
step llm eval --strategy llm -m "$llm" --slm "$slm" -f "$test_f" --dump "$out/llm.jsonl" "${common[@]}"

# 2. the routers, fitted and calibrated on the calibration stories only: every
#    admissible target of them (build_cloze.py --dense: ~5400 items, the 618 of the
#    calibration split among them), the routers' labelled training set; the same
#    fitted on the 618 items alone shows what the extra items buy. The labelled
#    dumps let every other router be fitted without running a model.
dense=$out/calib-dense.jsonl
if [ $reuse = 0 ] || [ ! -s "$dense" ]; then
  python3 "$here/bench/routing/build_cloze.py" --dense "$dense.all" > /dev/null
  if [ "$limit" -gt 0 ]; then head -n "$((limit * 6))" "$dense.all" > "$dense"; rm "$dense.all"; else mv "$dense.all" "$dense"; fi
fi
step fit-logistic route-fit --slm "$slm" -m "$llm" -f "$dense" -o "$out/router-logistic.txt" \
  --kind logistic --llm-share 0.5 --dump "$out/calib-labelled.jsonl" "${common[@]}"
step fit-logistic-hidden route-fit -f "$out/calib-labelled.jsonl" -o "$out/router-logistic-hidden.txt" \
  --kind logistic --hidden --llm-share 0.5 "${common[@]}"
for sig in mean_entropy max_entropy prompt_nll neg_top1 neg_margin copy_miss top1_novel content_miss content_alt; do
  step "fit-$sig" route-fit -f "$out/calib-labelled.jsonl" -o "$out/router-$sig.txt" --kind threshold \
    --signal "$sig" --llm-share 0.5 "${common[@]}"
done
step fit-logistic-618 route-fit --slm "$slm" -m "$llm" -f "$calib_f" -o "$out/router-logistic-618.txt" \
  --kind logistic --llm-share 0.5 --dump "$out/calib-labelled-618.jsonl" "${common[@]}"
step fit-logistic-hidden-618 route-fit -f "$out/calib-labelled-618.jsonl" -o "$out/router-logistic-hidden-618.txt" \
  --kind logistic --hidden --llm-share 0.5 "${common[@]}"
# the same logistic routers fitted on the test split's own labels: evaluated there, an
# optimistic estimate of the best any logistic router on these features can do (not a result)
python3 "$here/bench/routing/report.py" --labelled "$out" "$test_f"
step fit-insample route-fit -f "$out/test-labelled.jsonl" -o "$out/router-insample.txt" --kind logistic \
  --llm-share 0.5 "${common[@]}"
step fit-insample-hidden route-fit -f "$out/test-labelled.jsonl" -o "$out/router-insample-hidden.txt" \
  --kind logistic --hidden --llm-share 0.5 "${common[@]}"

# 3. measured operating points on the test split
step route-logistic eval --strategy route -m "$llm" --slm "$slm" -f "$test_f" --router "$out/router-logistic.txt" \
  --dump "$out/route-logistic.jsonl" "${common[@]}"
step route-logistic-hidden eval --strategy route -m "$llm" --slm "$slm" -f "$test_f" \
  --router "$out/router-logistic-hidden.txt" "${common[@]}"
best=$(python3 "$here/bench/routing/report.py" --best-signal "$out/calib-labelled.jsonl")
step route-best eval --strategy route -m "$llm" --slm "$slm" -f "$test_f" --router "$out/router-$best.txt" "${common[@]}"
step route-random eval --strategy route -m "$llm" --slm "$slm" -f "$test_f" --signal random --llm-share 0.5 "${common[@]}"
# the cascades' threshold: the one that sends half of the calibration stories' items to the
# LLM, from the SLM's and the mid's answers there (calibration stories only)
step calib-slm eval --strategy slm --slm "$slm" -f "$dense" --dump "$out/calib-slm.jsonl" "${common[@]}"
step calib-mid eval --strategy slm --slm "$mid" -f "$dense" --dump "$out/calib-mid.jsonl" "${common[@]}"
thr2=$(python3 "$here/bench/routing/report.py" --cascade-threshold "$out" 0.5)
thr3=$(python3 "$here/bench/routing/report.py" --cascade-threshold "$out" 0.5 --tiers 3)
step cascade2 eval --strategy cascade -m "$llm" --slm "$slm" -f "$test_f" --threshold "$thr2" \
  --dump "$out/cascade2.jsonl" "${common[@]}"
step cascade3 eval --strategy cascade -m "$llm" --slm "$slm" --mid "$mid" -f "$test_f" --threshold "$thr3" \
  --dump "$out/cascade3.jsonl" "${common[@]}"
for eta in $etas; do
  step "defer-$eta" eval --strategy defer -m "$llm" --slm "$slm" -f "$test_f" --eta "$eta" "${common[@]}"
done

# 4. the report and the plot
python3 "$here/bench/routing/report.py" "$out" > "$out/results.md"
if command -v gnuplot >/dev/null && [ -f "$out/routing.gp" ]; then gnuplot "$out/routing.gp"; fi
cat "$out/results.md"
echo
echo "plot: $out/routing.png"
