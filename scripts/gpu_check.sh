#!/usr/bin/env bash
# The checks that need a GPU, in one run ending in one table; exits 1 when any row fails, 0 when all
# that ran passed. On a machine without CUDA (or with --cpu) the CUDA-only legs are skipped by name and
# the rest run their CPU stand-ins. Options and legs: python scripts/gpu_check.py --help.
# Usage: bash scripts/gpu_check.sh [--cpu] [--work DIR] [--only LEG ...] [--tolerance-factor F]
set -euo pipefail
exec python "$(dirname "$0")/gpu_check.py" "$@"
