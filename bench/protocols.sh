#!/usr/bin/env bash
# The same recipe under each evaluation protocol (cxr protocols), for the default model and the
# from-scratch resdense_small, then one table in bench/results/protocols.{md,json}.
# Reduced recipe so it fits a 2-core CPU shared with others: 160 px, 3 (lite0) / 5 (resdense_small)
# epochs, each training capped at 3.5 minutes (best val-loss checkpoint kept). Rerunning reuses
# finished protocols. Usage: nice -n 10 bench/protocols.sh [DATA] [OUT]
set -euo pipefail
DATA=${1:-../shared/data/cxr}
OUT=${2:-runs/bench_protocols}
PROTOCOLS=${PROTOCOLS:-patient,image,v1-image,lso-adult,lso-adult-normal,lso-pediatric-normal}
CXR=${CXR:-.venv/bin/cxr}
PY=${PY:-.venv/bin/python}

run() {
    local name=$1; shift
    local t0=$SECONDS
    $CXR protocols --data "$DATA" --out "$OUT/$name" --protocols "$PROTOCOLS" --workers 2 "$@"
    echo "$name: $((SECONDS - t0)) s" >> "$OUT/wall.txt"
}
mkdir -p "$OUT"
run tf_efficientnet_lite0 --model tf_efficientnet_lite0 --input-size 160 --epochs 3 --max-minutes 3.5
run resdense_small --model resdense_small --pretrained none --input-size 160 --epochs 5 --lr 0.002 --max-minutes 3.5
# One table of both models: bench/results/protocols.json (every row) and protocols.md.
"$PY" - "$OUT" bench/results/protocols tf_efficientnet_lite0 resdense_small <<'PYEOF'
import json, sys
from pathlib import Path
from cxrkit._io import atomic_write_json, atomic_write_text
from cxrkit.workflows.protocols import to_markdown
out, dest, models = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
wall = (out / "wall.txt").read_text() if (out / "wall.txt").is_file() else ""
tables = {m: json.loads((out / m / "protocols.json").read_text()) for m in models if (out / m / "protocols.json").is_file()}
atomic_write_json(dest.with_suffix(".json"), {"command": "nice -n 10 bench/protocols.sh", "wall": wall, "models": tables})
atomic_write_text(dest.with_suffix(".md"), "\n".join(f"## {m}\n\n{to_markdown(t)}" for m, t in tables.items())
                  + f"\nWall times of `nice -n 10 bench/protocols.sh` (2-core CPU shared with other jobs):\n\n```\n{wall}```\n")
PYEOF
