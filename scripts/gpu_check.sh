#!/usr/bin/env bash
# The checks that need a GPU, in one short run ending in one summary table (meant to take under 8 minutes
# on one H100; not yet run on a GPU):
#   1. the criterion and penalty tests on CUDA (tests/test_cuda.py; skipped, with the reason, without CUDA)
#   2. --fp16, --bf16 and --amp against float32 on the same batches (paper-size stochastic WAE and VAE):
#      loss, MMD, KL within a stated tolerance at update 1 and after 100 updates
#   3. 1-GPU training words/s against fairseq's own `lstm` on the same data
#   4. prior sampling sentences/s on the GPU
#   5. with 2+ GPUs: --distributed-world-size 2 (DAE/WAE losses against 1 GPU with --update-freq 2), and an
#      uneven batch (3 sentences in batches of 2: one GPU holds one sentence) against 1 GPU
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

# compare REFERENCE_LOG OTHER_LOG UPDATE:TOLERANCE...: "pass|FAIL | details" for loss, MMD and KL terms
compare() { python - "$@" <<'EOF'
import json, math, sys
def records(path):
    out = {}
    for line in open(path, errors="replace"):
        if "train_inner" in line and "{" in line:
            record = json.loads(line[line.index("{"):])
            out[int(record["num_updates"])] = record
    return out
a, b = records(sys.argv[1]), records(sys.argv[2])
ok, details = True, []
for check in sys.argv[3:]:
    update, tolerance = int(check.split(":")[0]), float(check.split(":")[1])
    if update not in a or update not in b:
        ok = False
        details.append(f"no update {update}")
        continue
    for key in ("loss", "nll_loss", "mmd", "kl", "variance_kl"):
        if key in a[update]:
            x, y = float(a[update][key]), float(b[update].get(key, "nan"))
            ok = ok and math.isfinite(y) and abs(x - y) <= tolerance * max(abs(x), 1e-6)
            details.append(f"{key}@{update} {y:.4g} vs {x:.4g}")
print(("pass" if ok else "FAIL") + " | " + ", ".join(details))
EOF
}

# 2. every precision against float32 on the same batches. At update 1 the networks are the float32 one,
# rounded: a value moves by 16 unit roundoffs u at most (tests/test_precision.py: the MMD magnifies the
# codes' error tenfold), u = 2^-11 for fp16 and amp (whose products run in fp16), 2^-8 for bf16.
# After 100 updates the runs have followed different rounding paths: 5% (fp16, amp), 10% (bf16).
for model in "lstm_swae_paper wae_mmd --kl-variance-penalty 1" "lstm_vae_paper vae_kl --kl-weight 0.5"; do
    set -- $model
    name=$2
    for precision in fp32 fp16 bf16 amp; do
        flag=(); [ "$precision" = fp32 ] || flag=(--"$precision")
        fairseq-train "$work/data" --user-dir "$user_dir" "${common[@]}" --arch "$1" --criterion "$2" "${@:3}" \
            --max-update 100 --log-interval 1 "${flag[@]}" > "$work/$name-$precision.log" 2>&1
    done
    for precision in fp16 bf16 amp; do
        case $precision in bf16) checks="1:0.0625 100:0.10" ;; *) checks="1:0.0078 100:0.05" ;; esac
        result=$(compare "$work/$name-fp32.log" "$work/$name-$precision.log" $checks)
        row "$name --$precision vs float32, updates 1 and 100" "${result%% |*}" "${result#*| }"
    done
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
    # 3 sentences in batches of 2: every update, one GPU holds a single sentence (no MMD estimate there)
    head -n 3 "$work/data/train.txt" > "$work/three.txt"
    fairseq-preprocess --only-source --trainpref "$work/three.txt" --destdir "$work/three" > "$work/three.log" 2>&1
    uneven=(--user-dir "$user_dir" --task sentence_autoencoding --arch lstm_swae_paper --criterion wae_mmd
            --kl-variance-penalty 1 --optimizer adam --lr 0.001 --batch-size 2 --max-update 6 --log-format json
            --log-interval 1 --no-save --disable-validation --seed 1)
    fairseq-train "$work/three" "${uneven[@]}" --distributed-world-size 2 > "$work/uneven-2.log" 2>&1
    CUDA_VISIBLE_DEVICES=0 fairseq-train "$work/three" "${uneven[@]}" --update-freq 2 > "$work/uneven-1.log" 2>&1
    result=$(compare "$work/uneven-1.log" "$work/uneven-2.log" 1:0.002 6:0.002)
    row "2 GPUs (one holding 1 sentence) vs 1 GPU --update-freq 2" "${result%% |*}" "${result#*| }"
else
    row "2 GPUs" skipped "one GPU visible"
fi

echo
echo "gpu_check.sh on $gpus x $card"
echo "| check | result | detail |"
echo "|---|---|---|"
printf '%s\n' "${rows[@]}"
