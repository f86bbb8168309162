# shellcheck shell=bash
# outside.sh: the part of engine-tests that runs on the real host. It installs what is missing,
# builds berth and the root filesystem, makes the image files, remembers how the host looks,
# runs inside.sh in a throwaway network and mount namespace, and then checks that nothing of the
# engines is left: processes, network links, iptables chains, cgroups, mounts. Sourced by
# scripts/engine-tests.

all_engines=(containerd docker podman podman-rootless)
# The sid lane runs berth's own checkpoint tests as well (they need criu 4).
sid_engines=(containerd docker podman checkpoint)

install_engines() {
    # The install helper keeps the packages' scripts from starting containerd and dockerd on the
    # real host network (docker0, iptables rules) while they install.
    "$repo/scripts/install" --set engines || die "cannot install the engines"
}

# What the sid lane needs on the host itself: the image tools, the snapshot's tools, mmdebstrap.
install_host_tools() {
    "$repo/scripts/install" --set sid || die "cannot install the sid lane's tools"
}

# What the host looks like, to compare after the run: links, iptables chains, cgroup dirs.
host_snapshot() {
    ip -o link show | awk -F': ' '{print "link " $2}' | sed 's/@.*//'
    iptables-save 2>/dev/null | awk '/^\*/{t=$1} /^:/{print "iptables " t " " $1}'
    local dir
    for dir in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
        find "$dir" -mindepth 1 -maxdepth 1 -type d -printf 'cgroup %p\n' 2>/dev/null
    done
}

# The image files: a root filesystem tarball (docker import, podman import) and an OCI layout
# made with umoci (ctr images import).
make_images() {
    local rootfs=$1
    tar -C "$rootfs" -cf "$work/images/rootfs.tar" .
    local layout="$work/images/oci"
    umoci init --layout "$layout"
    umoci new --image "$layout:latest"
    umoci insert --image "$layout:latest" "$rootfs" /
    umoci config --image "$layout:latest" --config.cmd=sh --config.workingdir=/ \
        --config.env=PATH=/usr/sbin:/usr/bin:/sbin:/bin
    tar -C "$layout" -cf "$work/images/oci.tar" .
}

outside_main() {
    local engines=() name lane=bookworm
    if [[ ${1:-} == --sid ]]; then
        lane=sid
        shift
    fi
    local known=("${all_engines[@]}")
    [[ $lane == sid ]] && known=("${sid_engines[@]}")
    for name in "$@"; do
        [[ " ${known[*]} " == *" $name "* ]] || die "unknown engine $name (known: ${known[*]})"
        engines+=("$name")
    done
    ((${#engines[@]})) || engines=("${known[@]}")

    local started=$SECONDS
    local sid_root=''
    if [[ $lane == sid ]]; then
        # The engines are sid's, inside its root; the host only makes the images and checks.
        install_host_tools
        sid_root=$("$repo/scripts/engines/sid-root")
    else
        install_engines
    fi
    export BERTH_BIN=${BERTH_BIN:-$repo/target/debug/berth}
    if [[ ! -x $BERTH_BIN ]]; then
        (cd "$repo" && cargo build --locked --bin berth)
    fi
    # berth's own containerd shim (runtime type io.containerd.berth.v2), found on containerd's PATH.
    export SHIM_BIN=${SHIM_BIN:-$repo/target/debug/containerd-shim-berth-v2}
    if [[ ! -x $SHIM_BIN ]]; then
        (cd "$repo" && cargo build --locked -p containerd-shim-berth-v2)
    fi
    if [[ " ${engines[*]} " == *" checkpoint "* ]]; then
        CHECKPOINT_TESTS=$(cd "$repo" && cargo test --locked -p runtime-tests --test checkpoint --no-run --message-format=json 2>/dev/null |
            jq -r 'select(.reason == "compiler-artifact" and .target.name == "checkpoint" and .profile.test) | .executable')
        export CHECKPOINT_TESTS
    fi
    local rootfs
    rootfs=$("$repo/rootfs-fixtures/make-rootfs")

    exec 9>"$work.lock"
    flock -n 9 || die "another engine-tests run holds $work.lock"
    if grep -qF " $work" /proc/self/mountinfo; then
        die "something is mounted under $work: unmount it first"
    fi
    rm -rf "$work"
    mkdir -p "$work/images" "$work/out"
    make_images "$rootfs" >"$work/images/umoci.log" 2>&1 || die "making the images failed: $(tail -n 3 "$work/images/umoci.log")"
    local before
    before=$(host_snapshot | sort)

    # Folders engines write to whatever their configuration says (the CNI plugins' state,
    # podman's blob cache): the inside mounts a tmpfs on each, so they need to exist here.
    local dir made_dirs=()
    for dir in "${private_dirs[@]}"; do
        if [[ ! -d $dir ]]; then
            mkdir -p "$dir"
            made_dirs+=("$dir")
        fi
    done
    local status=0 inner i
    local inside=("$repo/scripts/engine-tests" --inside "${engines[@]}")
    if [[ $lane == sid ]]; then
        # Sid as the host: the same steps, run by sid's engines (see enter-sid-root).
        inside=("$repo/scripts/engines/enter-sid-root" --bind "$work" -- \
            "$repo/scripts/engine-tests" --inside --sid "${engines[@]}")
    fi
    ROOTFS=$rootfs ENGINE_TESTS_LANE=$lane unshare --net --mount --propagation private -- "${inside[@]}" &
    inner=$!
    # Hold the inside's mount namespace open (fd 8) until the check below: a namespace that is
    # gone can see its inode number reused by someone else's, whose processes are not ours.
    for ((i = 0; i < 500; i++)); do
        [[ -s $work/mnt-ns ]] && break
        kill -0 "$inner" 2>/dev/null || break
        sleep 0.01
    done
    if [[ -s $work/mnt-ns ]] && exec 8<"/proc/$inner/ns/mnt" &&
        [[ $(readlink /proc/self/fd/8) != "$(cat "$work/mnt-ns")" ]]; then
        exec 8<&-
    fi
    wait "$inner" || status=$?
    for dir in "${made_dirs[@]}"; do
        rmdir "$dir" || echo "engine-tests: LEFT files in $dir"
    done

    local summary
    summary=$(cat "$work/summary" 2>/dev/null || echo "engine-tests: the run stopped before its summary")
    local leftovers=0
    check_host_clean "$before" || leftovers=1
    exec 8<&- 2>/dev/null || true
    ((leftovers)) && status=1
    if ((status == 0)) && [[ ${ENGINE_TESTS_KEEP:-0} != 1 ]]; then
        rm -rf "$work"
    else
        echo "engine-tests: outputs kept in $work/out, runtime calls in $work/calls"
    fi
    rm -f "$work.lock"
    echo "engine-tests: took $((SECONDS - started)) s"
    # The counts come last, where CI looks for them.
    ((leftovers)) && echo "engine-tests: FAILED to leave the host clean (LEFT above)"
    echo "$summary"
    return "$status"
}

# Everything the inside made must be gone with its namespaces, except the cgroup parents the
# engines make (/docker, /libpod_parent, /berth-engines …), which they never remove: those are
# removed here, and any that still holds a process is a failure.
check_host_clean() {
    local before=$1 clean=0 line
    local ns_id
    ns_id=$(readlink /proc/self/fd/8 2>/dev/null || true)
    if [[ $ns_id == mnt:* ]]; then
        local pid
        for pid in /proc/[0-9]*; do
        pid=${pid#/proc/}
            if [[ $(readlink "/proc/$pid/ns/mnt" 2>/dev/null) == "$ns_id" ]]; then
                echo "engine-tests: LEFT RUNNING: pid $pid ($(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)): killing it"
                kill -KILL "$pid" 2>/dev/null || true
                clean=1
            fi
        done
    fi
    if grep -F " $work" /proc/self/mountinfo; then
        echo "engine-tests: LEFT MOUNTED under $work (above)"
        clean=1
    fi
    local after
    after=$(host_snapshot | sort)
    while read -r line; do
        case $line in
        cgroup\ */docker | cgroup\ */libpod_parent | cgroup\ */berth-engines)
            local dir=${line#cgroup }
            # Depth first: the containers' folders, then the engines' parents; for up to 2 s, as
            # processes killed a moment ago (conmon, shims) may not have left their cgroup yet.
            local tries
            for ((tries = 0; tries < 100; tries++)); do
                find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null
                [[ -d $dir ]] || break
                sleep 0.02
            done
            if [[ -d $dir ]]; then
                echo "engine-tests: LEFT a busy cgroup $dir ($(cat "$dir/cgroup.procs" 2>/dev/null | wc -l) processes)"
                clean=1
            fi
            ;;
        cgroup\ * | '') ;; # not the engines': other tests may be running
        *)
            echo "engine-tests: LEFT on the host: $line"
            clean=1
            ;;
        esac
    done < <(comm -13 <(echo "$before") <(echo "$after"))
    return "$clean"
}
