# shellcheck shell=bash
# docker.sh: dockerd (20.10 in the bookworm lane, 28.5 in the sid lane) on the shared containerd, with both runtimes added by
# `--add-runtime` and chosen per container by `docker run --runtime`. Its bridge docker0, its
# iptables chains and docker-proxy live in the throwaway namespace. Sourced by inside.sh.

docker_start() {
    containerd_daemon
    # Checkpoints are an experimental feature of dockerd; crun is a second reference in sid.
    local docker_lane_flags=()
    local dir="$work/docker"
    mkdir -p "$dir"
    echo '{}' >"$dir/daemon.json"
    if [[ $lane == sid ]]; then
        docker_lane_flags=(--experimental --add-runtime "crun-ref=$work/rt/docker/crun")
        # berth's own shim as the README configures it: a runtime type, no runtime binary.
        echo '{"runtimes": {"berth-shim": {"runtimeType": "io.containerd.berth.v2"}}}' >"$dir/daemon.json"
    fi
    # Docker reserves the name runc for its own default: runc is added as runc-ref.
    start_daemon docker "$dir/docker.sock" "$dir/dockerd.log" \
        dockerd --config-file "$dir/daemon.json" --data-root "$dir/root" --exec-root "$dir/exec" \
        --pidfile "$dir/dockerd.pid" --host "unix://$dir/docker.sock" \
        --containerd "$work/containerd/containerd.sock" \
        --add-runtime "runc-ref=$work/rt/docker/runc" --add-runtime "berth=$work/rt/docker/berth" \
        "${docker_lane_flags[@]}" --exec-opt native.cgroupdriver=cgroupfs
    export DOCKER_HOST="unix://$dir/docker.sock" DOCKER_CONFIG="$dir/cli"
    export MOBY_CTR="ctr --address $work/containerd/containerd.sock --namespace moby"
    mkdir -p "$DOCKER_CONFIG"
    echo '{}' >"$DOCKER_CONFIG/config.json"
    docker import --change 'CMD ["sh"]' "$work/images/rootfs.tar" "$image" >/dev/null
}

# `docker checkpoint create` reads the checkpoint out of containerd's content store, and `docker
# start --checkpoint` writes the same tar back in: while containerd's garbage collector has not
# yet removed the first copy, the upload fails with "content sha256:...: already exists" (moby
# issue 42900), on any runtime. That collector runs on a timer that grows with its own run time,
# so under load the copy can outlive the gap between the two steps. A lease removed with --sync
# runs the collection now.
collect_moby_garbage() {
    local lease
    lease=$($MOBY_CTR leases create) && $MOBY_CTR leases rm --sync "$lease" >/dev/null
}
export -f collect_moby_garbage

docker_steps() {
    local dr=$RT
    [[ $RT == runc || $RT == crun ]] && dr=$RT-ref
    [[ $RT == shim ]] && dr=berth-shim
    export DOCKER_RUNTIME=$dr
    local run='docker run --runtime $DOCKER_RUNTIME'
    step "run" 3 '^hello from docker$' "$run --rm \$IMAGE sh -c 'echo hello from docker; exit 3'"
    step "run --network host" 0 '^host0:$' "$run --rm --network host \$IMAGE sh -c 'ip -o link | cut -d\" \" -f2'"
    step "run on the default bridge" 0 'inet 172\.17\.[0-9.]+/16' \
        "$run --rm \$IMAGE sh -c 'ip addr; ip route'"
    step "run -p 8080:80, fetch 127.0.0.1:8080" 0 'Hello from a berth container' \
        "$run --detach --name web -p 8080:80 \$IMAGE httpd -f -p 80 -h /var/www >/dev/null &&
         wait_for berth \$ROOTFS/bin/busybox wget -qO- http://127.0.0.1:8080/ ; docker rm --force web >/dev/null"
    step "seccomp: the default profile is in force" 1 '^EPERM$' \
        "$run --rm \$IMAGE sh -c 'grep ^Seccomp: /proc/self/status; helper try-syscall unshare-user'"
    step "seccomp=unconfined" 0 '^ok$' \
        "$run --rm --security-opt seccomp=unconfined \$IMAGE sh -c 'grep ^Seccomp: /proc/self/status; helper try-syscall unshare-user'"
    step "inspect's NetworkSettings in host, bridge and none mode" 0 '^bridge Networks\.bridge\.IPAddress$' \
        "record_network_settings \"$run\" docker host '--network host' &&
         record_network_settings \"$run\" docker bridge '-p 8080:80' &&
         record_network_settings \"$run\" docker none '--network none'"
    step "run --detach" 0 '' "$run --detach --name box \$IMAGE sh -c 'sleep 1000 & exec helper pause' >/dev/null"
    # Docker 28 names the default network's mode `bridge` (20.10: `default`), and gives a missing
    # binary exit status 127 (20.10: 126).
    local mode=default missing=126
    [[ $lane == sid ]] && mode=bridge missing=127
    step "inspect" 0 "^running 0 16 172\\.17\\.0\\.1 $mode 172\\.17\\." \
        "docker inspect -f '{{.State.Status}} {{.State.ExitCode}} {{.NetworkSettings.IPPrefixLen}} {{.NetworkSettings.Gateway}} {{.HostConfig.NetworkMode}} {{.NetworkSettings.IPAddress}} {{.NetworkSettings.MacAddress}}' box"
    step --needs exec "exec" 0 '^from exec$' "docker exec box sh -c 'echo from exec; id'"
    step --needs exec "exec -it" 0 '^true$' "on_tty docker exec -it box helper isatty"
    step --needs exec --code-only "exec a missing binary" "$missing" '' "docker exec box /no/such/binary"
    step --needs ps "top" 0 '^helper$' "docker top box -o pid,comm | awk 'NR > 1 {print \$2}' | sort"
    step --needs pause "pause" 0 '^paused$' "docker pause box >/dev/null && docker inspect -f '{{.State.Status}}' box"
    step --needs resume "unpause" 0 '^running$' "docker unpause box >/dev/null && docker inspect -f '{{.State.Status}}' box"
    step --needs update "update --memory 64m" 0 '^67108864 67108864$' \
        "docker update --memory 64m --memory-swap 128m box >/dev/null &&
         id=\$(docker inspect -f '{{.Id}}' box) && limit=/sys/fs/cgroup/memory/docker/\$id/memory.limit_in_bytes &&
         { [ -e \$limit ] || limit=/sys/fs/cgroup/docker/\$id/memory.max; } &&
         echo \$(docker inspect -f '{{.HostConfig.Memory}}' box) \$(cat \$limit)"
    step "stats" 0 '^box 2 ' "docker stats --no-stream --format '{{.Name}} {{.PIDs}} {{if .MemUsage}}memory shown{{end}}' box"
    step "stop" 0 '^exited 0$' "docker stop --time 5 box >/dev/null && docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' box"
    step "restart" 0 '^running 0$' "docker restart --time 5 box >/dev/null && docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' box"
    step "kill" 0 '^exited 137$' "docker kill box >/dev/null && docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' box"
    step "rm" 0 '^box$' "docker rm box"
    # Checkpoint and restore (the experimental daemon, criu 4 in the sid root). Not on crun:
    # Docker restores through containerd's shim, whose `-no-subreaper` crun 1.28 refuses. Not on
    # berth's shim, which refuses checkpoints (issue 17).
    [[ $lane == sid && $RT != crun && $RT != shim ]] || return 0
    # In the host's network: Docker 28 restores a checkpoint before it knows the new pid and
    # fails to bind /proc/0/ns/net for a network namespace of its own, on runc as on berth.
    step "run a counter" 0 '' "$run --detach --network host --name counter \$IMAGE sh -c \"\$COUNTER\" >/dev/null"
    step "checkpoint create" 0 '^exited$' \
        "count_reaches 3 docker exec counter cat /count >\$TMPDIR/counter.before &&
         docker checkpoint create counter cp1 >/dev/null && docker inspect -f '{{.State.Status}}' counter"
    step "checkpoint ls" 0 '^cp1$' "docker checkpoint ls counter"
    step "start --checkpoint: it counts on" 0 '^counts on from where it was$' \
        "collect_moby_garbage && docker start --checkpoint cp1 counter >/dev/null && docker inspect -f '{{.State.Status}}' counter &&
         counts_on_from \$(cat \$TMPDIR/counter.before) docker exec counter cat /count"
    step "rm the restored container" 0 '^counter$' "docker rm --force counter"
}
