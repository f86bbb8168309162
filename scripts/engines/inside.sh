# shellcheck shell=bash
# inside.sh: the part of engine-tests that runs in the throwaway network and mount namespace
# that plays the host. It makes that "host" (lo up; a link `host0` to recognise it, an empty
# bridge since the dummy driver may be missing; tmpfs over /run and the private_dirs so the
# engines' default paths stay private), starts each engine, runs its steps once on runc and once
# on berth, and compares them. Sourced by engine-tests.

# shellcheck source=scripts/engines/steps.sh
source "$engines_dir/steps.sh"
# shellcheck source=scripts/engines/containerd.sh
source "$engines_dir/containerd.sh"
# shellcheck source=scripts/engines/docker.sh
source "$engines_dir/docker.sh"
# shellcheck source=scripts/engines/podman.sh
source "$engines_dir/podman.sh"
# shellcheck source=scripts/engines/podman-rootless.sh
source "$engines_dir/podman-rootless.sh"
# shellcheck source=scripts/engines/checkpoint.sh
source "$engines_dir/checkpoint.sh"
# shellcheck source=scripts/engines/cgroup-view.sh
source "$engines_dir/cgroup-view.sh"

# The references each step runs on before berth: runc, and in the sid lane crun too (whose own
# failures are reported, not counted: it is a second opinion, not the one berth must match).
lane=${ENGINE_TESTS_LANE:-bookworm}
references=(runc)
[[ $lane == sid ]] && references+=(crun)

image=berth.test/busybox:latest
# pid of each engine daemon we started, by name
declare -A daemons=()

# Starts a daemon in the background and waits for its socket; prints how long that took.
start_daemon() {
    local name=$1 socket=$2 log=$3
    shift 3
    local t0
    t0=$(date +%s%N)
    "$@" >"$log" 2>&1 &
    daemons[$name]=$!
    local i
    for ((i = 0; i < 200; i++)); do
        [[ -S $socket ]] && break
        kill -0 "${daemons[$name]}" 2>/dev/null || die "$name exited at start: $(tail -n 5 "$log")"
        sleep 0.02
    done
    [[ -S $socket ]] || die "$name made no socket $socket in 4 s: $(tail -n 5 "$log")"
    echo "engine-tests: $name is up in $((($(date +%s%N) - t0) / 1000000)) ms (pid ${daemons[$name]})"
}

# Stops a daemon by pid: SIGTERM, then SIGKILL after 10 s.
stop_daemon() {
    local name=$1 pid=${daemons[$1]:-}
    [[ -n $pid ]] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for ((i = 0; i < 500; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.02
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "engine-tests: $name (pid $pid) ignored SIGTERM for 10 s: killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    unset "daemons[$name]"
}

# Everything left in this mount namespace but this script: shims, conmon, docker-proxy,
# containers. Found by namespace, so only processes this run started; killed by pid.
kill_leftovers() {
    local ours pid
    ours=$(readlink /proc/self/ns/mnt)
    for pid in /proc/[0-9]*; do
        pid=${pid#/proc/}
        [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
        [[ $(readlink "/proc/$pid/ns/mnt" 2>/dev/null) == "$ours" ]] || continue
        # This script's own command substitutions (readlink, awk) must live on.
        [[ $(awk '/^PPid:/{print $2}' "/proc/$pid/status" 2>/dev/null) == "$$" ]] && continue
        echo "engine-tests: stopping leftover pid $pid: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-120)"
        kill -KILL "$pid" 2>/dev/null || true
    done
}

inside_cleanup() {
    set +e # clean up all there is; the run's own status stands
    local name
    for name in podman docker containerd; do
        stop_daemon "$name"
    done
    podman-rootless_cleanup
    kill_leftovers
    # The mounts die with this namespace; unmounting first lets the outside remove the folder.
    local target
    grep -F " $work/" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r target; do
        umount -l "$target" 2>/dev/null || true
    done
}

make_host() {
    readlink /proc/self/ns/mnt >"$work/mnt-ns"
    mount -t tmpfs -o mode=755 tmpfs /run
    # The cgroup hierarchies on a tmpfs of this namespace, so that folders engines make for
    # controllers the host has not mounted go with it (see cgroup-view.sh). The sid lane has one
    # from enter-sid-root already, with crun's hidden cgroup.controllers, which a second view
    # would drop.
    if [[ $lane == bookworm && $(stat -f -c %T /sys/fs/cgroup) == tmpfs ]]; then
        mkdir -p "$work/cgroup-view"
        cgroup_view "$work/cgroup-view"
        mount --move "$work/cgroup-view" /sys/fs/cgroup
    fi
    local dir
    for dir in "${private_dirs[@]}"; do
        mkdir -p "$dir"
        mount -t tmpfs -o mode=700 tmpfs "$dir"
    done
    ip link set lo up
    ip link add host0 type bridge
    ip link set host0 up
    export TMPDIR="$work/tmp"
    mkdir -p "$TMPDIR"
    # containerd finds the runtime type io.containerd.berth.v2 as containerd-shim-berth-v2 on its
    # PATH.
    mkdir -p "$work/bin"
    ln -sf "$SHIM_BIN" "$work/bin/containerd-shim-berth-v2"
    export PATH="$work/bin:$PATH"
}

# The wrapper an engine is given as its runtime: capture-runtime with its settings baked in.
# podman names a runtime by its file name, so each is called runc or berth.
make_runtime_wrappers() {
    local engine=$1 rt real
    mkdir -p "$work/rt/$engine"
    for rt in "${references[@]}" berth; do
        real=$([[ $rt == berth ]] && echo "$BERTH_BIN" || command -v "$rt")
        cat >"$work/rt/$engine/$rt" <<EOF
#!/bin/sh
CAPTURE_DIR='$work/calls/$engine/$rt' CAPTURE_RUNTIME='$real' exec '$engines_dir/capture-runtime' "\$@"
EOF
        chmod 755 "$work/rt/$engine/$rt"
    done
}

inside_main() {
    trap inside_cleanup EXIT
    make_host
    local engine rt
    for engine in "$@"; do
        if [[ $engine == checkpoint ]]; then
            checkpoint_run
            continue
        fi
        make_runtime_wrappers "$engine"
        echo "engine-tests: == $engine"
        "${engine}_start"
        # The reference runtimes and berth as the runtime binary; containerd also through
        # berth's own shim, in both lanes, and Docker 28 (sid) through it as a runtimeType.
        local runtimes=("${references[@]}" berth) shim_lanes=0
        [[ $engine == containerd ]] && shim_lanes=1
        if ((shim_lanes)) || [[ $engine == docker && $lane == sid ]]; then
            runtimes+=(shim)
        fi
        for rt in "${runtimes[@]}"; do
            run_steps "$engine" "$rt" "${engine}_steps"
        done
        # Steps of what only a shim does, on berth's shim alone.
        if ((shim_lanes)); then
            run_steps "$engine" shim-only "${engine}_shim_steps"
        fi
        compare_runtimes "$engine"
    done
    report
}
