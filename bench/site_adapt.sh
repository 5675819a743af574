#!/usr/bin/env bash
# Issue 34's measurements on ../shared/data/site, in patient folds within it (3 folds: a fit of
# ~1,000 films x 4 epochs takes minutes on 2 cores). Three adaptations of the default model:
#   replay: fine-tune on site films + replayed training films (the learning curve, and the
#           model adapted on every site film, scored on the base's val and test splits)
#   anchor: no replay, L2-SP toward the base weights instead
#   both:   replay + L2-SP
# Chosen on the held-out site folds and on the base's val split, never on its test split.
# Usage: bench/site_adapt.sh [BASE_RUN]   (default runs/default: cxr train --data cxr nih)
set -u
cd "$(dirname "$0")/.."
BASE=${1:-runs/default}
SITE=${SITE:-../shared/data/site}
PY=.venv/bin/python
run() {  # NAME ARGS...: one site report into runs/site/NAME and bench/results/site_adapt_NAME.json
  local name=$1; shift
  [ -f "bench/results/site_adapt_$name.json" ] && [ -z "${REDO:-}" ] && return 0
  rm -rf "runs/site/$name"
  nice -n 5 $PY bench/site_adapt.py "$BASE" --site "$SITE" --out "runs/site/$name" --folds 3 \
    --result "bench/results/site_adapt_$name" "$@"
}
run replay --shots 0 5 10 25 all --figure docs/images/site_learning_curve.png \
  --title "Adapting the default model to a new site: replay (learning curve)"
run anchor --shots 0 all --replay 0 --anchor 0.1 --title "Adapting to a new site: L2-SP toward the base, no replay"
run both --shots 0 all --anchor 0.1 --title "Adapting to a new site: replay + L2-SP"
run repeats --shots 0 all --site-repeats 3 --title "Adapting to a new site: replay, each site film 3 times per epoch"
# nobact: replay with the site's bacterial films left out (not mapped to the base's `pneumonia`
# output); folds only: its cost on the base's val and test splits was measured with cxr adapt +
# cxr evaluate --split val / test (the session note has the numbers)
run nobact --shots 0 all --no-final --map bacterial_pneumonia=drop \
  --title "Adapting to a new site: replay, bacterial films left out (folds only)"
$PY bench/site_adapt_choice.py replay anchor both repeats
