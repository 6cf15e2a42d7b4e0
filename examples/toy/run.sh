#!/usr/bin/env bash
# Quick start on the bundled toy corpus: split, binarize, train a tiny WAE for about a minute on a CPU,
# then print sentences sampled from the prior.   Usage: bash examples/toy/run.sh [OUTPUT_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${1:-quickstart}
mkdir -p "$out"

head -n 2700 "$here/sentences.txt" > "$out/train.txt"
sed -n 2701,2850p "$here/sentences.txt" > "$out/valid.txt"
tail -n 150 "$here/sentences.txt" > "$out/test.txt"
fairseq-preprocess --only-source --trainpref "$out/train.txt" --validpref "$out/valid.txt" \
    --testpref "$out/test.txt" --destdir "$out/bin" --workers 1 > "$out/preprocess.log"

fairseq-train "$out/bin" --user-dir "$repo/fairseq_wae" --task sentence_autoencoding \
    --arch lstm_wae_tiny --criterion wae_mmd --mmd-lambda 10 \
    --optimizer adam --lr 0.003 --clip-norm 5 --batch-size 64 --max-epoch 40 --cpu --seed 1 \
    --save-dir "$out/checkpoints" --no-epoch-checkpoints --log-format simple --log-interval 50 \
    2>&1 | grep -E "\| (train|valid) \|" | grep -E "epoch 0(01|20|40)"

echo "== 8 sentences sampled from the prior (greedy decoding of z ~ N(0, I)) =="
fairseq-generate "$out/bin" --user-dir "$repo/fairseq_wae" --task prior_sampling --num-samples 8 --seed 1 \
    --path "$out/checkpoints/checkpoint_best.pt" --beam 1 --cpu 2>/dev/null | grep '^H-' | sort -t- -k2 -n | cut -f3
