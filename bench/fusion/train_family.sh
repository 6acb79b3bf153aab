#!/usr/bin/env bash
# bench/fusion/train_family.sh: the two fine-tunes of the family case
# (bench/fusion/make_family.py), both by `duet train --init` on CPU.
#
#   slm   models/slm.gguf fine-tuned on the family's stories: the shipped
#         models/slm-family.gguf (on-device personalisation, a few minutes)
#   llm   models/llm.gguf fine-tuned directly on the same data: the reference
#         that proxy-tuning (llm + slm-family - slm) approximates; not shipped
#         (build/fusion/llm-family.gguf), sized to finish within ~25 minutes
#
# Validation (best checkpoint, early stopping) is on the family dev split
# (unseen valid.txt stories, like the held-out ones), never on the held-out
# bench/data/family/valid.txt.
#
# usage: bench/fusion/train_family.sh slm|llm [-t THREADS]
# Writes build/fusion/{slm,llm}-family.gguf (+ .ckpt, .loss.csv, .loss.png, .log, .json).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
duet=${DUET:-$here/build/duet}
what=${1:-}; shift || true
threads=
while [ $# -gt 0 ]; do
  case $1 in
    -t) threads=$2; shift ;;
    *) echo "usage: $0 slm|llm [-t THREADS]" >&2; exit 2 ;;
  esac
  shift
done
out=$here/build/fusion
[ -f "$out/family-train.txt" ] && [ -f "$out/family-dev.txt" ] || python3 "$here/bench/fusion/make_family.py"
cd "$here"
case $what in
  slm)
    "$duet" train --init models/slm.gguf --tok models/tok.gguf -f build/fusion/family-train.txt \
      --valid build/fusion/family-dev.txt -o build/fusion/slm-family.gguf --name duet-slm-family --f16 \
      --batch 8 --seq 256 --steps 300 --warmup 20 --lr 1e-4 --lr-min 1e-5 --wd 0.1 --clip 1.0 --seed 7 \
      --eval-every 25 --eval-batches 0 --patience 4 -t "${threads:-1}" --json \
      > build/fusion/slm-family.json 2> build/fusion/slm-family.log ;;
  llm)
    "$duet" train --init models/llm.gguf --tok models/tok.gguf -f build/fusion/family-train.txt \
      --valid build/fusion/family-dev.txt -o build/fusion/llm-family.gguf --name duet-llm-family --f16 \
      --batch 8 --seq 256 --steps 150 --warmup 10 --lr 3e-4 --lr-min 3e-5 --wd 0.1 --clip 1.0 --seed 7 \
      --eval-every 25 --eval-batches 0 --patience 3 --time-limit 25 -t "${threads:-2}" --json \
      > build/fusion/llm-family.json 2> build/fusion/llm-family.log ;;
  *) echo "usage: $0 slm|llm [-t THREADS]" >&2; exit 2 ;;
esac
cat build/fusion/$what-family.json
