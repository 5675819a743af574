#!/usr/bin/env bash
# Issue 26's recipe queue: each candidate trained at the default budget (tf_efficientnet_lite0,
# 224 px, robust augmentation, 12 epochs, patience 5) on cxr + nih, then scored on val and on
# ../shared/data/external by bench/external_table.py (never on a test split, never fitted on
# external/). One run is ~50 minutes on an idle 2-core CPU; run one queue at a time.
# Queue file: one candidate per line, NAME FLAGS... (flags added to the base below; lines may be
# appended while it runs; a finished run is reused).
#   aux1        --aux-classes pneumonia
#   aux2        --aux-classes pneumonia bacterial_pneumonia
#   aux2_view   --aux-classes pneumonia bacterial_pneumonia --balance group --balance-by population view
#   aux2_s1     --aux-classes pneumonia bacterial_pneumonia --seed 1
# Usage: bench/external_recipes.sh QUEUE_FILE [OUT=runs/r26]
set -uo pipefail
QUEUE=$1
OUT=${2:-runs/r26}
CXR=${CXR:-.venv/bin/cxr}
PY=${PY:-.venv/bin/python}
DATA=(../shared/data/cxr ../shared/data/nih)
# one candidate: train it (or resume a run that was cut off); a finished run is reused
train_one() {
    local name=$1 flags=$2
    [[ -f "$OUT/$name/model_card.json" ]] && return 0
    if [[ -d "$OUT/$name" ]]; then
        $CXR train --resume "$OUT/$name" >> "$OUT/$name.log" 2>&1
    else
        # shellcheck disable=SC2086
        $CXR train --data "${DATA[@]}" --out "$OUT/$name" $flags > "$OUT/$name.log" 2>&1
    fi
}
# shellcheck source=bench/_queue.sh
source "$(dirname "$0")/_queue.sh"
run_queue "$QUEUE" "$OUT" train_one
runs=()
for d in "$OUT"/*/; do [[ -f "$d/model_card.json" ]] && runs+=("${d%/}"); done
[[ ${#runs[@]} -gt 0 ]] && $PY bench/external_table.py "${runs[@]}"
