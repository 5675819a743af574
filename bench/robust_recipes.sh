#!/usr/bin/env bash
# Issue 16's method table: each recipe variant trained under the patient-disjoint protocol and
# the leave-source-out proxy (lso-adult), then audited (within-class probes) on its patient run.
# Reduced, equal budget for every variant (this 2-core CPU is shared): tf_efficientnet_lite0,
# ImageNet weights, full fine-tune, 96 px, 4 epochs (warm-up 0.5), patience 2; checkpoints on val loss.
# Variants are read from a queue file, one per line: NAME [protocols=P,Q] FLAGS... (lines may be
# appended while it runs; a finished variant is reused). Default protocols: patient,lso-adult;
# variants that lso-adult cannot see (auxiliary classes, de-confounding: its training set is one
# source and one population) run under patient only. Nothing is chosen on a test split: the table
# (bench/robust_table.py) ranks on val and lso-adult.
# One torch thread per variant (run two queues side by side on 2 cores): on a shared CPU,
# two-thread OpenMP steps spent most of their CPU time waiting for each other.
# Usage: bench/robust_recipes.sh QUEUE_FILE [DATA] [OUT]
set -uo pipefail
QUEUE=$1
DATA=${2:-../shared/data/cxr}
OUT=${3:-runs/r16}
CXR=${CXR:-.venv/bin/cxr}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
BASE=(--model tf_efficientnet_lite0 --input-size 96 --epochs 4 --warmup-epochs 0.5 --patience 2 --workers 1)
# one variant: its protocols run, then the audit of its patient run
train_one() {
    local name=$1 flags=$2 protocols=patient,lso-adult rc
    if [[ "$flags" == protocols=* ]]; then
        protocols=${flags%% *}; protocols=${protocols#protocols=}; flags=${flags#* }
    fi
    # shellcheck disable=SC2086
    $CXR protocols --data "$DATA" --out "$OUT/$name" --protocols "$protocols" "${BASE[@]}" $flags \
        > "$OUT/$name.log" 2>&1
    rc=$?
    # The audit lands in the patient run's evaluation/metrics.json (key "audit"); skip it when there.
    if [[ $rc -eq 0 ]] && ! grep -q '"audit"' "$OUT/$name/patient/run/evaluation/metrics.json" 2>/dev/null; then
        $CXR evaluate "$OUT/$name/patient/run" --audit --workers 1 >> "$OUT/$name.log" 2>&1
    fi
    return $rc
}
# shellcheck source=bench/_queue.sh
source "$(dirname "$0")/_queue.sh"
run_queue "$QUEUE" "$OUT" train_one
