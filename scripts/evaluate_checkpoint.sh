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
[ -f "$ckpt" ] || { echo "evaluate_checkpoint.sh: no checkpoint at $ckpt" >&2; exit 1; }
mkdir -p "$(dirname "$prefix")"
gen=(fairseq-generate "$data" --user-dir "$user_dir" --path "$ckpt" --cpu --beam 1 --batch-size 500)
"${gen[@]}" "$@" --task sentence_autoencoding --gen-subset test > "$prefix.recon.out" 2> "$prefix.recon.log"
python "$scripts/extract_hypotheses.py" "$prefix.recon.out" > "$prefix.recon.txt"
python "$scripts/extract_hypotheses.py" "$prefix.recon.out" --kind T > "$prefix.ref.txt"
"${gen[@]}" --max-len-b 50 "$@" --task prior_sampling --num-samples "$num" --seed 1 > "$prefix.samples.out" 2> "$prefix.samples.log"
python "$scripts/extract_hypotheses.py" "$prefix.samples.out" > "$prefix.samples.txt"
python "$scripts/evaluate.py" --name "$(basename "$prefix")" --reference "$prefix.ref.txt" \
    --reconstructions "$prefix.recon.txt" --samples "$prefix.samples.txt" --corpus "$data/train.txt" \
    --lm "$lm" --json "$prefix.json"
if python -c "import sys, torch; a = torch.load(sys.argv[1], map_location='cpu', weights_only=False)['cfg']['model']; sys.exit(0 if a['latent_head'] == 'gaussian' else 1)" "$ckpt" 2>/dev/null; then
    python "$scripts/latent_metrics.py" --path "$ckpt" --data "$data" --sentences "$prefix.ref.txt" \
        --max-sentences 500 --samples 20 --json "$prefix.latent.json"
fi
