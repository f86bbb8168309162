/* least: the least any runtime must do for `run /bin/true` with the bundle scripts/bench times:
 * the kernel's work alone, by the cheapest calls (mount(2) on plain paths), with no bundle to
 * read, no state, no checks and no create/start split. It makes a cgroup in every hierarchy and
 * clones an init into new pid, mount, uts, ipc and network namespaces; the init joins the
 * cgroups, makes its cgroup namespace, brings lo up, sets the hostname, binds the root
 * filesystem, mounts what config.json mounts (/proc, /dev, /dev/pts, /dev/shm, /dev/mqueue,
 * /sys, /sys/fs/cgroup with each hierarchy), makes the device nodes and links, pivots into the
 * root and detaches the old one, masks and makes read-only the spec's paths, sets rlimits,
 * capabilities and no_new_privs, and runs /bin/true; then the cgroups are removed.
 *
 * It is no runtime, only a yardstick: how far berth's `run` is from the kernel's own cost, and
 * what a goal relative to the floor (unshare with nothing else) can ask.
 *
 * Usage: least ROOTFS */
#define _GNU_SOURCE
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/capability.h>

#define MAX_HIERARCHIES 16
static struct { char mount[128], controllers[64], dir[256]; int v2, named; } cgroups[MAX_HIERARCHIES];
static int ncgroups;

static void die(const char *what) {
    perror(what);
    _exit(120);
}

static void write_file(const char *path, const char *value) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, value, strlen(value)) < 0) die(path);
    close(fd);
}

static void copy_file(const char *from_dir, const char *to_dir, const char *name) {
    char path[320], value[256];
    snprintf(path, sizeof path, "%s/%s", from_dir, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : read(fd, value, sizeof value - 1);
    if (n < 0) die(path);
    close(fd);
    value[n] = 0;
    snprintf(path, sizeof path, "%s/%s", to_dir, name);
    write_file(path, value);
}

/* The hierarchies this process is in, from /proc/self/cgroup, mounted where systemd mounts them. */
static void find_cgroups(void) {
    FILE *f = fopen("/proc/self/cgroup", "r");
    char line[512];
    int pure_v2 = access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0;
    while (f && ncgroups < MAX_HIERARCHIES && fgets(line, sizeof line, f)) {
        char *controllers = strchr(line, ':') + 1, *path = strchr(controllers, ':');
        *path = 0;
        int named = strncmp(controllers, "name=", 5) == 0;
        controllers += named ? 5 : 0;
        int v2 = *controllers == 0;
        snprintf(cgroups[ncgroups].controllers, sizeof cgroups[0].controllers, "%s", v2 ? "unified" : controllers);
        char mount_point[128];
        snprintf(mount_point, sizeof mount_point, "/sys/fs/cgroup%s%s", v2 && pure_v2 ? "" : "/",
                 v2 && pure_v2 ? "" : cgroups[ncgroups].controllers);
        memcpy(cgroups[ncgroups].mount, mount_point, sizeof mount_point);
        snprintf(cgroups[ncgroups].dir, sizeof cgroups[0].dir, "%s/least-%d", mount_point, getpid());
        cgroups[ncgroups].v2 = v2;
        cgroups[ncgroups].named = named;
        ncgroups++;
    }
    if (f) fclose(f);
}

static int init(const char *rootfs) {
    for (int i = 0; i < ncgroups; i++) {
        char path[320];
        snprintf(path, sizeof path, "%s/%s", cgroups[i].dir, cgroups[i].v2 ? "cgroup.procs" : "tasks");
        write_file(path, "0");
    }
    if (unshare(CLONE_NEWCGROUP)) die("unshare the cgroup namespace");
    setsid();
    if (sethostname("least", 5)) die("sethostname");
    int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq lo = {0};
    strcpy(lo.ifr_name, "lo");
    if (ioctl(sock, SIOCGIFFLAGS, &lo) || (lo.ifr_flags |= IFF_UP, ioctl(sock, SIOCSIFFLAGS, &lo))) die("lo up");
    close(sock);

    if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL)) die("make / a slave");
    if (mount(rootfs, rootfs, NULL, MS_BIND | MS_REC, NULL)) die("bind the root filesystem");
    if (chdir(rootfs)) die(rootfs);
    if (mount("proc", "proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL)) die("mount /proc");
    if (mount("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k")) die("mount /dev");
    mkdir("dev/pts", 0755);
    mkdir("dev/shm", 0755);
    mkdir("dev/mqueue", 0755);
    if (mount("devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"))
        die("mount /dev/pts");
    if (mount("shm", "dev/shm", "tmpfs", MS_NOSUID | MS_NOEXEC | MS_NODEV, "mode=1777,size=65536k")) die("mount /dev/shm");
    if (mount("mqueue", "dev/mqueue", "mqueue", MS_NOSUID | MS_NOEXEC | MS_NODEV, NULL)) die("mount /dev/mqueue");
    if (mount("sysfs", "sys", "sysfs", MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RDONLY, NULL)) die("mount /sys");
    int flags = MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RELATIME | MS_RDONLY;
    if (ncgroups == 1 && cgroups[0].v2) {
        if (mount("cgroup2", "sys/fs/cgroup", "cgroup2", flags, NULL)) die("mount /sys/fs/cgroup");
    } else {
        if (mount("tmpfs", "sys/fs/cgroup", "tmpfs", MS_NOSUID | MS_NOEXEC | MS_NODEV, "mode=755")) die("mount /sys/fs/cgroup");
        for (int i = 0; i < ncgroups; i++) {
            char target[128];
            snprintf(target, sizeof target, "sys/fs/cgroup/%s", cgroups[i].controllers);
            mkdir(target, 0755);
            char options[80];
            snprintf(options, sizeof options, "%s%s", cgroups[i].named ? "none,name=" : "", cgroups[i].controllers);
            if (cgroups[i].v2 ? mount("cgroup2", target, "cgroup2", flags, NULL)
                              : mount("cgroup", target, "cgroup", flags, options))
                die(target);
        }
        mount(NULL, "sys/fs/cgroup", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC | MS_NODEV, NULL);
    }
    static const struct { const char *name; int major, minor; } nodes[] = {
        {"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}};
    for (size_t i = 0; i < sizeof nodes / sizeof *nodes; i++) {
        char path[32];
        snprintf(path, sizeof path, "dev/%s", nodes[i].name);
        if (mknod(path, S_IFCHR | 0666, makedev(nodes[i].major, nodes[i].minor))) die(path);
    }
    symlink("/proc/self/fd", "dev/fd");
    symlink("/proc/self/fd/0", "dev/stdin");
    symlink("/proc/self/fd/1", "dev/stdout");
    symlink("/proc/self/fd/2", "dev/stderr");
    symlink("pts/ptmx", "dev/ptmx");

    if (syscall(SYS_pivot_root, ".", ".")) die("pivot_root");
    if (mount(NULL, ".", NULL, MS_REC | MS_SLAVE, NULL)) die("make the old root a slave");
    if (umount2(".", MNT_DETACH)) die("detach the old root");
    if (chdir("/")) die("chdir /");

    static const char *masked[] = {"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                                   "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"};
    for (size_t i = 0; i < sizeof masked / sizeof *masked; i++) {
        struct stat st;
        if (stat(masked[i], &st)) continue;
        if (S_ISDIR(st.st_mode) ? mount("tmpfs", masked[i], "tmpfs", MS_RDONLY, NULL)
                                : mount("/dev/null", masked[i], NULL, MS_BIND, NULL))
            die(masked[i]);
    }
    static const char *readonly[] = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"};
    for (size_t i = 0; i < sizeof readonly / sizeof *readonly; i++) {
        if (mount(readonly[i], readonly[i], NULL, MS_BIND | MS_REC, NULL)) continue;
        if (mount(readonly[i], readonly[i], NULL, MS_BIND | MS_REC | MS_REMOUNT | MS_RDONLY, NULL)) die(readonly[i]);
    }

    /* The process: runc's default rlimit, capabilities and no_new_privs. */
    struct rlimit nofile = {1024, 1024};
    if (setrlimit(RLIMIT_NOFILE, &nofile)) die("setrlimit");
    unsigned long long keep = 1ull << CAP_CHOWN | 1ull << CAP_DAC_OVERRIDE | 1ull << CAP_FSETID | 1ull << CAP_FOWNER |
                              1ull << CAP_MKNOD | 1ull << CAP_NET_RAW | 1ull << CAP_SETGID | 1ull << CAP_SETUID |
                              1ull << CAP_SETFCAP | 1ull << CAP_SETPCAP | 1ull << CAP_NET_BIND_SERVICE |
                              1ull << CAP_SYS_CHROOT | 1ull << CAP_KILL | 1ull << CAP_AUDIT_WRITE;
    for (int cap = 0; prctl(PR_CAPBSET_READ, cap) >= 0; cap++)
        if (!(keep >> cap & 1) && prctl(PR_CAPBSET_DROP, cap)) die("drop a bounding capability");
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2] = {{(unsigned)keep, (unsigned)keep, (unsigned)keep},
                                             {(unsigned)(keep >> 32), (unsigned)(keep >> 32), (unsigned)(keep >> 32)}};
    if (syscall(SYS_capset, &header, data)) die("capset");
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) die("no_new_privs");

    char *argv[] = {"/bin/true", NULL}, *envp[] = {"PATH=/bin", NULL};
    execve(argv[0], argv, envp);
    die("execve /bin/true");
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: least ROOTFS\n");
        return 2;
    }
    find_cgroups();
    for (int i = 0; i < ncgroups; i++) {
        if (mkdir(cgroups[i].dir, 0755)) die(cgroups[i].dir);
        if (strstr(cgroups[i].controllers, "cpuset")) {
            copy_file(cgroups[i].mount, cgroups[i].dir, "cpuset.cpus");
            copy_file(cgroups[i].mount, cgroups[i].dir, "cpuset.mems");
        }
    }
    pid_t pid = syscall(SYS_clone, CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | SIGCHLD,
                        NULL, NULL, NULL, NULL);
    if (pid < 0) die("clone");
    if (pid == 0) return init(argv[1]);
    int status;
    waitpid(pid, &status, 0);
    for (int i = 0; i < ncgroups; i++)
        if (rmdir(cgroups[i].dir)) die(cgroups[i].dir);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
