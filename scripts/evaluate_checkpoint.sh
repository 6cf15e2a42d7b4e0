#!/usr/bin/env bash
# Checkpoint in, Table 1 row out: greedy reconstruction of the test split, N greedy decodings of prior
# samples (seeded), plain text by extract_hypotheses.py, then evaluate.py (and, for Gaussian latents,
# latent_metrics.py). Usage:
#   bash scripts/evaluate_checkpoint.sh CHECKPOINT DATA LM OUT_PREFIX [NUM_SAMPLES] [extra fairseq-generate flags]
# Writes OUT_PREFIX.{recon,ref,samples}.txt, OUT_PREFIX.json (and OUT_PREFIX.latent.json).
# Prior samples stop at 50 words unless the extra flags set --max-len-b (the authors: 20, as in training).
set -euo pipefail
if [ $# -lt 4 ]; then sed -n '2,6p' "$0" >&2; exit 2; fi
ckpt=$1 data=$2 lm=$3 prefix=$4 num=${5:-10000}
shift $(( $# < 5 ? $# : 5 ))
scripts=$(cd "$(dirname "$0")" && pwd)
user_dir=$(cd "$scripts/../fairseq_wae" && pwd)
fail() { echo "evaluate_checkpoint.sh: $*" >&2; exit 1; }
# everything the steps need, checked before the slow generation
[ -f "$ckpt" ] || fail "no checkpoint at $ckpt"
[ -d "$data" ] || fail "the data folder $data is not a folder"
[ -f "$data/train.txt" ] || fail "no $data/train.txt (the corpus for UnigramKL): give a folder made by scripts/prepare_*.py"
[ -f "$lm" ] || fail "no language model at $lm (build it with scripts/train_lm.py)"
[[ "$num" =~ ^[1-9][0-9]*$ ]] || fail "NUM_SAMPLES must be a positive number, got '$num'"
mkdir -p "$(dirname "$prefix")"
gen=(fairseq-generate "$data" --user-dir "$user_dir" --path "$ckpt" --cpu --beam 1 --batch-size 500)
# runs fairseq-generate into $1.out, its log into $1.log; on failure shows the log's end
generate() {
    local out=$1; shift
    if ! "${gen[@]}" "$@" > "$out.out" 2> "$out.log"; then
        echo "evaluate_checkpoint.sh: fairseq-generate failed; the end of $out.log:" >&2
        tail -n 15 "$out.log" >&2
        exit 1
    fi
}
generate "$prefix.recon" "$@" --task sentence_autoencoding --gen-subset test
python "$scripts/extract_hypotheses.py" "$prefix.recon.out" > "$prefix.recon.txt"
python "$scripts/extract_hypotheses.py" "$prefix.recon.out" --kind T > "$prefix.ref.txt"
generate "$prefix.samples" --max-len-b 50 "$@" --task prior_sampling --num-samples "$num" --seed 1
python "$scripts/extract_hypotheses.py" "$prefix.samples.out" > "$prefix.samples.txt"
python "$scripts/evaluate.py" --name "$(basename "$prefix")" --reference "$prefix.ref.txt" \
    --reconstructions "$prefix.recon.txt" --samples "$prefix.samples.txt" --corpus "$data/train.txt" \
    --lm "$lm" --json "$prefix.json"
if python -c "import sys; from fairseq_wae.checkpoint_utils import load_checkpoint_state as load; a = load(sys.argv[1])['cfg']['model']; sys.exit(0 if a['latent_head'] == 'gaussian' else 1)" "$ckpt" 2>/dev/null; then
    python "$scripts/latent_metrics.py" --path "$ckpt" --data "$data" --sentences "$prefix.ref.txt" \
        --max-sentences 500 --samples 20 --json "$prefix.latent.json"
fi
