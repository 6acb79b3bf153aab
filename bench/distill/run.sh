#!/usr/bin/env bash
# Distillation table for docs/distillation.md: every model on valid.txt with
# the inference engine (duet perplexity, ctx 256, windows advancing by 128),
# compared position by position with the teacher (llm): validation loss,
# perplexity, top-1 agreement with llm and mean acceptance 1 - TV(p_llm, p).
#
# usage: bench/distill/run.sh [DUET_BIN] [MODEL.gguf ...]
#   default models: models/slm.gguf models/slm-kd.gguf runs/distill/*.gguf models/llm.gguf
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-build/duet}
shift || true
VALID=${VALID:-../shared/data/tinystories/valid.txt}
REF=${REF:-models/llm.gguf}
if [ $# -gt 0 ]; then MODELS=("$@"); else
  MODELS=(models/slm.gguf models/slm-kd.gguf)
  for f in runs/distill/*.gguf; do [ -e "$f" ] && MODELS+=("$f"); done
  MODELS+=("$REF")
fi
printf '| model | valid loss | perplexity | top-1 agreement with llm | acceptance 1-TV |\n'
printf '|---|---|---|---|---|\n'
for m in "${MODELS[@]}"; do
  j=$("$BIN" perplexity -m "$m" -f "$VALID" --ctx 256 --ref "$REF" --json)
  echo "$j" >&2
  echo "$j" | jq -r --arg m "$(basename "$m" .gguf)" \
    '"| \($m) | \(.loss*10000|round/10000) | \(.perplexity*100|round/100) | \(.top1_agreement*10000|round/10000) | \(.acceptance*10000|round/10000) |"'
done
