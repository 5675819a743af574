#!/usr/bin/env bash
# Issue 34's measurements on ../shared/data/site, in patient folds within it (3 folds: a fit of
# ~600 films x 4 epochs takes about 2 minutes on 2 cores). Every variant adapts the default model;
# each line pins its settings, so a change of cxr adapt's defaults does not change what it re-runs.
# Chosen on the held-out site folds and on the base's val split, never on its test split.
# Usage: bench/site_adapt.sh [BASE_RUN]   (default runs/default: cxr train --data cxr nih)
#        REDO=1 bench/site_adapt.sh        (re-run variants whose results file exists)
set -u
cd "$(dirname "$0")/.."
BASE=${1:-runs/default}
SITE=${SITE:-../shared/data/site}
PY=.venv/bin/python
run() {  # NAME ARGS...: one site report into runs/site/NAME and bench/results/site_adapt_NAME.json
  local name=$1; shift
  [ -f "bench/results/site_adapt_$name.json" ] && [ -z "${REDO:-}" ] && return 0
  rm -rf "runs/site/$name"
  nice -n 5 $PY bench/site_adapt.py "$BASE" --site "$SITE" --out "runs/site/$name" \
    --result "bench/results/site_adapt_$name" "$@"
}
D=(--lr 1e-4 --site-weights labels --map bacterial_pneumonia=drop)  # cxr adapt's defaults, pinned
# The first round (lr 1e-4, class weights, bacterial films trained as the base's `pneumonia`):
#   replay: fine-tune on site films + replayed training films; anchor: L2-SP, no replay; both;
#   repeats: each site film 3 times per epoch
R1=(--folds 3 --lr 1e-4 --site-weights labels --map bacterial_pneumonia=pneumonia)
run replay "${R1[@]}" --shots 0 5 10 25 all \
  --title "Adapting the default model to a new site: replay (learning curve)"
run anchor "${R1[@]}" --shots 0 all --replay 0 --anchor 0.1 --title "Adapting to a new site: L2-SP toward the base, no replay"
run both "${R1[@]}" --shots 0 all --anchor 0.1 --title "Adapting to a new site: replay + L2-SP"
run repeats "${R1[@]}" --shots 0 all --site-repeats 3 --title "Adapting to a new site: replay, each site film 3 times per epoch"
# The second round, folds only (the same 3 folds, seed 0): bacterial films left out, then
# epochs, lr, site repeats and site-film weights
R2=(--folds 3 --shots 0 all --no-final --map bacterial_pneumonia=drop)
run nobact "${R2[@]}" --lr 1e-4 --site-weights labels \
  --title "Adapting to a new site: replay, bacterial films left out (folds only)"
run nb_e8 "${R2[@]}" --lr 1e-4 --site-weights labels --epochs 8 --title "bacterial films left out, 8 epochs"
run nb_lr3 "${R2[@]}" --lr 3e-4 --site-weights labels --title "bacterial films left out, lr 3e-4"
run nb_rep2 "${R2[@]}" --lr 1e-4 --site-weights labels --site-repeats 2 \
  --title "bacterial films left out, site films x2"
run nb_films "${R2[@]}" --lr 1e-4 --site-weights films --title "bacterial films left out, site films alike"
run nb_lr3_films "${R2[@]}" --lr 3e-4 --site-weights films \
  --title "bacterial films left out, lr 3e-4, site films alike"
run nb_lr5_films "${R2[@]}" --lr 5e-4 --site-weights films \
  --title "bacterial films left out, lr 5e-4, site films alike"
run nb_lr3_films_e6 "${R2[@]}" --lr 3e-4 --site-weights films --epochs 6 \
  --title "bacterial films left out, lr 3e-4, 6 epochs, site films alike"
run lr3_films_aux --folds 3 --shots 0 all --no-final --lr 3e-4 --site-weights films \
  --map bacterial_pneumonia=pneumonia --title "lr 3e-4, site films alike, bacterial films train pneumonia"
# lr 3e-4 with site films alike (best on the seed-0 folds): its learning curve and cost, then the
# same on other folds and seed, and in 5 folds
L3=(--lr 3e-4 --site-weights films --map bacterial_pneumonia=drop)
run lr3_films "${L3[@]}" --folds 3 --shots 0 5 10 25 all \
  --title "Adapting to a new site: lr 3e-4, site films alike, bacterial films left out (learning curve; not the default)"
run lr3_films_seed1 "${L3[@]}" --folds 3 --seed 1 --shots 0 all --no-final \
  --title "lr 3e-4, site films alike, bacterial films left out: other folds and seed (seed 1)"
run lr3_films_5folds "${L3[@]}" --folds 5 --shots 0 all --no-final \
  --title "lr 3e-4, site films alike, bacterial films left out: 5 folds (each fit sees 4/5 of the site)"
# The same check for lr 1e-4 with class weights, bacterial films left out and trained as pneumonia
run nobact_seed1 "${D[@]}" --folds 3 --no-final --seed 1 --shots 0 25 all \
  --title "bacterial films left out, lr 1e-4, class weights: other folds and seed (seed 1)"
run replay_seed1 "${R1[@]}" --no-final --seed 1 --shots 0 25 all \
  --title "The first default (replay, lr 1e-4, bacterial films train pneumonia): other folds and seed (seed 1)"
run nobact_5folds "${D[@]}" --folds 5 --no-final --shots 0 all \
  --title "cxr adapt's defaults in 5 folds (each fit sees 4/5 of the site)"
# The chosen adaptation, cxr adapt's defaults (lr 1e-4, class weights, bacterial films left out):
# its learning curve and its cost on the base's own splits
run default "${D[@]}" --folds 3 --shots 0 5 10 25 all \
  --figure docs/images/site_learning_curve.png \
  --title "Adapting the default model to a new site: cxr adapt's defaults (learning curve)"
$PY bench/site_adapt_choice.py replay anchor both repeats nobact nb_e8 nb_lr3 nb_rep2 nb_films nb_lr3_films \
  nb_lr5_films nb_lr3_films_e6 lr3_films_aux lr3_films lr3_films_seed1 lr3_films_5folds nobact_seed1 replay_seed1 \
  nobact_5folds default
# The training seed alone on the same folds (seed 0), and ensembles of the adapted seeds (cxr adapt's
# defaults of e66e40a, recorded in the results file; bacterial films left out by default)
if [ ! -f bench/results/site_adapt_seeds.json ] || [ -n "${REDO:-}" ]; then
  rm -rf runs/site/seeds
  nice -n 5 $PY bench/site_adapt_seeds.py "$BASE" --site "$SITE" --out runs/site/seeds --folds 3 --fold-seed 0 \
    --seeds 0 1 2
fi
