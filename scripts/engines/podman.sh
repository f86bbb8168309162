# shellcheck shell=bash
# podman.sh: podman (4.3 in the bookworm lane, 5.8 in the sid lane; no daemon: conmon watches
# each container) with `--runtime PATH`, its storage and configuration in the work folder, and
# for its default network the CNI plugins (podman 4) or netavark (podman 5). Sourced by inside.sh.

podman_start() {
    local dir="$work/podman"
    mkdir -p "$dir/cni"
    # The hard limit on open files here is 20000 and berth, like runc, cannot raise it (no
    # CAP_SYS_RESOURCE): podman's default rlimits (nofile 1048576) would fail every container.
    # conmon passes --log and --log-format json only to runtimes named in runtime_supports_json.
    # podman 4 networks through the CNI plugins; podman 5 has only netavark.
    local network="network_backend = \"cni\"
network_config_dir = \"$dir/cni\"
cni_plugin_dirs = [\"/usr/lib/cni\"]"
    if [[ $lane == sid ]]; then
        network="network_backend = \"netavark\"
network_config_dir = \"$dir/netavark\""
    fi
    cat >"$dir/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$dir/events.log"
runtime_supports_json = ["runc", "crun", "berth"]
tmp_dir = "$dir/tmp"
volume_path = "$dir/volumes"
[network]
$network
CONF
    cat >"$dir/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$dir/root"
runroot = "$dir/run"
CONF
    export CONTAINERS_CONF="$dir/containers.conf" CONTAINERS_STORAGE_CONF="$dir/storage.conf"
    # podman 5 warns on every command of a cgroup v1 host (this one is hybrid).
    export PODMAN_IGNORE_CGROUPSV1_WARNING=1
    export CONTAINERS_REGISTRIES_CONF=/dev/null
    unset DOCKER_CONFIG # podman reads it for registry logins
    podman import --quiet --change 'CMD ["sh"]' "$work/images/rootfs.tar" "$image" >/dev/null
}

podman_steps() {
    local run='podman --runtime $RUNTIME run'
    step "run on the default network" 0 'inet 10\.88\.[0-9.]+/16' \
        "$run --rm \$IMAGE sh -c 'echo exit soon; ip addr; ip route; exit 5'; echo status \$?"
    step "run --network host (cni-podman0 exists by now)" 0 '^host0:$' "$run --rm --network host \$IMAGE sh -c 'ip -o link | cut -d\" \" -f2'"
    step "inspect's NetworkSettings on the CNI network, in host mode and in a joined namespace" 0 \
        '^joined SandboxKey$' \
        "record_network_settings \"$run\" podman cni '-p 8080:80' &&
         record_network_settings \"$run\" podman host '--network host' &&
         ip netns add engines-joined && trap 'ip netns del engines-joined' EXIT &&
         record_network_settings \"$run\" podman joined '--network ns:/run/netns/engines-joined'"
    step "run --detach" 0 '' "$run --detach --name box \$IMAGE sh -c 'sleep 1000 & exec helper pause' >/dev/null"
    step "inspect" 0 '^running 0 16 10\.88\.0\.1 10\.88\.' \
        "podman inspect -f '{{.State.Status}} {{.State.ExitCode}} {{.NetworkSettings.IPPrefixLen}} {{.NetworkSettings.Gateway}} {{.NetworkSettings.IPAddress}} {{.NetworkSettings.MacAddress}}' box"
    step --needs exec "exec -it" 0 '^true$' "on_tty podman --runtime \$RUNTIME exec -it box helper isatty"
    step --needs pause "pause" 0 '^paused$' "podman --runtime \$RUNTIME pause box >/dev/null && podman inspect -f '{{.State.Status}}' box"
    step --needs resume "unpause" 0 '^running$' "podman --runtime \$RUNTIME unpause box >/dev/null && podman inspect -f '{{.State.Status}}' box"
    step "stop" 0 '^exited 0$' "podman --runtime \$RUNTIME stop --time 5 box >/dev/null && podman inspect -f '{{.State.Status}} {{.State.ExitCode}}' box"
    step "start again" 0 '^running$' "podman --runtime \$RUNTIME start box >/dev/null && podman inspect -f '{{.State.Status}}' box"
    # podman 5 may still say `stopped` for a moment after `wait` returns: wait for `exited`.
    step "kill" 0 '^exited 137$' "podman --runtime \$RUNTIME kill box >/dev/null && podman wait box >/dev/null; wait_for '^exited ' podman inspect -f '{{.State.Status}} {{.State.ExitCode}}' box"
    step "rm" 0 '^box$' "podman rm box"
    [[ $lane == sid ]] || return 0
    # Checkpoint and restore (criu 4 in the sid root), in place and through an archive.
    local pr='podman --runtime $RUNTIME'
    step "run a counter" 0 '' "$run --detach --name counter \$IMAGE sh -c \"\$COUNTER\" >/dev/null"
    step "container checkpoint" 0 '^exited$' \
        "count_reaches 3 podman exec counter cat /count >\$TMPDIR/counter.before &&
         $pr container checkpoint counter >/dev/null && podman inspect -f '{{.State.Status}}' counter"
    step "container restore: it counts on" 0 '^counts on from where it was$' \
        "$pr container restore counter >/dev/null && podman inspect -f '{{.State.Status}}' counter &&
         counts_on_from \$(cat \$TMPDIR/counter.before) podman exec counter cat /count"
    step "container checkpoint --export" 0 '^exited$' \
        "count_reaches 1 podman exec counter cat /count >\$TMPDIR/counter.before &&
         $pr container checkpoint --export \$TMPDIR/counter-\$RT.tar.gz counter >/dev/null &&
         podman inspect -f '{{.State.Status}}' counter"
    step "rm, then container restore --import: it counts on" 0 '^counts on from where it was$' \
        "podman rm counter >/dev/null && $pr container restore --import \$TMPDIR/counter-\$RT.tar.gz >/dev/null &&
         podman inspect -f '{{.State.Status}}' counter &&
         counts_on_from \$(cat \$TMPDIR/counter.before) podman exec counter cat /count"
    step "rm the restored container" 0 '^counter$' "podman rm --force counter"
}
