# shellcheck shell=bash
# checkpoint.sh: berth's own checkpoint and restore tests (runtime-tests/tests/checkpoint.rs),
# run by the sid lane, where criu is 4.x (bookworm's 3.17 fails on this kernel even for runc).
# The test binary is built on the host (outside.sh) and runs here, in the sid root, where the
# repository sits at its own path. Its counts join the lane's. Sourced by inside.sh.

checkpoint_run() {
    local bin=${CHECKPOINT_TESTS:-}
    echo "engine-tests: == berth's checkpoint tests"
    if [[ ! -x $bin ]]; then
        failures+=("checkpoint: the test binary was not built (CHECKPOINT_TESTS=${bin:-unset})")
        return
    fi
    local log="$work/out/checkpoint.txt" status=0
    mkdir -p "$work/out"
    BERTH_CHECKPOINT_TESTS=required "$bin" --test-threads=2 >"$log" 2>&1 || status=$?
    grep -E '^(test |SKIP)' "$log" || true
    local counts
    counts=$(sed -n 's/^test result: [A-Za-z]*\. \([0-9]*\) passed; \([0-9]*\) failed.*/\1 \2/p' "$log" | tail -n 1)
    passed+=${counts%% *}
    if ((status != 0)); then
        failures+=("checkpoint: berth's checkpoint tests failed ($log):
$(grep -E -A12 '^---- .* stdout ----' "$log" | head -n 60 | sed 's/^/    /')")
    fi
    grep '^SKIP' "$log" | while read -r line; do echo "engine-tests: $line"; done
}
