# Sourced by the recipe queues (robust_recipes.sh, external_recipes.sh): one queue-file runner.
# run_queue QUEUE OUT STEP: for each line "NAME FLAGS..." of QUEUE (blank lines and # comments
# skipped; the file is reread after every step, so lines may be appended while a queue runs),
# calls `STEP NAME FLAGS`, then appends "NAME rc=STATUS SECONDS s" to OUT/wall.txt. Each name
# runs once per call.
run_queue() {
    local queue=$1 out=$2 step=$3 done_list=" " next nflags name flags t0 rc
    mkdir -p "$out"
    while true; do
        next=""
        while read -r name flags; do
            [[ -z "$name" || "$name" == \#* || "$done_list" == *" $name "* ]] && continue
            next="$name"; nflags="$flags"; break
        done < "$queue"
        [[ -z "$next" ]] && break
        t0=$SECONDS
        "$step" "$next" "$nflags"
        rc=$?
        echo "$next rc=$rc $((SECONDS - t0)) s" >> "$out/wall.txt"
        done_list="$done_list$next "
    done
}
