#!/usr/bin/env bash
# The checks that need a GPU, in one short run (under 8 minutes on one H100), ending in one summary table:
#   1. the criterion and penalty tests on CUDA (tests/test_cuda.py; skipped, with the reason, without CUDA)
#   2. a 200-update paper-size WAE with --fp16 and with --bf16: loss finite and falling
#   3. 1-GPU training words/s against fairseq's own `lstm` on the same data
#   4. prior sampling sentences/s on the GPU
#   5. with 2+ GPUs: --distributed-world-size 2 (DAE/WAE losses against 1 GPU with --update-freq 2)
# Usage: bash scripts/gpu_check.sh [WORK_DIR]   (needs fairseq, torch with CUDA and this package importable)
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d)}
mkdir -p "$work"
user_dir="$repo/fairseq_wae"
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" PYTHONWARNINGS=ignore
rows=()
row() { rows+=("| $1 | $2 | $3 |"); }

if ! python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check.sh: no CUDA device visible to torch: nothing to check here" >&2
    exit 1
fi
gpus=$(python -c "import torch; print(torch.cuda.device_count())")
card=$(python -c "import torch; print(torch.cuda.get_device_name(0))")

# 1. tests on CUDA
if python -m pytest -q "$repo/tests/test_cuda.py" > "$work/test_cuda.log" 2>&1; then
    row "CUDA criterion/penalty tests" pass "$(tail -n 1 "$work/test_cuda.log")"
else
    row "CUDA criterion/penalty tests" FAIL "$(tail -n 1 "$work/test_cuda.log") ($work/test_cuda.log)"
fi

# data: the bundled toy corpus, 20x (the vocabulary is small; the network is the paper's)
for i in $(seq 20); do cat "$repo/examples/toy/sentences.txt"; done | awk '{print $0 " " NR % 97}' > "$work/corpus.txt"
python "$repo/scripts/prepare_corpus.py" --input "$work/corpus.txt" --out "$work/data" > "$work/prepare.log" 2>&1 \
    || { tail -n 5 "$work/prepare.log" >&2; exit 1; }

common=(--task sentence_autoencoding --optimizer adam --lr 0.001 --batch-size 128 --log-format json
        --log-interval 20 --no-save --disable-validation --seed 1)
losses() { grep -o '"loss": "[0-9.naif]*"' "$1" | grep -o '[0-9.naif]*"$' | tr -d '"' | tr '\n' ' '; }
falling() { python - "$@" <<'EOF'
import math, sys
values = [float(v) for v in sys.argv[1:]]
ok = len(values) >= 2 and all(math.isfinite(v) for v in values) and values[-1] < values[0]
print("pass" if ok else "FAIL")
EOF
}

# 2. mixed precision
for precision in fp16 bf16; do
    log="$work/wae-$precision.log"
    fairseq-train "$work/data" --user-dir "$user_dir" "${common[@]}" --arch lstm_wae_paper --criterion wae_mmd \
        --mmd-lambda 10 --max-update 200 --"$precision" > "$log" 2>&1
    values=$(losses "$log")
    row "WAE paper size, --$precision, 200 updates" "$(falling $values)" "loss every 20 updates: $values"
done

# 3. words/s against fairseq's lstm (same data, same sizes, batch 128, 300 updates each)
wps() { grep -o '"train_wps": "[0-9.]*"' "$1" | tail -n 1 | grep -o '[0-9.]*' ; }
fairseq-train "$work/data" --user-dir "$user_dir" "${common[@]}" --arch lstm_wae_paper --criterion wae_mmd \
    --max-update 300 > "$work/ours.log" 2>&1
# fairseq's lstm is a translation model: the same sentences as source and target
python - "$work" <<'EOF'
import os, shutil, sys
work = sys.argv[1]
pair = os.path.join(work, "pair")
os.makedirs(pair, exist_ok=True)
for split in ("train", "valid", "test"):
    for side in ("src", "tgt"):
        shutil.copy(os.path.join(work, "data", f"{split}.txt"), os.path.join(pair, f"{split}.{side}"))
EOF
fairseq-preprocess --source-lang src --target-lang tgt --trainpref "$work/pair/train" --validpref "$work/pair/valid" \
    --destdir "$work/pair-bin" --joined-dictionary --workers 4 > "$work/pair.log" 2>&1
fairseq-train "$work/pair-bin" --task translation --arch lstm --encoder-embed-dim 300 --decoder-embed-dim 300 \
    --encoder-hidden-size 100 --decoder-hidden-size 100 --decoder-out-embed-dim 100 --decoder-attention 0 \
    --criterion cross_entropy --optimizer adam --lr 0.001 --batch-size 128 --max-update 300 --log-format json \
    --log-interval 20 --no-save --disable-validation --seed 1 > "$work/lstm.log" 2>&1
ours=$(wps "$work/ours.log") theirs=$(wps "$work/lstm.log")
row "train words/s, ours vs fairseq lstm" "${ours:-?} / ${theirs:-?}" \
    "ratio $(python -c "print(f'{float(\"${ours:-0}\") / float(\"${theirs:-1}\"):.2f}x')" 2>/dev/null)"

# 4. prior sampling on the GPU
fairseq-train "$work/data" --user-dir "$user_dir" --task sentence_autoencoding --optimizer adam --lr 0.001 \
    --batch-size 128 --max-update 50 --arch lstm_wae_paper --criterion wae_mmd --save-dir "$work/ckpt" \
    --no-epoch-checkpoints --disable-validation > "$work/short.log" 2>&1
start=$(date +%s.%N)
fairseq-generate "$work/data" --user-dir "$user_dir" --task prior_sampling --num-samples 10000 --seed 1 \
    --path "$work/ckpt/checkpoint_last.pt" --beam 1 --batch-size 1000 --max-len-b 20 > "$work/samples.out" 2> "$work/samples.log"
end=$(date +%s.%N)
made=$(grep -c '^H-' "$work/samples.out")
row "prior sampling, greedy, batch 1000" "$made sentences" \
    "$(python -c "print(f'{$made / ($end - $start):.0f} sentences/s (whole command)')")"

# 5. two GPUs
if [ "$gpus" -ge 2 ]; then
    for arch_criterion in "lstm_ae_paper ae_cross_entropy" "lstm_wae_paper wae_mmd"; do
        set -- $arch_criterion
        fairseq-train "$work/data" --user-dir "$user_dir" "${common[@]}" --arch "$1" --criterion "$2" \
            --max-update 40 --distributed-world-size 2 > "$work/ddp-$1.log" 2>&1
        CUDA_VISIBLE_DEVICES=0 fairseq-train "$work/data" --user-dir "$user_dir" "${common[@]}" --arch "$1" \
            --criterion "$2" --max-update 40 --update-freq 2 > "$work/one-$1.log" 2>&1
        row "2 GPUs vs 1 GPU --update-freq 2, $1" "$(losses "$work/ddp-$1.log")" "$(losses "$work/one-$1.log")"
    done
else
    row "2 GPUs" skipped "one GPU visible"
fi

echo
echo "gpu_check.sh on $gpus x $card"
echo "| check | result | detail |"
echo "|---|---|---|"
printf '%s\n' "${rows[@]}"
