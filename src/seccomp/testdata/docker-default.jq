# Resolves moby's profiles/seccomp/default.json (moby/profiles/seccomp v0.2.3, as vendored by
# moby/moby b985e2313a86) into the linux.seccomp object that dockerd sends for a default
# container on amd64 (Docker's default capabilities, a kernel newer than every minKernel),
# following setupSeccomp in moby/profiles/seccomp/seccomp_linux.go:
#   jq -f docker-default.jq default.json > docker-default.json
["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
 "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
 "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"] as $caps
| "amd64" as $arch
| def excluded: (.excludes // {}) as $e
    | (($e.arches // []) | index($arch) != null)
      or any(($e.caps // [])[]; . as $c | $caps | index($c) != null)
      or ($e.minKernel != null);
  def included: (.includes // {}) as $i
    | ((($i.arches // []) | length == 0) or (($i.arches // []) | index($arch) != null))
      and all(($i.caps // [])[]; . as $c | $caps | index($c) != null);
{
  defaultAction,
  defaultErrnoRet,
  architectures: (.archMap[] | select(.architecture == "SCMP_ARCH_X86_64")
                  | [.architecture] + .subArchitectures),
  syscalls: [.syscalls[] | select((excluded | not) and included)
             | {names, action} + (if .errnoRet then {errnoRet} else {} end)
               + (if .args then {args} else {} end)]
}
