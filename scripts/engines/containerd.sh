# shellcheck shell=bash
# containerd.sh: containerd (1.6 in the bookworm lane, 2.1 in the sid lane) driven with ctr. The runtime is chosen per container with
# `ctr run --runc-binary PATH`, which sets the runc shim's BinaryName option, the same option the
# CRI configuration in the README's Kubernetes section sets for a runtime handler; or, on the
# `shim` lane, with `ctr run --runtime io.containerd.berth.v2`: berth's own shim. Sourced by
# inside.sh.

# Starts containerd once (Docker uses it too) with the CRI plugin on and the README's runtime
# handler `berth`, so the configuration Kubernetes users copy is loaded and checked.
containerd_daemon() {
    [[ -n ${daemons[containerd]:-} ]] && return 0
    local dir="$work/containerd"
    mkdir -p "$dir"
    cat >"$dir/config.toml" <<EOF
version = 2
root = "$dir/root"
state = "$dir/state"
[grpc]
  address = "$dir/containerd.sock"
[ttrpc]
  address = "$dir/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.berth]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.berth.options]
      BinaryName = "$work/rt/containerd/berth"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.berth-shim]
    runtime_type = "io.containerd.berth.v2"
EOF
    start_daemon containerd "$dir/containerd.sock" "$dir/containerd.log" \
        containerd --config "$dir/config.toml"
    export CTR="ctr --address $dir/containerd.sock --namespace berth-engines"
    # The CRI plugin prints its whole configuration once it has loaded it: containerd 1.6 as Go
    # values, 2.x as JSON (quoted in the log line).
    local i loaded=''
    for ((i = 0; i < 100; i++)); do
        grep -qE 'Start cri plugin with config|starting cri plugin' "$dir/containerd.log" && break
        sleep 0.05
    done
    local config
    config=$(grep -E 'Start cri plugin with config|starting cri plugin' "$dir/containerd.log" | tr -d '\\')
    if grep -q "berth:{Type:io.containerd.runc.v2 .*Options:map\[BinaryName:$work/rt/containerd/berth\]" <<<"$config" ||
        grep -o '"berth":{"runtimeType":"io.containerd.runc.v2"[^}]*}' <<<"$config" |
        grep -qF "\"BinaryName\":\"$work/rt/containerd/berth\""; then
        loaded=1
    fi
    if [[ -z $loaded ]]; then
        failures+=("containerd: the CRI plugin did not load the runtime handler berth with its BinaryName:
$(grep -E 'cri|level=error' "$dir/containerd.log" | tail -n 5 | sed 's/^/    /')")
    else
        echo "engine-tests: containerd's CRI plugin loaded the runtime handler berth (BinaryName $work/rt/containerd/berth)"
    fi
    if ! grep -q "berth-shim:{Type:io.containerd.berth.v2 " <<<"$config" &&
        ! grep -qF '"berth-shim":{"runtimeType":"io.containerd.berth.v2"' <<<"$config"; then
        failures+=("containerd: the CRI plugin did not load the runtime handler berth-shim (runtime_type io.containerd.berth.v2)")
    else
        echo "engine-tests: containerd's CRI plugin loaded the runtime handler berth-shim (runtime_type io.containerd.berth.v2)"
    fi
}

containerd_start() {
    containerd_daemon
    $CTR images import --base-name berth.test/busybox "$work/images/oci.tar" >/dev/null
}

# The state of a task, as `ctr task ls` shows it.
task_status() {
    $CTR task ls | awk -v id="$1" '$1 == id {print $1, $3}'
}
export -f task_status

containerd_steps() {
    local run='$CTR run --runc-binary $RUNTIME'
    [[ $RT == shim ]] && run='$CTR run --runtime io.containerd.berth.v2'
    step "run" 3 '^hello from ctr$' \
        "$run --rm \$IMAGE c-run sh -c 'echo hello from ctr; ip -o link | cut -d\" \" -f2; exit 3'"
    step "run --net-host" 0 '^host0:$' \
        "$run --rm --net-host \$IMAGE c-host sh -c 'ip -o link | cut -d\" \" -f2'"
    step "run --detach" 0 '' \
        "$run --detach \$IMAGE c-task sh -c 'sleep 1000 & exec helper pause' >/dev/null"
    step "task ls" 0 '^c-task RUNNING$' "wait_for RUNNING task_status c-task"
    step --needs exec "exec" 0 '^from exec uid=0' \
        "\$CTR task exec --exec-id e1 c-task sh -c 'echo from exec \$(id -u | sed s/^/uid=/); cat /proc/1/cmdline | tr \"\\0\" \" \"'"
    # ctr attaches to a terminal exec after starting it: a process that ends at once can lose
    # its output (and ctr reports "cannot resize a stopped container"), with runc as with berth.
    step --needs exec "exec -t" 0 '^true$' "on_tty \$CTR task exec -t --exec-id e2 c-task sh -c \'sleep 0.5\; helper isatty\'"
    step --needs exec --code-only "exec a missing binary" 1 '' "\$CTR task exec --exec-id e3 c-task /no/such/binary"
    step --needs ps "task ps" 0 '^2$' "\$CTR task ps c-task | awk 'NR > 1' | wc -l"
    step --needs pause "task pause" 0 '^c-task PAUSED$' "\$CTR task pause c-task && task_status c-task"
    step --needs resume "task resume" 0 '^c-task RUNNING$' "\$CTR task resume c-task && task_status c-task"
    step "task metrics" 0 '^pids.current +2$' \
        "\$CTR task metrics c-task | awk '/^(memory|cpuacct|pids)\\./ {print \$1, (\$1 == \"pids.current\" ? \$2 : \"\")}'"
    step "task kill (SIGTERM)" 0 '^c-task STOPPED$' "\$CTR task kill c-task && wait_for STOPPED task_status c-task"
    step "task delete" 0 '' "\$CTR task delete c-task && \$CTR container rm c-task && \$CTR container ls -q"
    step "run --detach, three processes" 0 '' \
        "$run --detach \$IMAGE c-all sh -c 'sleep 1000 & sleep 1001 & exec helper pause' >/dev/null"
    step "task kill --all" 0 '^c-all STOPPED$' \
        "wait_for RUNNING task_status c-all >/dev/null && \$CTR task kill --all --signal SIGKILL c-all && wait_for STOPPED task_status c-all"
    step "task delete, exit status" 0 '' \
        "\$CTR task delete c-all; echo status \$?; \$CTR container rm c-all"
    # Checkpoint and restore (criu 4 in the sid root): the task of a counting container is
    # checkpointed with its rw layer into an image, removed, and restored from that image. Not on
    # crun: containerd's shim restores with `-no-subreaper` (one dash), which crun 1.28 refuses.
    # Not on berth's shim, which refuses checkpoints (a shim-only step checks how).
    [[ $lane == sid && $RT != crun && $RT != shim ]] || return 0
    step "run a counter" 0 '' "$run --detach \$IMAGE c-count sh -c \"\$COUNTER\" >/dev/null"
    step "task checkpoint (container checkpoint --task)" 0 '^c-count RUNNING$' \
        "before=\$(count_reaches 3 ctr_count c-count) && echo \$before >\$TMPDIR/c-count.before &&
         \$CTR container checkpoint --task --rw c-count berth.test/c-count-checkpoint:\$RT && task_status c-count"
    step "remove the checkpointed container" 0 '' \
        "\$CTR task kill --signal SIGKILL c-count && wait_for STOPPED task_status c-count >/dev/null &&
         \$CTR task delete c-count >/dev/null && \$CTR container rm c-count"
    step "container restore --live: it counts on" 0 '^counts on from where it was$' \
        "\$CTR container restore --live --rw c-count berth.test/c-count-checkpoint:\$RT &&
         wait_for RUNNING task_status c-count && counts_on_from \$(cat \$TMPDIR/c-count.before) ctr_count c-count"
    step "delete the restored task" 0 '' \
        "\$CTR task kill --signal SIGKILL c-count && wait_for STOPPED task_status c-count >/dev/null &&
         \$CTR task delete c-count >/dev/null && \$CTR container rm c-count"
}

# The counter of a counting task, read with `ctr task exec`.
ctr_count() {
    $CTR task exec --exec-id "count-$RANDOM" "$1" cat /count
}
export -f ctr_count

# The processes of a task (its cgroup's) and where berth's shim keeps it, to check that nothing
# of it is left: no live process (a zombie waits for this machine's pid 1, which reaps late), no
# berth state, no cgroup, no mount of its root filesystem.
task_traces() {
    local id=$1 pid=$2 where
    if [[ -r /proc/$pid/stat ]] && [[ $(awk '{print $3}' "/proc/$pid/stat") != Z ]]; then
        echo "process $pid lives"
    fi
    [[ -e /run/containerd/berth/berth-engines/$id ]] && echo "state /run/containerd/berth/berth-engines/$id"
    for where in /sys/fs/cgroup/*/berth-engines/"$id" /sys/fs/cgroup/berth-engines/"$id"; do
        [[ -d $where ]] && echo "cgroup $where"
    done
    grep -F "/$id/rootfs " /proc/self/mountinfo | awk '{print "mount " $5}'
    true
}

# The pid of the berth shim serving the task ID.
shim_pid() {
    local p
    for p in /proc/[0-9]*; do
        if [[ $(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) == *containerd-shim-berth-v2*" -id $1 "* ]]; then
            echo "${p#/proc/}"
            return 0
        fi
    done
    return 1
}

# Kills berth's shim of a running task with SIGKILL: containerd runs the shim's `delete` to clean
# up, and nothing of the task may be left.
shim_killed() {
    local id=$1 shim init
    shim=$(shim_pid "$id") || { echo "no shim serves $id"; return 1; }
    init=$($CTR task ls | awk -v id="$id" '$1 == id {print $2}')
    echo "before: $(task_traces "$id" "$init" | awk '{print $1}' | sort -u | tr '\n' ' ')"
    kill -KILL "$shim"
    wait_for '^$' bash -c "$CTR task ls -q | grep -x $id" >/dev/null
    echo "task gone: $($CTR task ls -q | grep -cx "$id")"
    wait_for '^$' task_traces "$id" "$init"
}

# Watches containerd's events while COMMAND runs, then prints the topics seen for ID in order.
events_of() {
    local id=$1 log="$TMPDIR/events.$$" watcher
    shift
    $CTR events >"$log" 2>&1 &
    watcher=$!
    sleep 0.2
    "$@"
    echo "status $?"
    sleep 0.3
    kill "$watcher"
    wait "$watcher" 2>/dev/null
    grep -F "\"$id\"" "$log" | awk '$6 ~ /^\/tasks\// {print $6}' | tr '\n' ' '
    echo
}
export -f task_traces shim_pid shim_killed events_of

# What only a shim does, on berth's shim alone: streams and exit status, stdin, the events of a
# task's life and of the OOM killer, cleanup after the shim is killed, and containerd restarted
# while a task runs.
containerd_shim_steps() {
    local run='$CTR run --runtime io.containerd.berth.v2'
    step "stdout, stderr and the exit status" 7 '^out=hello err=oops$' \
        "$run --rm \$IMAGE s-io sh -c 'echo hello; echo oops >&2; exit 7' >\$TMPDIR/s-io.out 2>\$TMPDIR/s-io.err; c=\$?; echo out=\$(cat \$TMPDIR/s-io.out) err=\$(cat \$TMPDIR/s-io.err); exit \$c"
    step "stdin to the process, end-of-file after it" 0 '^got hi$' \
        "echo hi | $run --rm \$IMAGE s-in sh -c 'read line; echo got \$line; cat'"
    step "events of a task's life" 0 '^/tasks/create /tasks/start /tasks/exit /tasks/delete $' \
        "events_of s-life $run --rm \$IMAGE s-life true | tail -n 1"
    step "events of an exec" 0 '/tasks/exec-added /tasks/exec-started /tasks/exit' \
        "$run --detach \$IMAGE s-exec helper pause && wait_for RUNNING task_status s-exec >/dev/null && events_of s-exec \$CTR task exec --exec-id x1 s-exec true | tail -n 1; \$CTR task kill -s KILL s-exec; wait_for STOPPED task_status s-exec >/dev/null; \$CTR task delete s-exec >/dev/null; \$CTR container rm s-exec"
    step "pause and resume events" 0 '/tasks/paused /tasks/resumed' \
        "$run --detach \$IMAGE s-pause helper pause && wait_for RUNNING task_status s-pause >/dev/null && events_of s-pause bash -c '\$CTR task pause s-pause && \$CTR task resume s-pause' | tail -n 1; \$CTR task kill -s KILL s-pause; wait_for STOPPED task_status s-pause >/dev/null; \$CTR task delete s-pause >/dev/null; \$CTR container rm s-pause"
    step "the OOM killer: TaskOOM before TaskExit" 0 '^status 137 .*/tasks/oom /tasks/exit ' \
        "events_of s-oom $run --rm --memory-limit 33554432 \$IMAGE s-oom helper alloc 64 | tr '\\n' ' '"
    # CVE-2019-5736: a created init, and an exec'd process before its execve, show the shim's
    # binary as their exe; the shim runs from a read-only view of it (berth::process::seal).
    step "CAP_SYS_PTRACE: the shim's binary cannot be opened for writing" 0 '^Read-only file system$' \
        "$run --detach --cap-add CAP_SYS_PTRACE \$IMAGE s-seal helper pause && wait_for RUNNING task_status s-seal >/dev/null && shim=\$(shim_pid s-seal) && { (exec 3>>/proc/\$shim/exe) 2>&1 | grep -o 'Read-only file system'; }; \$CTR task kill -s KILL s-seal; wait_for STOPPED task_status s-seal >/dev/null; \$CTR task delete s-seal >/dev/null; \$CTR container rm s-seal"
    step "task checkpoint is refused, saying why" 1 'containerd-shim-berth-v2 does not checkpoint' \
        "$run --detach \$IMAGE s-ckpt helper pause && wait_for RUNNING task_status s-ckpt >/dev/null && \$CTR task checkpoint s-ckpt 2>&1; c=\$?; \$CTR task kill -s KILL s-ckpt; wait_for STOPPED task_status s-ckpt >/dev/null; \$CTR task delete s-ckpt >/dev/null; \$CTR container rm s-ckpt; exit \$c"
    step "the shim killed: containerd's cleanup leaves nothing" 0 '^task gone: 0$' \
        "$run --detach \$IMAGE s-kill sh -c 'sleep 1000 & exec helper pause' && wait_for RUNNING task_status s-kill >/dev/null && shim_killed s-kill; c=\$?; \$CTR container rm s-kill; exit \$c"
    step "run --detach, then containerd restarts" 0 '' \
        "$run --detach \$IMAGE s-restart sh -c 'sleep 1000 & exec helper pause' && wait_for RUNNING task_status s-restart"
    stop_daemon containerd
    containerd_daemon >/dev/null
    step "the task is found again" 0 '^s-restart RUNNING$' "wait_for RUNNING task_status s-restart"
    step "exec after the restart" 0 '^again$' "\$CTR task exec --exec-id r1 s-restart echo again"
    step "kill and delete after the restart" 0 '^s-restart STOPPED$' \
        "\$CTR task kill -s KILL s-restart && wait_for STOPPED task_status s-restart && \$CTR task delete s-restart >/dev/null && \$CTR container rm s-restart"
}
