# Turns the events of trace.bt (as events.awk sorts them) into the table of where `berth run`
# spends its time, and replays the runs without the machine's other load.
#
# Steps. Every system call, and every stretch of user-space work between two calls, belongs to
# a step (a row). A call that says which step it is (by its name, its path, where it comes in
# the sequence) starts that step; the calls after it that do not say (write, close, read ...)
# and the work between them stay in it. A stretch its process spent runnable but not running
# (other processes had the CPUs) is left out of every step: the figures are the work and its
# real waits. Each figure is the median (or the quantile q) over the runs of its per-run sum.
# Steps that run beside the init (berth's, between the clone and the wait for the init, and
# second threads) or that only wait for another process are marked and left out of the sum.
#
# Replay. The runs are replayed as if no other process wanted the CPUs: each process of the
# tree keeps a shift (real time minus replayed time) that grows by every stretch it waited
# runnable; a sleep that another process of the tree ended (a message, an exit) ends, in the
# replay, when that process woke it in the replay; other sleeps (an RCU grace period, the disk)
# keep their length, or, in the second replay, are left out. On a busy machine the grace periods
# take milliseconds; on a quiet one tens of microseconds: the two replays bracket a quiet run.
#
# Variables: root (the traced binary's path: each exec of it starts a run), rootfs (the root
# filesystem's path), unistd (asm/unistd_64.h, for the system calls' names), q (0.5).

BEGIN {
    if (q == "") q = 0.5
    while ((getline line < unistd) > 0) {
        if (line ~ /^#define __NR_[a-z0-9_]+ [0-9]+$/) {
            split(line, f, " ")
            sub(/^__NR_/, "", f[2])
            name[f[3]] = f[2]
        }
    }
}

function tree(t) { return role[t] ~ /^(berth|init|program)/ }

# A step, the first time it is seen, takes the next place in the table.
function add(t, step, work, asleep, calls) {
    if (step == "") return
    if (!(step in order)) {
        order[step] = ++nsteps
        step_at[nsteps] = step
    }
    W[run[t], step] += work
    S[run[t], step] += asleep
    C[run[t], step] += calls
}

# The stretches off the CPU of `t` since its last system call, split at `at`: those before (in
# user space) and those after (in the call being finished), runnable (R) or asleep.
function split_off(t, at,    n, i, parts, p) {
    before_r = before_s = in_r = in_s = 0
    n = split(pending[t], parts, ";")
    for (i = 1; i <= n; i++) {
        if (parts[i] == "") continue
        split(parts[i], p, "|")
        if (p[3] == "W" && p[4] != "") {
            slept_in[run[t], p[4]] += p[2]
            stacks[p[4]] = 1
        }
        if (p[1] + 0 >= at + 0) {
            if (p[3] == "R") in_r += p[2]; else in_s += p[2]
        } else {
            if (p[3] == "R") before_r += p[2]; else before_s += p[2]
        }
    }
    pending[t] = ""
    runnable[run[t]] += before_r + in_r
}

# The step a system call of berth's run starts, or "" when it stays in the current one.
function classify(t, call, arg,    ro, h, beside) {
    ro = role[t]
    if (ro == "berth") {
        if (call == "execve") return "berth: execve of the static binary, start-up"
        if (phase[t] == "exit-wait" && call == "rt_sigaction") return "berth: a thread to tear the container's mounts down"
        if (phase[t] == "exit-wait" && call ~ /^(openat|rmdir|unlinkat)$/) phase[t] = "delete"
        if (phase[t] == "delete") {
            if (call == "rmdir" && arg ~ /^\/sys\/fs\/cgroup\//) {
                h = arg
                sub(/^\/sys\/fs\/cgroup\//, "", h)
                sub(/\/.*/, "", h)
                return "berth: cgroup removal: " h
            }
            if (call == "unlinkat" || call == "rmdir") return "berth: delete: remove the state folder"
            if (call == "openat" && arg ~ /^\/sys\/fs\/cgroup\//) return "berth: delete: is the cgroup empty"
            if (call == "openat" && arg ~ /\/stat$/) return "berth: delete: is the init alive (/proc/PID/stat)"
            if (call == "openat") return "berth: delete: lock and read the state"
            if (call == "futex") return "berth: waits for the mounts' teardown (the thread)"
            if (call == "exit_group") return "berth: exit"
            return ""
        }
        # Between the clone and the wait for the init, berth works beside the init.
        beside = (phase[t] == "cloned") ? " (beside the init)" : ""
        if (call == "openat" && arg ~ /config\.json$/ && phase[t] == "") {
            phase[t] = "load"
            return "berth: read and check the bundle"
        }
        if (call == "mkdir" && arg !~ /^\/sys\//) return "berth: make and lock the state folder"
        if (call == "openat" && arg ~ /^\/proc\/self\/(mountinfo|cgroup)$/) return "berth: find the cgroup hierarchies"
        if (call == "openat" && arg == "/etc/passwd") return "berth: owner name (/etc/passwd)"
        if (call == "openat" && arg ~ /\.tmp$/ && phase[t] == "ready") return "berth: state write (created)"
        if (call == "openat" && arg ~ /\.tmp$/ && phase[t] == "started") return "berth: state write (running; beside the program)"
        if (call == "openat" && arg ~ /\.tmp$/) return "berth: state writes" beside
        if (call == "mknodat") return "berth: exec fifo" beside
        if ((call == "mkdir" || call == "openat") && arg ~ /^\/sys\/fs\/cgroup\/.*\/tasks$/) return "berth: open the v1 tasks files" beside
        if ((call == "mkdir" || call == "openat") && arg ~ /^\/sys\/fs\/cgroup\//) {
            h = arg
            sub(/^\/sys\/fs\/cgroup\//, "", h)
            sub(/\/.*/, "", h)
            return "berth: cgroup creation: " h beside
        }
        if (call == "openat" && arg == "/proc/sys/kernel/cap_last_cap") return "berth: the init's plan, the channel"
        if ((call == "clone3" || call == "clone") && phase[t] ~ /^(|load)$/) {
            phase[t] = "cloned"
            return "berth: clone3 into new namespaces and the cgroup"
        }
        if (call == "openat" && arg ~ /^\/proc\/[0-9]+\/(stat|ns\/mnt)$/) return "berth: the init's start time, its mount namespace" beside
        if (call == "sendmsg" && phase[t] == "cloned") return "berth: send the cgroups' tasks files" beside
        if ((call == "recvmsg" || call == "recvfrom") && phase[t] == "cloned") {
            phase[t] = "ready"
            return "berth: waits for the init (beside the init)"
        }
        if (call == "signalfd4") return "berth: signal forwarding"
        if (call == "sendmsg" && phase[t] == "ready") {
            phase[t] = "started"
            return "berth: start: Go to the init, waits for the execve (beside the init)"
        }
        if (call == "openat" && arg ~ /exec\.fifo$/ && phase[t] == "ready") return "berth: start: exec fifo, waits for the execve"
        if (call == "openat" && arg ~ /start\.err$/ && phase[t] == "ready") return "berth: start: read start.err, remove the fifo"
        if (call == "wait4") {
            phase[t] = "exit-wait"
            return "berth: waits for the program's exit (beside the program)"
        }
        if (call == "exit_group") return "berth: exit"
        return ""
    }
    if (ro == "init") {
        if (call == "unshare") return "init: unshare the cgroup namespace"
        if (call == "keyctl") return "init: session keyring, lo up, hostname"
        if ((call == "recvmsg" || call == "recvfrom") && phase[t] == "mounts") return "init: waits for the v1 cgroups, joins them"
        if (call == "mount" && phase[t] == "") {
            phase[t] = "mounts"
            return "init: / rslave, bind the root filesystem"
        }
        if (phase[t] == "mounts" && call == "openat2") {
            if (arg ~ /^dev$/ && saw_cgroup[t]) {
                phase[t] = "dev"
                return "init: /dev nodes and links"
            }
            if (arg ~ /^sys\/fs\/cgroup/) saw_cgroup[t] = 1
            return "init: mount /" arg
        }
        if (call == "mknodat" && phase[t] == "mounts") {
            phase[t] = "dev"
            return "init: /dev nodes and links"
        }
        if (call == "openat" && arg == rootfs && phase[t] == "dev") return "init: pivot_root"
        if (call == "pivot_root") {
            phase[t] = "pivot"
            return "init: pivot_root"
        }
        if (call == "mmap" && phase[t] == "pivot") {
            phase[t] = "spawn"
            return "init: a thread to detach the old root"
        }
        if (call == "mount" && phase[t] == "pivot") {
            phase[t] = "detach"
            return "init: detach the old root"
        }
        if (call == "openat2" && phase[t] ~ /^(pivot|spawn|detach)$/) {
            phase[t] = "masked"
            return "init: masked paths"
        }
        if (call == "open_tree" && phase[t] == "masked") {
            phase[t] = "readonly"
            return "init: read-only paths, read-only root"
        }
        if (call == "futex" && phase[t] ~ /^(masked|readonly)$/) return "init: waits for the old root's detaching (the thread)"
        if (call == "openat" && arg == "/etc/passwd") return "init: process: user, rlimits, capabilities, no_new_privs"
        if (call == "sendmsg" && phase[t] != "ready") {
            phase[t] = "ready"
            return "init: reports ready, waits for start"
        }
        if (call == "close_range") return "init: close descriptors, reset signals"
        if (call == "exit_group") return "init: exit (intermediate)"
        return ""
    }
    if (ro == "program") {
        if (call == "execve") return "program: execve of /bin/true"
        if (call == "exit_group") return "program: exit, namespace teardown"
    }
    return ""
}

# The replay's shift of `t`, kept as a history so that it can be read at any earlier time.
function shift_set(m, t, at, v) { shift[m, t] = v; hist[m, t] = hist[m, t] ";" at "|" v }
function shift_at(m, t, at,    n, i, parts, p, v) {
    v = 0
    n = split(hist[m, t], parts, ";")
    for (i = 1; i <= n; i++) {
        if (parts[i] == "") continue
        split(parts[i], p, "|")
        if (p[1] + 0 > at + 0) break
        v = p[2]
    }
    return v
}

$2 == "G" { thread_of[$4] = $5; next }
$2 == "W" { if (tree($4)) { woke_at[$4] = $3; woke_by[$4] = $5 } ; next }
$2 == "F" {
    p = $4
    c = $5
    if (!tree(p)) {
        if (!(c in role)) role[c] = "other"
        next
    }
    for (m = 1; m <= 2; m++) shift_set(m, c, $3, shift_at(m, p, $3))
    run[c] = run[p]
    last[c] = $3
    if (c in thread_of) {
        # A second thread: its steps are its process's, on rows of their own, beside.
        role[c] = role[p] "-thread"
        cur[c] = role[p] == "berth" ? "berth, a second thread: the container's mounts torn down (beside)" : "init, a second thread: detach the old root (beside)"
    } else {
        role[c] = "init"
        cur[c] = "init: first steps (descriptors, umask)"
    }
    next
}
$2 == "E" {
    t = $4
    if ($5 == root) {
        role[t] = "berth"
        run[t] = ++nruns
        cur[t] = ""
        last[t] = $3
        phase[t] = ""
        start[nruns] = $3
        for (m = 1; m <= 2; m++) {
            hist[m, t] = ""
            shift_set(m, t, $3, 0)
        }
    } else if (role[t] == "init") {
        role[t] = "program"
    }
    next
}
$2 == "P" { if (tree($4) && cur[$4] != "") F[run[$4], cur[$4]]++; next }
$2 == "O" {
    t = $4
    if (!tree(t)) next
    s = $3
    e = $3 + $5
    for (m = 1; m <= 2; m++) {
        if ($6 == "R") {
            shift_set(m, t, e, shift[m, t] + $5)
        } else if ((t in woke_at) && woke_at[t] >= s && woke_at[t] <= e && tree(woke_by[t]) && woke_by[t] != t) {
            woken = woke_at[t] - shift_at(m, woke_by[t], woke_at[t])
            slept = s - shift[m, t]
            shift_set(m, t, e, e - (woken > slept ? woken : slept))
        } else if (m == 2) {
            shift_set(m, t, e, shift[m, t] + $5)
        }
    }
    pending[t] = pending[t] ";" $3 "|" $5 "|" $6 "|" $7
    next
}
$2 == "S" {
    t = $4
    if (!tree(t)) next
    begin = $3
    dur = $6
    arg = ""
    for (i = 8; i <= NF; i++) arg = arg (i > 8 ? " " : "") $i
    split_off(t, begin)
    # User space since the last call belongs to the step it was in.
    gap = begin - last[t] - before_r - before_s
    add(t, cur[t], gap > 0 ? gap : 0, before_s, 0)
    step = classify(t, name[$5], arg)
    if (step != "") cur[t] = step
    work = dur - in_r - in_s
    add(t, cur[t], work > 0 ? work : 0, in_s, 1)
    last[t] = begin + dur
    next
}
$2 == "Z" {
    # exit_group never returns: its time runs until the process leaves the CPU for good (D).
    t = $4
    if (!tree(t)) next
    split_off(t, $3)
    gap = $3 - last[t] - before_r - before_s
    add(t, cur[t], gap > 0 ? gap : 0, before_s, 0)
    step = classify(t, "exit_group", "")
    if (step != "") cur[t] = step
    exit_at[t] = $3
    next
}
$2 == "D" {
    t = $4
    if (!(t in exit_at)) next
    split_off(t, exit_at[t])
    work = $3 - exit_at[t] - in_r - in_s
    add(t, cur[t], work > 0 ? work : 0, in_s, 1)
    if (role[t] == "berth") {
        wall[run[t]] = $3 - start[run[t]]
        replay[run[t]] = $3 - shift_at(1, t, $3) - start[run[t]]
        replay_bare[run[t]] = $3 - shift_at(2, t, $3) - start[run[t]]
    }
    next
}

function quantile(vals, n,    i, j, x) {
    if (n == 0) return 0
    for (i = 2; i <= n; i++) {
        x = vals[i]
        for (j = i - 1; j >= 1 && vals[j] > x; j--) vals[j + 1] = vals[j]
        vals[j + 1] = x
    }
    i = int(q * (n - 1) + 1.5)
    return vals[i < 1 ? 1 : (i > n ? n : i)]
}

# The quantile over the runs of table[run, key] (the first run, which warms the caches, left out).
function over_runs(table, key,    k, n, vals) {
    n = 0
    for (k = first; k <= nruns; k++) vals[++n] = table[k, key] + 0
    return quantile(vals, n)
}

function per_run(table,    k, n, vals) {
    n = 0
    for (k = first; k <= nruns; k++) vals[++n] = table[k] + 0
    return quantile(vals, n)
}

function us(ns) { return sprintf("%d", ns / 1000 + 0.5) }

END {
    first = nruns > 1 ? 2 : 1
    for (i = 1; i <= nsteps; i++) {
        step = step_at[i]
        for (k = first; k <= nruns; k++) {
            T[k, step] = W[k, step] + S[k, step]
            if (step !~ /beside|waits for the init|waits for the program/) sum[k] += T[k, step]
        }
    }
    if (table_only != "replay") {
        print "| step | time (µs) | of which asleep (µs) | system calls | page faults |"
        print "| --- | --- | --- | --- | --- |"
        for (i = 1; i <= nsteps; i++) {
            step = step_at[i]
            printf "| %s | %s | %s | %d | %d |\n", step, us(over_runs(T, step)), us(over_runs(S, step)), over_runs(C, step), over_runs(F, step)
        }
        printf "| **the steps not beside another, summed** | **%s** | | | |\n", us(per_run(sum))
        printf "| runnable but not running (other processes had the CPUs), left out above | %s | | | |\n", us(per_run(runnable))
        print ""
        print "What the steps slept in (µs per run, 20 and more), by the kernel functions they slept in:"
        print ""
        for (s in stacks) if (over_runs(slept_in, s) >= 20000) printf "- `%s`: %s\n", s, us(over_runs(slept_in, s))
        print ""
    }
    printf "| %s | %s | %s | %s |\n", label, us(per_run(wall)), us(per_run(replay)), us(per_run(replay_bare))
}
