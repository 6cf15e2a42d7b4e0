#!/usr/bin/env bash
# Data-parallel fairseq-train on CPU processes (gloo), for machines without GPUs and for tests.
#   NPROC=2 bash scripts/train_distributed_cpu.sh DATA [fairseq-train flags...]
# fairseq's own spawn and torchrun paths count CUDA devices and fail on a CPU-only machine, so this
# starts each rank itself: gloo, a tcp rendezvous on localhost:$PORT, no spawn, legacy DDP.
# Every rank reads the checkpoint it resumes from: fairseq's broadcast of rank 0's copy unpickles it
# with torch.load's default weights_only=True (PyTorch >= 2.6), which refuses fairseq's checkpoints.
# Only rank 0 logs and saves. Exits with the first failing rank's status, stopping the others;
# TIMEOUT (seconds, default none) bounds the whole run, so a stuck rendezvous cannot hang forever.
# DDP_BACKEND (default legacy_ddp: fairseq's pytorch_ddp hands torch device ids, which torch refuses
# for CPU modules) and FAIRSEQ_TRAIN (default fairseq-train) let the tests run fairseq's pytorch_ddp
# through a test-only shim (tests/shims/pytorch_ddp_on_cpu.py).
set -uo pipefail
NPROC=${NPROC:-2}
PORT=${PORT:-$((20000 + RANDOM % 20000))}
TIMEOUT=${TIMEOUT:-0}
DDP_BACKEND=${DDP_BACKEND:-legacy_ddp}
read -r -a train_command <<< "${FAIRSEQ_TRAIN:-fairseq-train}"
if [ $# -lt 1 ]; then echo "usage: NPROC=2 $0 DATA [fairseq-train flags...]" >&2; exit 2; fi
if ! [[ "$NPROC" =~ ^[1-9][0-9]*$ ]]; then echo "$0: NPROC must be a positive number, got '$NPROC'" >&2; exit 2; fi
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    echo "$0: port $PORT is busy; set PORT to a free one" >&2; exit 2
fi
for arg in "$@"; do
    if [ "$arg" = --bf16 ] || [ "$arg" = --memory-efficient-bf16 ]; then
        echo "$0: $arg with several processes: fairseq 0.12's command line turns it into --tpu, and its distributed" \
             "start-up then takes the TPU path before the plugin runs; train bfloat16 with several workers through" \
             "fairseq-hydra-train and common.bf16=true (README, Half precision), or in one process with --bf16" >&2
        exit 2
    fi
done
pids=()
for ((rank = 0; rank < NPROC; rank++)); do
    timeout_cmd=()
    [ "$TIMEOUT" != 0 ] && timeout_cmd=(timeout "$TIMEOUT")
    OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "${timeout_cmd[@]}" "${train_command[@]}" "$@" --cpu \
        --distributed-world-size "$NPROC" --distributed-rank "$rank" --distributed-backend gloo \
        --distributed-init-method "tcp://localhost:$PORT" --distributed-no-spawn --device-id 0 \
        --ddp-backend "$DDP_BACKEND" --load-checkpoint-on-all-dp-ranks &
    pids+=($!)
done
# whichever rank ends first (wait -n): one that fails stops the others at once, whatever its rank, where
# waiting in rank order would leave a failed rank 1 unseen while rank 0 waits for it in a collective
status=0
for _ in "${pids[@]}"; do
    wait -n
    code=$?
    if [ "$code" != 0 ] && [ "$status" = 0 ]; then
        status=$code
        kill "${pids[@]}" 2>/dev/null
    fi
done
exit "$status"
