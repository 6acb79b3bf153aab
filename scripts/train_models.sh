#!/usr/bin/env bash
# Reproduces the shipped model family (models/tok.gguf, llm, slm, slm-kd) from
# the TinyStories text, on CPU, one thread per run (see the model cards for
# the measured figures). Stages can be run one by one:
#   scripts/train_models.sh tok|llm|slm|slm-kd|export|all   [DUET_BIN]
# Runs write under runs/ (git-ignored): OUT.gguf (best valid loss), OUT.ckpt
# (resume with the same command plus --resume), OUT.loss.csv, OUT.loss.png.
set -euo pipefail
cd "$(dirname "$0")/.."
STAGE=${1:-all}
BIN=${2:-build/duet}
D=../shared/data/tinystories
mkdir -p runs/llm runs/slm runs/slm-kd models

tok() {
  "$BIN" tokenizer-train -f $D/train.txt --vocab 2048 -o runs/tok.gguf
}
llm() {
  "$BIN" train -f $D/train.txt --valid $D/valid.txt --tok runs/tok.gguf -o runs/llm/llm.gguf --name duet-llm \
    --n-embd 256 --n-layer 6 --n-head 4 --n-ff 704 --ctx 256 --batch 8 --steps 1100 --warmup 60 \
    --lr 1.5e-3 --lr-min 1.5e-4 --wd 0.1 --clip 1.0 --seed 1 --eval-every 100 --eval-batches 12 \
    --patience 5 --ckpt-minutes 4 --time-limit 85 -t 1 --json
}
slm() {
  "$BIN" train -f $D/train.txt --valid $D/valid.txt --tok runs/tok.gguf -o runs/slm/slm.gguf --name duet-slm \
    --n-embd 128 --n-layer 4 --n-head 4 --n-ff 352 --ctx 256 --tied --batch 16 --steps 700 --warmup 40 \
    --lr 3e-3 --lr-min 3e-4 --wd 0.1 --clip 1.0 --seed 2 --eval-every 100 --eval-batches 12 \
    --patience 6 --ckpt-minutes 4 --time-limit 85 -t 1 --json
}
