# Sourced by the recipe queues (robust_recipes.sh, external_recipes.sh): one queue-file reader.
# queue_next QUEUE: sets `next` and `nflags` to the first line "NAME FLAGS..." of QUEUE whose NAME
# is not yet in `done_list` (blank lines and # comments skipped; the file is reread each time,
# so lines may be appended while a queue runs); `next` is empty when none is left.
done_list=" "
queue_next() {
    next=""
    nflags=""
    while read -r name flags; do
        [[ -z "$name" || "$name" == \#* ]] && continue
        [[ "$done_list" == *" $name "* ]] && continue
        next="$name"; nflags="$flags"; break
    done < "$1"
}
