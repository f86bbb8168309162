# shellcheck shell=bash
# steps.sh: how engine-tests runs a step, checks it, and compares runc with berth.
#
#   step [--needs SUBCOMMAND]... [--code-only] NAME WANT PATTERN COMMAND
#
# runs COMMAND (a bash command line, 120 s at most, standard input closed) and records what a
# person would see: its output (standard output and error together) and its exit code. The step
# fails when the exit code is not WANT or the output has no line matching the extended regular
# expression PATTERN (empty: anything). Afterwards compare_runtimes requires berth's output to
# equal runc's once ids, addresses, MAC addresses, interface indexes and veth names are masked
# (`--code-only`: only the exit codes are compared, for error messages, which each runtime words
# its own way). A step that needs a subcommand this berth does not have yet is skipped, and the
# skip is reported at the end. COMMAND sees RUNTIME (the runtime wrapper for this engine), RT
# (runc, crun or berth), IMAGE, ROOTFS and the functions exported below. In the sid lane crun
# runs every step too, as a second reference: where it does not pass, the end says so, but
# only berth's results against runc's count.

declare -a failures=() skips=() crun_notes=()
declare -i passed=0

# Masks what differs between any two runs: ids, addresses, interface numbers.
normalize() {
    perl -pe '
        s/\b[0-9a-f]{64}\b/<id>/g;
        s/\b[0-9a-f]{12}\b/<id>/g;
        s{\b((\d+)\.(\d+)\.(\d+)\.(\d+))\b}{
            ($1 eq "127.0.0.1" || $1 eq "0.0.0.0" || $5 == 1 || $5 == 255) ? $1 : "<ip>"
        }ge;
        s{\b((?:[0-9a-f]{2}:){5}[0-9a-f]{2})\b}{
            ($1 eq "00:00:00:00:00:00" || $1 eq "ff:ff:ff:ff:ff:ff") ? $1 : "<mac>"
        }ge;
        s/\bfe80::[0-9a-f:]+/<ip6>/g;
        s/^\d+: /N: /;
        s/\@if\d+/\@ifN/g;
        s/\bveth[0-9a-f]+/vethX/g;
        s/\btime="[^"]*"/time="<time>"/g;
    '
}

# Polls COMMAND until its output matches PATTERN (10 s), then prints that output.
wait_for() {
    local pattern=$1 out i
    shift
    for ((i = 0; i < 200; i++)); do
        out=$("$@" 2>&1) || true
        if grep -Eq -- "$pattern" <<<"$out"; then
            echo "$out"
            return 0
        fi
        sleep 0.05
    done
    echo "$out"
    echo "(waited 10 s for /$pattern/)"
    return 1
}
# Runs a command on a terminal (script(1) makes one), as `-t` and `-it` need. Its standard input
# is closed, which script passes on as a character the engines' terminal echoes as `^@`.
on_tty() {
    (set -o pipefail; script -qefc "$*" /dev/null </dev/null | tr -d '\r' | sed 's/^^@//')
}
# The counter the checkpoint steps run: it counts once a second into /count.
export COUNTER='i=0; while true; do i=$((i+1)); echo $i >/count; sleep 1; done'
# Waits until COMMAND (which prints the counter) shows at least N, then prints that value.
count_reaches() {
    local n=$1 value i
    shift
    for ((i = 0; i < 200; i++)); do
        value=$("$@" 2>/dev/null) || true
        if [[ $value =~ ^[0-9]+$ ]] && ((value >= n)); then
            echo "$value"
            return 0
        fi
        sleep 0.05
    done
    echo "the counter did not reach $n in 10 s (last: ${value:-nothing})" >&2
    return 1
}
# After a restore: the counter (COMMAND prints it) must go on from BEFORE, not start again.
# Prints one line that is the same whatever the runtime and the timing.
counts_on_from() {
    local before=$1 value
    shift
    value=$(count_reaches "$((before + 1))" "$@") || {
        echo "the counter did not go on from $before"
        return 1
    }
    echo "counts on from where it was"
}
# Runs a detached container with RUN (an engine's `run` command) and FLAGS, keeps what
# `ENGINE inspect` says of its NetworkSettings in $work/recorded/RT/ENGINE-NAME.json, removes it,
# and prints the key paths of that object, one a line after NAME. The recordings are where the
# shape of `berth inspect` comes from (runtime-tests/tests/data/inspect/).
record_network_settings() {
    local run=$1 engine=$2 name=$3 flags=$4 file
    file="$RECORD_DIR/$RT/$engine-$name.json"
    mkdir -p "${file%/*}"
    # shellcheck disable=SC2086 # the flags are split on purpose
    $run --detach --name "net-$name" $flags "$IMAGE" helper pause >/dev/null || return
    "$engine" inspect "net-$name" | jq '.[0].NetworkSettings' >"$file"
    "$engine" rm --force "net-$name" >/dev/null
    jq -r --arg name "$name" '[paths | map(tostring) | join(".")] | .[] | "\($name) \(.)"' "$file"
}
export -f wait_for on_tty record_network_settings count_reaches counts_on_from

count_lines() {
    if [[ -f $1 ]]; then wc -l <"$1"; else echo 0; fi
}

berth_has() {
    "$BERTH_BIN" "$1" --help >/dev/null 2>&1
}

# The last error the runtime logged since line FROM of its errors file.
last_error() {
    local file="$work/calls/$1/$2/errors" from=$3
    local line
    line=$(tail -n +"$((from + 1))" "$file" 2>/dev/null | tail -n 1)
    echo "${line#* }"
}

run_steps() {
    local engine=$1 rt=$2 steps=$3
    step_engine=$engine step_rt=$rt
    declare -gi step_no=0
    step_dir="$work/out/$engine/$rt"
    mkdir -p "$step_dir"
    export RUNTIME="$work/rt/$engine/$rt" RT=$rt IMAGE=$image ROOTFS RECORD_DIR="$work/recorded"
    "$steps"
}

step() {
    local needs=() code_only=0
    while [[ $1 == --* ]]; do
        case $1 in
        --needs) needs+=("$2"); shift 2 ;;
        --code-only) code_only=1; shift ;;
        esac
    done
    local name=$1 want=$2 pattern=$3 command=$4
    step_no+=1
    local n
    n=$(printf '%02d' "$step_no")
    local out="$step_dir/$n"
    echo "$name" >"$out.name"
    local sub
    for sub in "${needs[@]}"; do
        if ! berth_has "$sub"; then
            echo "berth has no '$sub' command yet" >"$out.skip"
            if [[ $step_rt != runc ]]; then
                printf '  %-8s %-6s %s: SKIP (berth has no %s command yet)\n' "$step_engine" "$step_rt" "$name" "$sub"
                return 0
            fi
        fi
    done
    ((code_only)) && touch "$out.code-only"
    local errors_before
    errors_before=$(count_lines "$work/calls/$step_engine/$step_rt/errors")
    local code=0 t0
    t0=$(date +%s%N)
    timeout 120 bash -c "$command" >"$out.raw" 2>&1 </dev/null || code=$?
    local ms=$((($(date +%s%N) - t0) / 1000000))
    echo "$ms" >"$out.ms"
    { normalize <"$out.raw"; echo "exit $code"; } >"$out.txt"
    local problem=''
    if [[ $code != "$want" ]]; then
        problem="exit $code, wanted $want"
    elif [[ -n $pattern ]] && ! grep -Eq -- "$pattern" "$out.raw"; then
        problem="no line matches /$pattern/"
    fi
    if [[ -z $problem ]]; then
        printf '  %-8s %-6s %s: ok (%d ms)\n' "$step_engine" "$step_rt" "$name" "$ms"
        return 0
    fi
    touch "$out.failed"
    local error
    error=$(last_error "$step_engine" "$step_rt" "$errors_before")
    if [[ $step_rt == crun ]]; then
        printf '  %-8s %-6s %s: differs (a reference; not counted): %s\n' "$step_engine" "$step_rt" "$name" "$problem"
        crun_notes+=("$step_engine, step '$name', on crun: $problem; its last logged error: ${error:-none}")
        return 0
    fi
    printf '  %-8s %-6s %s: FAILED: %s\n' "$step_engine" "$step_rt" "$name" "$problem"
    failures+=("$step_engine, step '$name', on $step_rt: $problem
    command: $command
    output: $(head -c 1500 "$out.raw" | sed '2,$s/^/            /')
    $step_rt's last logged error: ${error:-none}")
}

# Compares berth's record with runc's (and, under containerd, that of berth's shim);
# a lane named *-only holds steps run on one runtime alone, which pass if they did not fail.
compare_runtimes() {
    local engine=$1 base="$work/out/$engine" lane
    for lane in "$base"/*/; do
        lane=$(basename "$lane")
        case $lane in
        berth | shim) compare_lane "$engine" "$lane" ;;
        *-only) count_solo "$engine" "$lane" ;;
        *) ;; # runc, and the other references (crun) that runc stands for
        esac
    done
}

count_solo() {
    local engine=$1 lane=$2 name_file n
    for name_file in "$work/out/$engine/$lane"/*.name; do
        n=${name_file%.name}
        [[ -e $n.failed || -e $n.skip ]] || passed+=1
    done
}

compare_lane() {
    local engine=$1 rt=$2 base="$work/out/$1" name_file n name
    local -i both=0 runc_ms=0 rt_ms=0
    for name_file in "$base"/runc/*.name; do
        n=$(basename "$name_file" .name)
        name=$(cat "$name_file")
        if [[ -e $base/$rt/$n.skip ]]; then
            skips+=("$engine, step '$name' ($rt): $(cat "$base/$rt/$n.skip")")
            continue
        fi
        # A step this lane does not run (berth's shim takes no checkpoints).
        [[ -e $base/$rt/$n.name ]] || continue
        both+=1
        runc_ms+=$(cat "$base/runc/$n.ms")
        rt_ms+=$(cat "$base/$rt/$n.ms")
        if [[ -e $base/runc/$n.failed ]]; then
            continue # counted already: the test itself is broken on this machine
        fi
        [[ -e $base/$rt/$n.failed ]] && continue
        local runc_view rt_view
        if [[ -e $base/runc/$n.code-only ]]; then
            runc_view=$(tail -n 1 "$base/runc/$n.txt")
            rt_view=$(tail -n 1 "$base/$rt/$n.txt")
        else
            runc_view=$(cat "$base/runc/$n.txt")
            rt_view=$(cat "$base/$rt/$n.txt")
        fi
        if [[ $runc_view == "$rt_view" ]]; then
            passed+=1
            continue
        fi
        failures+=("$engine, step '$name': $rt shows something else than runc (- runc, + $rt):
$(diff -u <(echo "$runc_view") <(echo "$rt_view") | tail -n +3 | sed 's/^/    /' || true)")
    done
    # Wall time of whole engine commands: the runtime is a small part of it.
    echo "engine-tests: $engine: the $both steps run on both took $runc_ms ms on runc, $rt_ms ms on $rt"
}

report() {
    local item
    echo
    if ((${#skips[@]})); then
        echo "Skipped (berth lacks the command; the step runs once it has it):"
        for item in "${skips[@]}"; do echo "  $item"; done
    fi
    if ((${#crun_notes[@]})); then
        echo "Where crun, the second reference, did not pass (not counted):"
        for item in "${crun_notes[@]}"; do echo "  $item"; done
    fi
    if ((${#failures[@]})); then
        echo "FAILURES:"
        for item in "${failures[@]}"; do echo "  $item"; done
    fi
    echo "engine-tests: $passed passed, ${#failures[@]} failed, ${#skips[@]} skipped" | tee "$work/summary"
    ((${#failures[@]} == 0))
}
