#!/usr/bin/env bash
# Reproduces the shipped model family (models/tok.gguf, llm, slm, slm-kd) from
# the TinyStories text, on CPU, one thread per run. These are the exact
# commands behind the model cards (models/*.md); seeds make every stage
# deterministic (the llm ran in three segments: its schedule was lengthened
# twice while it trained; --stop-at reproduces the cut points).
#   scripts/train_models.sh tok|llm|slm|distill|export|all   [DUET_BIN]
# Runs write under runs/ (git-ignored): OUT.gguf (best valid loss), OUT.ckpt
# (resume: the same command plus --resume), OUT.loss.csv, OUT.loss.png.
set -euo pipefail
cd "$(dirname "$0")/.."
STAGE=${1:-all}
BIN=${2:-build/duet}
D=../shared/data/tinystories
mkdir -p runs/llm runs/slm runs/distill models

tok() {
  "$BIN" tokenizer-train -f $D/train.txt --vocab 2048 -o runs/tok.gguf
}
llm() {
  local a=(-f $D/train.txt --valid $D/valid.txt --tok runs/tok.gguf -o runs/llm/llm.gguf --name duet-llm
           --n-embd 256 --n-layer 6 --n-head 4 --n-ff 704 --ctx 256 --batch 8 --warmup 60
           --lr 1.5e-3 --lr-min 1.5e-4 --wd 0.1 --clip 1.0 --seed 1 --eval-every 100 --eval-batches 12
           --patience 5 --ckpt-minutes 4 -t 1 --json)
  "$BIN" train "${a[@]}" --steps 1100 --stop-at 599
  "$BIN" train "${a[@]}" --steps 1550 --stop-at 944 --resume
  "$BIN" train "${a[@]}" --steps 2000 --resume
  cp runs/llm/llm.gguf runs/llm/llm-2000.gguf   # the distillation teacher
  "$BIN" train "${a[@]}" --steps 2600 --resume
}
slm() {
  "$BIN" train -f $D/train.txt --valid $D/valid.txt --tok runs/tok.gguf -o runs/slm/slm.gguf --name duet-slm \
    --n-embd 128 --n-layer 4 --n-head 4 --n-ff 352 --ctx 256 --tied --batch 16 --steps 700 --warmup 40 \
    --lr 3e-3 --lr-min 3e-4 --wd 0.1 --clip 1.0 --seed 2 --eval-every 100 --eval-batches 12 \
    --patience 6 --ckpt-minutes 4 -t 1 --json
}
distill() {
  # every loss (and the controls) from the trained slm and llm (at step 2000); slm-kd is jsd:0.5
  TEACHER=runs/llm/llm-2000.gguf scripts/train_distill_sweep.sh "$BIN" 3
}
export_models() {
  cp runs/tok.gguf models/tok.gguf
  "$BIN" quantize -i runs/llm/llm.gguf -o models/llm.gguf --type F16 -t 1
  "$BIN" quantize -i runs/slm/slm.gguf -o models/slm.gguf --type F16 -t 1
  mkdir -p runs/distill16
  for f in runs/distill/*.gguf; do "$BIN" quantize -i "$f" -o runs/distill16/$(basename "$f") --type F16 -t 1; done
  cp runs/distill16/${SLM_KD:-jsd}.gguf models/slm-kd.gguf
}
case $STAGE in
  tok) tok ;; llm) llm ;; slm) slm ;; distill) distill ;; export) export_models ;;
  all) tok; llm; slm; distill; export_models ;;
  *) echo "usage: $0 tok|llm|slm|distill|export|all [DUET_BIN]" >&2; exit 2 ;;
esac
