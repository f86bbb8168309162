# shellcheck shell=bash
# podman-rootless.sh: podman 4.3 run by an ordinary user (rootless podman), which runs conmon and
# the runtime inside a user namespace of its own: the user's uid is root there, its subordinate
# ids the rest. The user is made for this run (useradd, which gives it a range in /etc/subuid
# and /etc/subgid) and removed at the end with every process it still has (ended by pid: rootless
# podman leaves a "pause" process holding its user namespace). Its storage (vfs) and
# configuration live in the work folder; containers get no network (netns "none": rootless
# podman's default, slirp4netns, is not what these steps test) and no cgroup of their own
# (cgroupfs on this host's cgroup v1, where nothing is delegated to a user). The runtimes are
# copied where the user can run them. Sourced by inside.sh.

podman_rootless_user=""

podman-rootless_start() {
    local dir="$work/podman-rootless" name="berth-engines-$$"
    useradd -M -l -s /bin/sh -U "$name" || die "useradd $name failed"
    podman_rootless_user=$name
    grep -q "^$name:" /etc/subuid || die "useradd gave $name no range in /etc/subuid"
    mkdir -p "$dir/home" "$dir/run" "$dir/bin" "$work/calls/podman-rootless"
    chown "$name:" "$dir" "$dir/home" "$dir/run"
    chmod 700 "$dir/run"
    cp "$BERTH_BIN" "$dir/bin/berth"
    cp "$engines_dir/capture-runtime" "$dir/bin/capture-runtime"
    local rt real
    for rt in "${references[@]}" berth; do
        real=$([[ $rt == berth ]] && echo "$dir/bin/berth" || command -v "$rt")
        mkdir -p "$work/calls/podman-rootless/$rt"
        cat >"$work/rt/podman-rootless/$rt" <<EOF
#!/bin/sh
CAPTURE_DIR='$work/calls/podman-rootless/$rt' CAPTURE_RUNTIME='$real' exec '$dir/bin/capture-runtime' "\$@"
EOF
    done
    chown -R "$name:" "$work/calls/podman-rootless"
    cat >"$dir/containers.conf" <<CONF
[containers]
netns = "none"
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$dir/home/events.log"
runtime_supports_json = ["runc", "crun", "berth"]
CONF
    cat >"$dir/storage.conf" <<CONF
[storage]
driver = "vfs"
graphroot = "$dir/home/storage"
runroot = "$dir/run/storage"
CONF
    cp "$work/images/rootfs.tar" "$dir/rootfs.tar"
    # A command run as the user, with a login's environment and podman's settings (a script,
    # not a function: on_tty's terminal runs it through sh).
    cat >"$dir/as-user" <<SCRIPT
#!/bin/sh
cd '$dir/home' || exit 1
exec setpriv --reuid '$name' --regid '$name' --init-groups -- env -i \\
    PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin HOME='$dir/home' USER='$name' \\
    LOGNAME='$name' XDG_RUNTIME_DIR='$dir/run' CONTAINERS_CONF='$dir/containers.conf' \\
    CONTAINERS_STORAGE_CONF='$dir/storage.conf' CONTAINERS_REGISTRIES_CONF=/dev/null "\$@"
SCRIPT
    chmod 755 "$dir/as-user"
    export AS_USER="$dir/as-user"
    "$AS_USER" podman import --quiet --change 'CMD ["sh"]' "$dir/rootfs.tar" "$image" >/dev/null ||
        die "podman import as $name failed"
}

podman-rootless_steps() {
    # shellcheck disable=SC2016 # expanded by each step's shell
    local podman='$AS_USER podman --runtime $RUNTIME' user='$AS_USER podman'
    step "run --rm echo (the issue's check)" 0 '^hi$' "$podman run --rm \$IMAGE echo hi"
    step "root inside is the user outside" 0 '^0 [0-9]+ 1$' \
        "$podman run --rm \$IMAGE sh -c 'id -u; cat /proc/self/uid_map' | sed 's/  */ /g; s/^ //'"
    step "run --detach" 0 '' "$podman run --detach --name box \$IMAGE sh -c 'sleep 1000 & exec helper pause' >/dev/null"
    step "exec" 0 '^0$' "$podman exec box id -u"
    step "exec -it" 0 '^true$' "on_tty $podman exec -it box helper isatty"
    # (no pids: runc's init leaves gaps in the container's pid numbers that berth's does not)
    step "top" 0 'helper pause' "$user top box user args"
    step "stop" 0 '^exited 0$' "$podman stop --time 5 box >/dev/null && $user inspect -f '{{.State.Status}} {{.State.ExitCode}}' box"
    step "start again" 0 '^running$' "$podman start box >/dev/null && $user inspect -f '{{.State.Status}}' box"
    # rootless podman 4.3 says "stopped" where rootful says "exited", on either runtime
    step "kill" 0 '^(exited|stopped) 137$' "$podman kill box >/dev/null && $user wait box >/dev/null; $user inspect -f '{{.State.Status}} {{.State.ExitCode}}' box"
    step "rm" 0 '^box$' "$user rm box"
}

# Ends every process of the user, by pid, then removes it (with its subordinate ranges).
podman-rootless_cleanup() {
    [[ -n $podman_rootless_user ]] || return 0
    local uid pid i
    uid=$(id -u "$podman_rootless_user") || return 0
    for ((i = 0; i < 50; i++)); do
        local left=0
        for pid in /proc/[0-9]*; do
            [[ $(stat -c %u "$pid" 2>/dev/null) == "$uid" ]] || continue
            [[ $(awk '/^State:/{print $2}' "$pid/status" 2>/dev/null) == Z ]] && continue
            kill -KILL "${pid#/proc/}" 2>/dev/null || true
            left=1
        done
        ((left)) || break
        sleep 0.05
    done
    userdel --force "$podman_rootless_user" || echo "engine-tests: LEFT the user $podman_rootless_user"
    podman_rootless_user=""
}
