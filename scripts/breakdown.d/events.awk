# Turns the maps trace.bt prints at its end into one event a line, each led by the time it
# completed (for `sort -n`, which then gives the order in which things finished):
#   T ends G 0 tid tgid                 a thread and its process
#   T F T parent child                  a fork
#   T E T pid filename                  an exec
#   T W T wakee waker                   a wake-up
#   T S start tid nr duration result arg  a system call (arg: its path or name, if it takes one)
#   T O start tid duration R|W why      a stretch off the CPU: runnable, or asleep (W) in `why`
#   T Z T tid                           exit_group called
#   T D T tid                           the process left the CPU for good
#   T P T tid                           a page fault
# Times are in nanoseconds.

function keys(line,    k) {
    k = line
    sub(/^@[A-Z]\[/, "", k)
    sub(/\]:.*/, "", k)
    split(k, key, ", ")
}

function value(line,    v) {
    v = line
    sub(/^[^]]*\]: /, "", v)
    return v
}

# The value of a map entry whose value is a tuple, without its parentheses.
function tuple(line,    v) {
    v = value(line)
    sub(/^\(/, "", v)
    sub(/\)$/, "", v)
    return v
}

# A kernel stack: its frames follow on lines of their own. What it slept in is named by its
# first three frames past the scheduler's own.
/^@K\[/ { keys($0); id = key[1] "," key[2]; why[id] = ""; frames = 0; in_stack = 1; next }
in_stack && /^[ \t]/ {
    frame = $0
    gsub(/^[ \t]+|\+[0-9]+$/, "", frame)
    if (frame ~ /^(__schedule|schedule|schedule_timeout|schedule_hrtimeout_range_clock|schedule_hrtimeout_range|io_schedule|__cond_resched|schedule_preempt_disabled|__mutex_lock|__mutex_lock\.constprop\.0|__wait_for_common|wait_for_completion|wait_for_completion_state|do_syscall_64|entry_SYSCALL_64_after_hwframe|x64_sys_call)$/)
        next
    if (frames < 3) {
        why[id] = why[id] (frames ? "<" : "") frame
        frames++
    }
    next
}
{ in_stack = 0 }

/^@G\[/ { k = $0; sub(/^@G\[/, "", k); sub(/\]:.*/, "", k); print 0, "G", 0, k, value($0); next }
/^@F\[/ { keys($0); print key[1], "F", key[1], key[2], value($0); next }
/^@E\[/ { keys($0); print key[1], "E", key[1], key[2], value($0); next }
/^@W\[/ { keys($0); print key[1], "W", key[1], key[2], value($0); next }
/^@Z\[/ { keys($0); print key[1], "Z", key[1], key[2]; next }
/^@D\[/ { keys($0); print key[1], "D", key[1], key[2]; next }
/^@P\[/ { keys($0); print key[1], "P", key[1], key[2]; next }
/^@S\[/ {
    keys($0)
    v = tuple($0)
    # number, duration, result, then the path or name (which may itself hold ", ")
    split(v, f, ", ")
    arg = v
    sub(/^[^,]*, [^,]*, [^,]*, ?/, "", arg)
    printf "%.0f S %s %s %s %s %s %s\n", key[1] + f[2], key[1], key[2], f[1], f[2], f[3], arg
    next
}
/^@O\[/ {
    keys($0)
    split(tuple($0), f, ", ")
    off[key[1] "," key[2]] = sprintf("%.0f O %s %s %s %s", key[1] + f[1], key[1], key[2], f[1], f[2] ? "W" : "R")
    next
}
# The stacks may come after the stretches they belong to: both are joined at the end.
END { for (id in off) print off[id], (id in why) ? why[id] : "" }
