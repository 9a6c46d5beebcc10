# `run NAME CMD…` (sourced by the benchmarks, with $tmp set): times one run of CMD (wall seconds and peak RSS in
# $tmp/NAME.time), keeps its stdout in $tmp/NAME.out and its stderr in $tmp/NAME.err, and stops the benchmark
# with that stderr if it fails.
run() {
    local name=$1
    shift
    echo "running $name..." >&2
    sync
    /usr/bin/time -f '%e %M' -o "$tmp/$name.time" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" ||
        { echo "$name failed:" >&2; cat "$tmp/$name.err" >&2; exit 1; }
}
