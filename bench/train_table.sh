#!/usr/bin/env bash
# The model comparison (docs/results/train_table.md): each model trained on ../shared/data/cxr on this CPU,
# one after the other (never in parallel: they would share the cores and slow each other),
# then bench/train_table.py prints the table from bench/results/train_*.json.
# Epochs are chosen so that each cosine schedule completes inside its time cap.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
$PY bench/train_accuracy.py --model tf_efficientnet_lite0 --epochs 12 --max-minutes 27
$PY bench/train_accuracy.py --model resdense_small --pretrained none --lr 2e-3 --epochs 20 --max-minutes 15
$PY bench/train_accuracy.py --model tf_efficientnet_lite1 --epochs 6 --max-minutes 20
$PY bench/train_accuracy.py --model tf_efficientnet_lite2 --epochs 4 --max-minutes 20
$PY bench/train_table.py
