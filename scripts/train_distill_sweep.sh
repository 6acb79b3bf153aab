#!/usr/bin/env bash
# The distillation runs behind docs/distillation.md: the trained slm is
# distilled from the trained llm with each loss (and two controls), same
# steps, batch, schedule and seed; outputs in runs/distill/<name>.gguf.
#   scripts/train_distill_sweep.sh [DUET_BIN] [JOBS]
# env: TEACHER (default runs/llm/llm.gguf), STUDENT (default runs/slm/slm.gguf),
#      STEPS (default 150), RUNS (names to run; default all)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-build/duet}
JOBS=${2:-3}
D=../shared/data/tinystories
TEACHER=${TEACHER:-runs/llm/llm.gguf}
STUDENT=${STUDENT:-runs/slm/slm.gguf}
STEPS=${STEPS:-150}
mkdir -p runs/distill
COMMON="-f $D/train.txt --valid $D/valid.txt --tok runs/tok.gguf --batch 8 --seq 256 --steps $STEPS --warmup 5
        --lr 3e-4 --lr-min 3e-5 --wd 0.1 --clip 1.0 --seed 3 --eval-every 50 --eval-batches 12 --ckpt-minutes 4 -t 1 --json"
run() {
  local name=$1; shift
  local out=runs/distill/$name.gguf
  if [ "$1" = ce ]; then shift
    "$BIN" train --init "$STUDENT" $COMMON -o "$out" --name "duet-slm-$name" "$@" > runs/distill/$name.json 2> runs/distill/$name.log
  else
    "$BIN" distill --teacher "$TEACHER" --student "$STUDENT" $COMMON -o "$out" --name "duet-slm-$name" "$@" \
      > runs/distill/$name.json 2> runs/distill/$name.log
  fi
}
export -f run
export BIN TEACHER STUDENT COMMON
ALL="kl rkl jsd tvd ce-only onpolicy-kl seq"
for name in ${RUNS:-$ALL}; do
  case $name in
    kl) echo "kl --loss kl" ;;
    rkl) echo "rkl --loss rkl" ;;
    jsd) echo "jsd --loss jsd:0.5" ;;
    tvd) echo "tvd --loss tvd" ;;
    kl-ce) echo "kl-ce --loss kl --ce-weight 0.5" ;;
    kl-t2) echo "kl-t2 --loss kl --temp 2" ;;
    ce-only) echo "ce-only ce" ;;
    onpolicy-kl) echo "onpolicy-kl --loss kl --mode onpolicy --onpolicy-frac 0.5 --prompt-len 16" ;;
    seq) echo "seq --mode seq --prompt-len 16" ;;
  esac
done | xargs -P "$JOBS" -I{} bash -c 'run {}'
for f in runs/distill/*.json; do echo "$f: $(cat "$f")"; done
