#!/usr/bin/env bash
# The same recipe under each evaluation protocol (cxr protocols), for the default model and the
# from-scratch resdense_small, then one table in bench/results/protocols.json.
# Reduced recipe, because this 2-core CPU is shared with other jobs (load average 14-18 when this
# was run, about an eighth of a core for each of our processes):
#   tf_efficientnet_lite0: ImageNet weights frozen, linear head on features computed once per
#     protocol (--finetune head --cache-features), 112 px, up to 30 head epochs;
#   resdense_small: from scratch, full training, 96 px, 2 epochs, capped at 5 minutes;
# both: early stopping / checkpoint on val loss only. The two models run side by side.
# Rerunning reuses finished protocols. Usage: nice -n 10 bench/protocols.sh [DATA] [OUT]
set -euo pipefail
DATA=${1:-../shared/data/cxr}
OUT=${2:-runs/bench_protocols}
PROTOCOLS=${PROTOCOLS:-patient,image,lso-adult-normal,lso-adult,v1-image,lso-pediatric-normal}
RD_PROTOCOLS=${RD_PROTOCOLS:-patient,image,lso-adult-normal,lso-adult}
CXR=${CXR:-.venv/bin/cxr}
PY=${PY:-.venv/bin/python}

run() {
    local name=$1 protocols=$2; shift 2
    local t0=$SECONDS
    $CXR protocols --data "$DATA" --out "$OUT/$name" --protocols "$protocols" --workers 2 "$@" > "$OUT/$name.log" 2>&1
    echo "$name: $((SECONDS - t0)) s" >> "$OUT/wall.txt"
}
mkdir -p "$OUT"
run tf_efficientnet_lite0 "$PROTOCOLS" --model tf_efficientnet_lite0 --input-size 112 --finetune head \
    --cache-features --epochs 30 --patience 5 --batch-size 64 &
run resdense_small "$RD_PROTOCOLS" --model resdense_small --pretrained none --input-size 96 --epochs 2 \
    --warmup-epochs 0.5 --lr 0.002 --batch-size 32 --max-minutes 5 &
wait
# One table of both models from every finished protocol's result.json (a cut-short run still
# gives the rows it finished): bench/results/protocols.json (docs/results/protocols.md: bench/render_results.py).
"$PY" - "$OUT" bench/results/protocols "tf_efficientnet_lite0:$PROTOCOLS" "resdense_small:$RD_PROTOCOLS" <<'PYEOF'
import json, sys
from pathlib import Path
from cxrkit import RESEARCH_NOTICE
sys.path.insert(0, "bench")
from _common import save_result
from cxrkit.workflows.protocols import add_gaps, to_markdown
out, dest = Path(sys.argv[1]), Path(sys.argv[2])
tables = {}
for spec in sys.argv[3:]:
    model, protocols = spec.split(":")
    rows = [json.loads(f.read_text()) for f in (out / model / p / "result.json" for p in protocols.split(","))
            if f.is_file()]
    if rows:
        tables[model] = {"data": rows[0]["config"]["data"], "external": None, "rows": add_gaps(rows)}
wall = (out / "wall.txt").read_text() if (out / "wall.txt").is_file() else ""
save_result(dest, {"command": "nice -n 10 bench/protocols.sh", "notice": RESEARCH_NOTICE, "wall": wall, "models": tables},
            title="The same model under each evaluation protocol",
            markdown="\n".join(f"## {m}\n\n{to_markdown(t)}" for m, t in tables.items()))
PYEOF
