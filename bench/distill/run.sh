#!/usr/bin/env bash
# Distillation table for docs/distillation.md: every model on the whole of
# valid.txt with the inference engine (duet perplexity: ctx 256, windows
# advancing by 128, every token scored once), compared position by position
# with the teacher (llm): validation loss, perplexity, top-1 agreement with llm
# and mean acceptance 1 - TV(p_llm, p_model). The teacher is evaluated once.
#
# usage: bench/distill/run.sh [DUET_BIN] [MODEL.gguf ...]
#   default models: models/slm.gguf, runs/distill16/*.gguf (F16 copies of the
#   distillation runs, scripts/train_models.sh export), models/slm-kd.gguf
#   env: VALID (text file), REF (teacher GGUF; default runs/llm/llm.gguf, the
#   CPU-trained llm that taught these runs (scripts/train_models.sh llm); without
#   it models/llm.gguf, the larger GPU-trained llm that replaced it in models/)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-build/duet}
shift || true
VALID=${VALID:-../shared/data/tinystories/valid.txt}
REF=${REF:-runs/llm/llm.gguf}
if [ ! -f "$REF" ]; then
  echo "bench/distill: $REF not found (scripts/train_models.sh llm makes it); comparing with models/llm.gguf" >&2
  REF=models/llm.gguf
fi
if [ $# -gt 0 ]; then MODELS=("$@"); else
  MODELS=(models/slm.gguf)
  for f in runs/distill16/*.gguf; do [ -e "$f" ] && MODELS+=("$f"); done
  MODELS+=(models/slm-kd.gguf)
fi
args=()
for m in "${MODELS[@]}"; do args+=(-m "$m"); done
j=$("$BIN" perplexity "${args[@]}" -f "$VALID" --ctx 256 --ref "$REF" --json)
echo "$j" >&2
printf '| model | valid loss | perplexity | top-1 agreement with llm | acceptance 1-TV(p_llm, p) |\n'
printf '|---|---|---|---|---|\n'
echo "$j" | jq -r '.models[] | "| \(.model | split("/") | last | sub("\\.gguf$"; "")) | \(.loss*10000|round/10000) | \(.perplexity*100|round/100) | \(.top1_agreement*10000|round/10000) | \(.acceptance*10000|round/10000) |"'
echo "$j" | jq -r '.ref | "| \(.model | split("/") | last | sub("\\.gguf$"; "")) (teacher) | \(.loss*10000|round/10000) | \(.perplexity*100|round/100) | 1 | 1 |"'
echo "$j" | jq -r '"\nscored tokens: \(.scored) of \(.tokens), \(.seconds) s"'
