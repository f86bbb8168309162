# shellcheck shell=bash
# cgroup-view.sh: on a hybrid cgroup host (/sys/fs/cgroup a tmpfs), a private copy of that tmpfs
# for a mount namespace of our own, with the host's hierarchies bound in. An engine that makes
# folders for controllers the host has not mounted (conmon makes libpod_parent/conmon, with a
# `tasks` file, in hugetlb, net_cls, net_prio and perf_event) then writes into the copy, which
# goes with the namespace, not into the host's tmpfs. Sourced by inside.sh and enter-sid-root.

# Mounts the copy at TARGET; does nothing on a host whose /sys/fs/cgroup is not a tmpfs.
cgroup_view() {
    local target=$1 hierarchy name
    [[ $(stat -f -c %T /sys/fs/cgroup) == tmpfs ]] || return 0
    mount -t tmpfs -o mode=755 cgroup "$target"
    for hierarchy in /sys/fs/cgroup/*; do
        name=${hierarchy##*/}
        if [[ -L $hierarchy ]]; then
            ln -s "$(readlink "$hierarchy")" "$target/$name"
        elif mountpoint -q "$hierarchy"; then
            mkdir "$target/$name"
            mount --bind "$hierarchy" "$target/$name"
        fi
    done
}
