#!/usr/bin/env bash
# Tokenizer throughput (one thread) and robustness for the four reference
# vocabularies, over TinyStories (valid.txt) and a multilingual/code mix
# (the four .fuzz.inp files of shared/data/vocab + duet's own tokenizer C
# sources and public headers). Prints a table, or one JSON object with --json.
#
#   bench/tokenizer/run.sh [--json] [--runs N] [--build DIR]
#
# Builds bench_tokenizer in DIR (default build-bench-tok, Release) if needed.
# Exit status 1 if a robustness case fails (over budget or bad round trip).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
data=${DUET_DATA:-$here/../shared/data}
build=$here/build-bench-tok
runs=5
json=
while [ $# -gt 0 ]; do
  case $1 in
    --json) json=--json ;;
    --runs) runs=$2; shift ;;
    --build) build=$2; shift ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
bin=$build/bench/bench_tokenizer
if [ ! -x "$bin" ]; then
  cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=Release -DDUET_TESTS=OFF >/dev/null
  cmake --build "$build" -j 2 --target bench_tokenizer >/dev/null
fi
mix=$(mktemp /tmp/duet_tokmix.XXXXXX)
trap 'rm -f "$mix"' EXIT
cat "$data"/vocab/ggml-vocab-{llama-spm,gpt-2,llama-bpe,qwen2}.fuzz.inp \
    "$here"/src/tok/*.c "$here"/src/tok/*.h "$here"/include/duet/*.h > "$mix"
v=$data/vocab
exec "$bin" --runs "$runs" $json \
  --vocab llama-spm="$v/ggml-vocab-llama-spm.gguf" \
  --vocab gpt-2="$v/ggml-vocab-gpt-2.gguf" \
  --vocab llama-bpe="$v/ggml-vocab-llama-bpe.gguf" \
  --vocab qwen2="$v/ggml-vocab-qwen2.gguf" \
  --input tinystories="$data/tinystories/valid.txt" \
  --input mix="$mix"
