#!/usr/bin/env bash
# What runs on the GPU machine (repo root as cwd): train the pair, then hand the
# results back through $OUT (files of at most 16 MB: the llm comes in parts;
# reassemble with `cat llm.gguf.part* > llm.gguf`).
#   .gpu-data/{train,valid}.u16 come from:
#   duet tokenize -m models/tok.gguf --stories ../shared/data/tinystories/train.txt -o .gpu-data/train.u16
#   duet tokenize -m models/tok.gguf --stories ../shared/data/tinystories/valid.txt -o .gpu-data/valid.u16
set -o pipefail
out=${OUT:-out/gpu}
mkdir -p "$out" /tmp/pair
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
PYTHONUNBUFFERED=1 python3 scripts/gpu/train_pair.py --train .gpu-data/train.u16 --valid .gpu-data/valid.u16 \
  --out /tmp/pair --budget "${BUDGET:-420}" "$@" 2>&1 | tee "$out/log.txt"
rc=$?
[ -f /tmp/pair/llm.gguf ] && split -b 15000000 -d /tmp/pair/llm.gguf "$out/llm.gguf.part"
for f in slm-draft.gguf metrics.json llm.logits64.f32 slm.logits64.f32; do
  [ -f /tmp/pair/$f ] && cp /tmp/pair/$f "$out/"
done
ls -la "$out"
exit $rc
