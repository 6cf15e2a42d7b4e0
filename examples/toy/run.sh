#!/usr/bin/env bash
# Quick start on the bundled toy corpus: split and binarize it, train a tiny WAE for about a minute on
# a CPU, then print sentences sampled from the prior.   Usage: [EPOCHS=40] bash examples/toy/run.sh [OUTPUT_DIR]
# Safe to run again: the prepared data is kept while intact (and mended when not), and training goes
# on from OUTPUT_DIR/checkpoints (a finished run is not repeated; delete that folder to train afresh);
# the logs of earlier runs are kept (train.log.1, ...).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${1:-quickstart} epochs=${EPOCHS:-40}
fail() { echo "run.sh: $*" >&2; exit 1; }
# a rerun writes new logs; the earlier ones are kept as NAME.1, NAME.2, ... (the highest number is the newest)
keep_earlier() { local n=1; [ -e "$1" ] || return 0; while [ -e "$1.$n" ]; do n=$((n + 1)); done; mv "$1" "$1.$n"; }
[ ! -e "$out" ] || [ -d "$out" ] || fail "OUTPUT_DIR $out is a file, not a folder"
mkdir -p "$out"
for log in prepare.log train.log generate.log; do keep_earlier "$out/$log"; done

python "$repo/scripts/prepare_corpus.py" --input "$here/sentences.txt" --out "$out/data" \
    --seed 1 > "$out/prepare.log" 2>&1 || { tail -n 5 "$out/prepare.log" >&2; fail "preparing the data failed"; }

if ! fairseq-train "$out/data" --user-dir "$repo/fairseq_wae" --task sentence_autoencoding \
    --arch lstm_wae_tiny --criterion wae_mmd --mmd-lambda 10 \
    --optimizer adam --lr 0.003 --clip-norm 5 --batch-size 64 --max-epoch "$epochs" --cpu --seed 1 \
    --save-dir "$out/checkpoints" --no-epoch-checkpoints --log-format simple --log-interval 50 \
    > "$out/train.log" 2>&1; then
    tail -n 15 "$out/train.log" >&2
    fail "training failed (the whole log: $out/train.log)"
fi
progress=$(grep -E "\| (train|valid) \|" "$out/train.log" | grep -E "epoch 0(01|20|40)" || true)
echo "${progress:-(trained before: $out/checkpoints holds a finished run; delete it to train afresh)}"

echo "== 8 sentences sampled from the prior (greedy decoding of z ~ N(0, I)) =="
fairseq-generate "$out/data" --user-dir "$repo/fairseq_wae" --task prior_sampling --num-samples 8 --seed 1 \
    --path "$out/checkpoints/checkpoint_best.pt" --beam 1 --cpu > "$out/samples.out" 2> "$out/generate.log" \
    || { tail -n 15 "$out/generate.log" >&2; fail "sampling failed"; }
python "$repo/scripts/extract_hypotheses.py" "$out/samples.out"
