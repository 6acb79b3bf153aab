#!/usr/bin/env bash
# Trainer throughput: a short `duet train` run per shape (1 thread by
# default), reporting tokens/s and GFLOP/s (forward + backward, 3x the
# forward's matmul and attention FLOPs) against the machine's single-core
# AVX-512 peak. Needs a tokenizer GGUF (default runs/tok.gguf, or models/tok.gguf).
#   bench/train/run.sh [DUET_BIN] [THREADS] [STEPS]
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-build/duet}
THREADS=${2:-1}
STEPS=${3:-8}
PEAK=${PEAK:-148}   # GFLOP/s per core (2 FMA units x 16 floats x 2 x ~2.3 GHz)
TOK=${TOK:-models/tok.gguf}
[ -e "$TOK" ] || TOK=runs/tok.gguf
DATA=../shared/data/tinystories/valid.txt
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
printf '| shape | params | batch | threads | tokens/s | GFLOP/s | %% of peak |\n|---|---|---|---|---|---|---|\n'
while read -r name embd layer head ff batch tied; do
  j=$("$BIN" train -f $DATA --tok "$TOK" -o "$OUT/$name.gguf" --n-embd $embd --n-layer $layer --n-head $head \
      --n-ff $ff --ctx 256 --batch $batch $tied --steps $STEPS --warmup 2 --eval-every 0 -t $THREADS --json 2>/dev/null)
  echo "$j" | jq -r --arg n "$name" --arg b "${batch}x256" --arg t "$THREADS" --argjson peak "$PEAK" \
    '"| \($n) | \(.params) | \($b) | \($t) | \(.tokens_per_s|round) | \(.gflops*10|round/10) | \(.gflops/($peak*($t|tonumber))*1000|round/10) |"'
done <<'SHAPES'
llm 256 6 4 704 8 
slm 128 4 4 352 16 --tied
llm-320 320 6 5 864 8 
SHAPES
