#!/bin/sh
# Writes syscall_table.rs beside this script: the syscall numbers by name for each architecture
# the seccomp compiler knows, and the names that only other architectures have, from the kernel
# headers of Debian's linux-libc-dev.
#
# Usage: gen-syscall-table.sh [INCLUDE_DIR]
#
# Without INCLUDE_DIR, the newest linux-libc-dev of Debian sid (from the mirror this machine's
# release comes from) is downloaded with apt-get into a temporary folder (its own package lists,
# nothing installed on this machine) and unpacked with dpkg-deb -x: it carries the uapi headers
# of every architecture, so the tables follow the newest kernel whatever the host runs. With INCLUDE_DIR (for example /usr/include), that tree's headers
# are used instead. The C compiler evaluates each header, so expressions such as
# (__X32_SYSCALL_BIT + 0) come out as plain numbers. Needs cc, cpp and rustfmt; apt-get and
# dpkg-deb without INCLUDE_DIR.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
out="$here/syscall_table.rs"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ $# -ge 1 ]; then
    inc=$1
else
    apt="$work/apt"
    mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial"
    # sid on the mirror that serves this machine's own Debian release.
    # shellcheck source=/dev/null
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    # shellcheck disable=SC2016 # apt's own $(FIELD) placeholders
    site=$(apt-get indextargets --format '$(SITE) $(RELEASE)' 'Created-By: Packages' 2>/dev/null |
        awk -v c="$codename" '$2 == c {print $1; exit}')
    site=${site:-http://deb.debian.org/debian}
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $site sid main" \
        >"$apt/sources.list"
    set -- -o Dir::Etc::sourcelist="$apt/sources.list" -o Dir::Etc::sourceparts=/nonexistent \
        -o Dir::State::Lists="$apt/lists" -o Dir::Cache="$apt/cache" \
        -o Dir::State::status=/dev/null -o Debug::NoLocking=1 -o APT::Sandbox::User=root
    apt-get "$@" -qq update >&2
    (cd "$work" && apt-get "$@" -qq download linux-libc-dev >&2)
    dpkg-deb -x "$work"/linux-libc-dev_*.deb "$work/pkg"
    inc="$work/pkg/usr/include"
fi
[ -f "$inc/linux/version.h" ] || { echo "no kernel headers in $inc" >&2; exit 1; }

# The uapi header that lists an architecture's syscalls. Debian keeps each architecture's asm/
# under its multiarch triplet; an older /usr/include has arm64's only as asm-generic/unistd.h.
x86="$inc/x86_64-linux-gnu/asm"
arm64="$inc/aarch64-linux-gnu/asm/unistd_64.h"
arm64_prelude=''
if [ ! -f "$arm64" ]; then
    arm64="$inc/asm-generic/unistd.h"
    # arm64's uapi asm/unistd.h chooses these optional syscalls before asm-generic/unistd.h.
    arm64_prelude='#define __ARCH_WANT_RENAMEAT
#define __ARCH_WANT_NEW_STAT
#define __ARCH_WANT_SET_GET_RLIMIT
#define __ARCH_WANT_TIME32_SYSCALLS
#define __ARCH_WANT_SYS_CLONE3
#define __ARCH_WANT_MEMFD_SECRET'
fi

# The syscall names a header defines (__NR_syscalls and __NR_arch_specific_syscall are counts and
# bases, upper-case names are bases such as __NR_SYSCALL_BASE).
names() {
    cpp -dM "$1" | sed -n 's/^#define __NR_\([a-z0-9_]*\) .*/\1/p' |
        grep -v -x -e syscalls -e arch_specific_syscall | LC_ALL=C sort -u
}

# table CONST_NAME PRELUDE HEADER: prints one Rust constant, sorted by name.
table() {
    const=$1 prelude=$2 header=$3
    printf '%s\n#include "%s"\n' "$prelude" "$header" >"$work/h.h"
    list=$(names "$work/h.h")
    printf '%s\n' "$list" >>"$work/known"
    {
        printf '#include <stdio.h>\n#include "h.h"\nint main(void) {\n'
        for name in $list; do
            printf '    printf("%s %%lu\\n", (unsigned long)(__NR_%s));\n' "$name" "$name"
        done
        printf '    return 0;\n}\n'
    } >"$work/t.c"
    cc -I"$inc" -o "$work/t" "$work/t.c"
    printf '\npub(super) const %s: &str = "\\\n' "$const"
    "$work/t"
    printf '";\n'
}

# The names only other architectures have: a profile may list them (Docker's lists arm's and
# s390's), and they are no typo.
elsewhere() {
    for header in "$inc"/*/asm/unistd*.h; do
        sed -n 's/^#define __NR_\([a-z0-9_]*\)[[:space:]].*/\1/p' "$header"
    done | grep -v -x -e syscalls -e arch_specific_syscall | LC_ALL=C sort -u >"$work/all"
    LC_ALL=C sort -u "$work/known" >"$work/known.sorted"
    printf '\npub(super) const ELSEWHERE: &str = "\\\n'
    LC_ALL=C comm -23 "$work/all" "$work/known.sorted"
    printf '";\n'
}

version=$(sed -n 's/^#define LINUX_VERSION_\(MAJOR\|PATCHLEVEL\|SUBLEVEL\) //p' "$inc/linux/version.h" |
    paste -sd.)
: >"$work/known"
{
    printf '//! Syscall numbers by name for each architecture the seccomp compiler knows, a line `name\n'
    printf '//! number` each, sorted by name, and the names only other architectures have, a line each.\n'
    printf '//! Text rather than slices of pairs: a static binary relocates every pointer of its data when it\n'
    printf '//! starts, and 1,700 `&str`s are 40 kB that every berth and every shim would write (and keep\n'
    printf '//! private) before doing anything. Generated by gen-syscall-table.sh from the kernel headers of\n'
    printf '//! Linux %s; do not edit.\n' "$version"
    printf '\n/// The Linux version of the headers these tables come from.\n'
    printf 'pub(super) const LINUX: &str = "%s";\n' "$version"
    table X86_64 '' "$x86/unistd_64.h"
    table X86 '' "$x86/unistd_32.h"
    x32_bit=$(sed -n 's/^#define __X32_SYSCALL_BIT[[:space:]]*//p' "$x86/unistd.h")
    table X32 "#define __X32_SYSCALL_BIT $x32_bit" "$x86/unistd_x32.h"
    table AARCH64 "$arm64_prelude" "$arm64"
    elsewhere
} >"$out"
rustfmt --edition 2021 "$out"
echo "wrote $out (Linux $version)"
