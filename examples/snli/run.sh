#!/usr/bin/env bash
# Reproduces the paper's Table 1, Table 2 and Figure 3 (and Figure 1) on SNLI. See README.md here.
#   bash examples/snli/run.sh prepare | train NAME|all|transformers|extras | table1 | table2 | figure3 | figure1 | transformer | compare | learned-prior
# Settings come from the environment (SNLI, DATA, WORK, RESULTS, EPOCHS, BATCH, LR, JOBS, MAX_LEN): README.md.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
DATA=${DATA:-$repo/data/snli}
WORK=${WORK:-$repo/work/snli}
RESULTS=${RESULTS:-$here/results}
EPOCHS=${EPOCHS:-60}
TRANSFORMER_EPOCHS=${TRANSFORMER_EPOCHS:-6}
TRANSFORMER_LR=${TRANSFORMER_LR:-0.001}
SWEEP_EPOCHS=${SWEEP_EPOCHS:-3}
BATCH=${BATCH:-64}
LR=${LR:-0.003}
JOBS=${JOBS:-2}
NUM_SAMPLES=${NUM_SAMPLES:-10000}
MAX_LEN=${MAX_LEN:-20}
LM=${LM:-$WORK/lm/news3.bin}
LM_CORPUS=${LM_CORPUS:-$repo/../shared/data/lm/news_en_reuters21578_bbc.txt.gz}
shared_snli=$repo/../shared/data/snli
MODELS="dae vae wae3 wae10 swae"
SWEEP="vae-const0.01 vae-const0.1 vae-const0.5 vae-const1"
TRANSFORMERS="tdae tvae twae"
# beyond the paper: text-autoencoders' models (Shen et al. 2020) and VAEs that do not collapse
EXTRAS="dae-noise aae laae daae vae-improved vae-bn tvae-fixed tvae-bn"
# `compare`: these LSTMs for COMPARE_EPOCHS epochs each (the Transformer rows' length), beside the Transformers
COMPARED="dae dae-noise aae laae daae wae3 vae vae-improved"
COMPARE_EPOCHS=${COMPARE_EPOCHS:-6}
# `learned-prior`: these models, each with N(0, I) and with each density fairseq-wae-fit-prior fits to its codes
PRIOR_MODELS=${PRIOR_MODELS:-"dae vae wae3 wae10 aae"}
DENSITIES="gaussian gmm flow"

prepare() {
    local inputs=()
    if [ -n "${SNLI:-}" ]; then
        for path in $SNLI; do inputs+=(--snli-path "$path"); done
        split_args=()                                   # the official release: the paper's 100k, 90k/5k/5k
    else
        for f in snli_dev_sentences_unique_esnli_tok.txt.gz snli_test_sentences_unique_esnli_tok.txt.gz \
                 snli_sample_lm_wae_train_lower.txt.gz; do inputs+=(--snli-path "$shared_snli/$f"); done
        split_args=(--num-sentences all --split 0.9,0.05,0.05)  # the ~30k sentences available offline
    fi
    python "$repo/scripts/prepare_snli.py" "${inputs[@]}" "${split_args[@]}" --vocab-size 20000 --out "$DATA"
    [ -s "$DATA/word2vec300.txt" ] || python "$repo/scripts/train_word2vec.py" --input "$DATA/train.txt" \
        --out "$DATA/word2vec300.txt" --dict "$DATA/dict.txt"
}

# Section 3.1 and the authors' code: 300d word2vec trained on the corpus and frozen, bidirectional
# 100-unit encoder, 100-unit decoder, 100d z, sentences truncated to 20 words, Adam.
# Batch 64 and lr 3e-3, not the paper's 128 and 1e-3: 30k sentences, not 90k, give fewer updates (README.md).
common=(--task sentence_autoencoding --max-sentence-len 20 --optimizer adam --adam-betas "(0.9,0.999)" --clip-norm 5
        --batch-size "$BATCH" --cpu --seed 1 --log-format json --log-interval 20 --no-epoch-checkpoints)
lstm=(--encoder-bidirectional --embed-path "$DATA/word2vec300.txt" --freeze-embed --lr "$LR")
# Beyond the paper (results/ablations/transformer.md): transformer_*_small (2+2 layers, 256d, 4 heads,
# 100d z) with its own 256d embeddings, trained from scratch with the usual warm-up.
transformer=(--lr "$TRANSFORMER_LR" --lr-scheduler inverse_sqrt --warmup-updates 400)

# the sigmoid KL annealing of the VAEs: centred at $1/$2 epochs, the slope of the authors'
# tanh schedule, stopped at the peak of lambda*KL; word dropout 0, +0.05 per epoch, at most 0.5
vae_schedule() {
    echo "--criterion vae_kl --kl-weight 1 --kl-anneal sigmoid
          --kl-anneal-midpoint $(($1 * $(wc -l < "$DATA/train.txt") / BATCH / $2))
          --kl-anneal-steepness 0.002 --kl-anneal-stop-at-peak
          --word-dropout 0 --word-dropout-increment 0.05 --word-dropout-max 0.5"
}

# cyclical KL annealing (Fu et al. 2019) in cycles of $1 epochs: half rising, half at the full weight
cycles_of() {
    [ "$1" -ge 1 ] || { echo "a KL cycle must last at least one epoch (EPOCHS >= 2)" >&2; return 1; }
    echo "--kl-anneal cyclical --kl-anneal-steps $(($1 * $(wc -l < "$DATA/train.txt") / BATCH))"
}

# text-autoencoders' AAE family on the paper's LSTM: its lambda_adv 10 and lambda_p 0.01 weigh a
# cross-entropy summed over a sentence; here it is a mean over its ~11 tokens, hence 1 and 0.001.
# Adam betas (0.5, 0.999) as text-autoencoders trains the autoencoder and the discriminator.
aae="--arch lstm_aae_paper --criterion aae --adversarial-lambda 1 --adam-betas (0.5,0.999)"

model_args() {
    case "$1" in
        dae)   echo "--arch lstm_ae_paper --criterion ae_cross_entropy" ;;
        wae3)  echo "--arch lstm_wae_paper --criterion wae_mmd --mmd-lambda 3" ;;
        wae10) echo "--arch lstm_wae_paper --criterion wae_mmd --mmd-lambda 10" ;;
        swae)  echo "--arch lstm_swae_paper --criterion wae_mmd --mmd-lambda 3 --kl-variance-penalty 1" ;;
        # centred at 40/3 epochs, not a fraction of EPOCHS, so that EPOCHS only says how long training goes on
        vae)   echo "--arch lstm_vae_paper $(vae_schedule 40 3)" ;;
        vae-const*) echo "--arch lstm_vae_paper --criterion vae_kl --kl-weight ${1#vae-const}" ;;
        tdae)  echo "--arch transformer_ae_small --criterion ae_cross_entropy" ;;
        twae)  echo "--arch transformer_wae_small --criterion wae_mmd --mmd-lambda 3" ;;
        # centred at 10/3 epochs (as for the LSTM, whatever TRANSFORMER_EPOCHS): past its peak in 6 epochs
        tvae)  echo "--arch transformer_vae_small $(vae_schedule 10 3)" ;;
        # DAE with text-autoencoders' input noise: each encoder input word dropped with probability 0.3
        dae-noise) echo "--arch lstm_ae_paper --criterion ae_cross_entropy --noise-drop 0.3" ;;
        aae)   echo "$aae" ;;
        laae)  echo "$aae --logvar-l1 0.001" ;;
        daae)  echo "$aae --noise-drop 0.3" ;;
        # against collapse: cyclical annealing in two cycles over the training, 0.5 free nats per
        # dimension and word dropout 0.2 (on SNLI-30k, 3 epochs of the Transformer kept 100 of 100 units active)
        vae-improved) echo "--arch lstm_vae_paper --criterion vae_kl $(cycles_of $((EPOCHS / 2))) --kl-free-bits 0.5 --word-dropout 0.2" ;;
        tvae-fixed) echo "--arch transformer_vae_small --criterion vae_kl $(cycles_of $((TRANSFORMER_EPOCHS / 2))) --kl-free-bits 0.5 --word-dropout 0.2" ;;
        # BN-VAE: posterior means batch-normalised at scale 0.6, so KL >= 0.5 * 100 * 0.36 = 18 nats per sentence
        vae-bn)  echo "--arch lstm_vae_paper --criterion vae_kl --bn-posterior-mean 0.6 --word-dropout 0.2" ;;
        tvae-bn) echo "--arch transformer_vae_small --criterion vae_kl --bn-posterior-mean 0.6 --word-dropout 0.2" ;;
        *) echo "unknown model $1; choose from: $MODELS $SWEEP $TRANSFORMERS $EXTRAS all" >&2; return 1 ;;
    esac
}

train_one() {
    local name=$1 epochs=$EPOCHS args
    args=$(model_args "$name")
    local family=("${lstm[@]}")
    case "$name" in
        vae-const*) epochs=$SWEEP_EPOCHS ;;
        t?ae|t?ae-*) epochs=$TRANSFORMER_EPOCHS family=("${transformer[@]}") ;;
    esac
    local log=$WORK/logs/$name.log
    mkdir -p "$WORK/logs" "$WORK/checkpoints/$name"
    # fairseq-train resumes from checkpoint_last.pt: keep the log of the epochs before it
    [ -s "$WORK/checkpoints/$name/checkpoint_last.pt" ] || : > "$log"
    echo "$(date -u +%FT%TZ) train $name ($epochs epochs) -> $log"
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=1 fairseq-train "$DATA" --user-dir "$repo/fairseq_wae" "${common[@]}" "${family[@]}" $args \
        --max-epoch "$epochs" --save-dir "$WORK/checkpoints/$name" >> "$log" 2>&1
    echo "$(date -u +%FT%TZ) done $name"
}

evaluate_one() {
    # the model at the end of training (a VAE's best validation loss is an early epoch, while lambda
    # is still small); as in the authors' code, greedy decoding of at most 20 words (the length the
    # models were trained on) and the test split truncated to 20 words
    bash "$repo/scripts/evaluate_checkpoint.sh" "$WORK/checkpoints/$1/checkpoint_last.pt" "$DATA" "$LM" \
        "$WORK/eval/$1" "$NUM_SAMPLES" --max-sentence-len 20 --max-len-b "$MAX_LEN"
}

# the prior samples of model $1 drawn from N(0, I) ($2 = normal) or from the density $2 fitted to its training
# codes, evaluated as Table 1's plus the reverse perplexity on the test split and the share copied from training
evaluate_prior() {
    local name=$1 density=$2 out=$WORK/learned-prior/$1.$2 ckpt=$WORK/checkpoints/$1/checkpoint_last.pt prior=()
    if [ "$density" != normal ]; then
        python "$repo/scripts/fit_prior.py" --checkpoint "$ckpt" --data "$DATA" --density "$density" \
            --out "$WORK/learned-prior/$name.$density.pt" > "$out.fit.txt"
        prior=(--prior-file "$WORK/learned-prior/$name.$density.pt")
    fi
    fairseq-generate "$DATA" --user-dir "$repo/fairseq_wae" --path "$ckpt" --cpu --beam 1 --batch-size 500 \
        --task prior_sampling --num-samples "$NUM_SAMPLES" --seed 1 --max-len-b "$MAX_LEN" "${prior[@]}" \
        > "$out.out" 2> "$out.log"
    python "$repo/scripts/extract_hypotheses.py" "$out.out" > "$out.samples.txt"
    python "$repo/scripts/evaluate.py" --name "$name.$density" --samples "$out.samples.txt" --corpus "$DATA/train.txt" \
        --reference "$WORK/learned-prior/test20.txt" --lm "$LM" --json "$out.json" > /dev/null
}

# a fairseq log cut to its metrics: one "KIND {json}" line per train_inner, train and valid record
trimmed_log() {
    grep -E '\| (train_inner|train|valid) \|' "$1" | sed 's/^.*| \(train_inner\|train\|valid\) | /\1 /'
}

case "${1:-}" in
    lm) python "$repo/scripts/train_lm.py" --corpus "$LM_CORPUS" --order 3 --out "$LM" ;;
    table1)
        [ -s "$LM" ] || bash "$0" lm
        mkdir -p "$WORK/eval" "$RESULTS"
        python "$repo/scripts/evaluate.py" --name corpus --corpus "$DATA/test.txt" --lm "$LM" --json "$WORK/eval/corpus.json"
        for name in $MODELS; do
            if [ -s "$WORK/checkpoints/$name/checkpoint_last.pt" ]; then evaluate_one "$name"
            else echo "no checkpoint for $name: run '$0 train $name' first" >&2; fi
        done
        python "$here/report.py" table1 --work "$WORK" --data "$DATA" --out "$RESULTS/table1.md" ;;
    transformer)  # beyond the paper: the Transformer rows next to the LSTM's, results/ablations/transformer.md
        [ -s "$LM" ] || bash "$0" lm
        for name in $TRANSFORMERS; do
            if [ -s "$WORK/checkpoints/$name/checkpoint_last.pt" ]; then evaluate_one "$name"
            else echo "no checkpoint for $name: run '$0 train $name' first" >&2; fi
        done
        python "$here/report.py" transformer --work "$WORK" --data "$DATA" --out "$RESULTS/ablations/transformer.md" ;;
    table2) python "$here/report.py" table2 --work "$WORK" --data "$DATA" --out "$RESULTS/table2.md" ;;
    figure3) python "$here/report.py" figure3 --work "$WORK" --out "$RESULTS/figure3.png" ;;
    figure1) python "$here/report.py" figure1 --work "$WORK" --data "$DATA" --out "$RESULTS/figure1.png" ;;
    evaluate) evaluate_one "$2" ;;
    compare)  # results/text-autoencoders.md and .png; metrics and trimmed logs in results/compare
        [ -s "$LM" ] || bash "$0" lm
        printf '%s\n' $COMPARED | WORK=$WORK/compare EPOCHS=$COMPARE_EPOCHS LM=$LM xargs -P "$JOBS" -I{} bash "$0" train {}
        for name in $COMPARED; do
            [ -s "$WORK/compare/eval/$name.json" ] || WORK=$WORK/compare LM=$LM bash "$0" evaluate "$name"
        done
        mkdir -p "$RESULTS/compare/eval" "$RESULTS/compare/logs"
        cp "$WORK"/compare/eval/*.json "$RESULTS/compare/eval/"
        for name in $COMPARED; do trimmed_log "$WORK/compare/logs/$name.log" > "$RESULTS/compare/logs/$name.jsonl"; done
        python "$here/report.py" compare --work "$RESULTS/compare" --data "$DATA" --out "$RESULTS/text-autoencoders.md" ;;
    collect)  # what is committed: metrics JSON, the first 1000 samples per model, logs trimmed to the metrics
        mkdir -p "$RESULTS/eval" "$RESULTS/samples" "$RESULTS/logs"
        cp "$WORK"/eval/*.json "$RESULTS/eval/"
        for f in "$WORK"/eval/*.samples.txt; do head -n 1000 "$f" > "$RESULTS/samples/$(basename "$f")"; done
        for f in "$WORK"/logs/*.log; do trimmed_log "$f" > "$RESULTS/logs/$(basename "$f" .log).jsonl"; done ;;
    learned-prior)  # results/learned-prior.md: every model of PRIOR_MODELS with N(0, I) and each fitted density
        [ -s "$LM" ] || bash "$0" lm
        mkdir -p "$WORK/learned-prior"
        # as the models were trained; written whole, then renamed: a run beside this one reads it too
        cut -d' ' -f1-20 "$DATA/test.txt" > "$WORK/learned-prior/test20.txt.$$"
        mv "$WORK/learned-prior/test20.txt.$$" "$WORK/learned-prior/test20.txt"
        for name in $PRIOR_MODELS; do
            if [ ! -s "$WORK/checkpoints/$name/checkpoint_last.pt" ]; then
                echo "no checkpoint for $name: run '$0 train $name' first" >&2; continue
            fi
            for density in normal $DENSITIES; do
                [ -s "$WORK/learned-prior/$name.$density.json" ] || evaluate_prior "$name" "$density"
            done
        done
        python "$here/report.py" learned-prior --work "$WORK" --data "$DATA" --out "$RESULTS/learned-prior.md" ;;
    prepare) prepare ;;
    train)
        if [ "${2:-all}" = all ]; then
            printf '%s\n' $MODELS $SWEEP | xargs -P "$JOBS" -I{} bash "$0" train {}
        elif [ "$2" = transformers ]; then
            printf '%s\n' $TRANSFORMERS | xargs -P "$JOBS" -I{} bash "$0" train {}
        elif [ "$2" = extras ]; then
            printf '%s\n' $EXTRAS | xargs -P "$JOBS" -I{} bash "$0" train {}
        else
            train_one "$2"
        fi ;;
    *) echo "usage: $0 prepare | train NAME|all|transformers|extras | table1 | table2 | figure3 | figure1 | transformer | compare | learned-prior | collect" >&2
       exit 2 ;;
esac
