/* firsthit: runs a command under ptrace with a one-shot breakpoint on the entry of every
 * function of one static binary, in the command's process and in every process it forks, until
 * that process executes another program; prints each function's name once, in the order they
 * were first entered. scripts/symbol-order uses it.
 *
 * Usage: firsthit SYMBOLS BINARY OUTPUT COMMAND [ARG...]
 *   SYMBOLS: lines "HEXOFFSET NAME", the functions of BINARY (from nm -S of an unstripped one)
 *   BINARY:  what COMMAND's first process runs (its mapping gives the load address)
 *   OUTPUT:  where the names go, appended
 * Exits with COMMAND's status. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

struct fn { unsigned long off; char *name; unsigned char orig; int hit; };
static struct fn *fns;
static size_t nfns;

static int by_off(const void *a, const void *b) {
    unsigned long x = ((const struct fn *)a)->off, y = ((const struct fn *)b)->off;
    return x < y ? -1 : x > y;
}

static struct fn *find(unsigned long off) {
    size_t lo = 0, hi = nfns;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (fns[mid].off == off) {
            while (mid > 0 && fns[mid - 1].off == off) mid--;
            return &fns[mid];
        }
        if (fns[mid].off < off) lo = mid + 1; else hi = mid;
    }
    return NULL;
}

static int mem_of(pid_t pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/mem", pid);
    return open(path, O_RDWR | O_CLOEXEC);
}

static unsigned long base_of(pid_t pid, const char *binary) {
    char path[64], line[4096], real[4096];
    snprintf(path, sizeof path, "/proc/%d/maps", pid);
    if (!realpath(binary, real)) return 0;
    FILE *maps = fopen(path, "r");
    unsigned long start = 0, off;
    while (maps && fgets(line, sizeof line, maps)) {
        char *name = strchr(line, '/');
        if (!name) continue;
        name[strcspn(name, "\n")] = 0;
        if (strcmp(name, real) == 0 && sscanf(line, "%lx-%*x %*s %lx", &start, &off) == 2 && off == 0) break;
        start = 0;
    }
    if (maps) fclose(maps);
    return start;
}

int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: firsthit SYMBOLS BINARY OUTPUT COMMAND [ARG...]\n"); return 2; }
    FILE *out = fopen(argv[3], "a");
    if (!out) { perror(argv[3]); return 1; }
    FILE *syms = fopen(argv[1], "r");
    if (!syms) { perror(argv[1]); return 1; }
    size_t cap = 0;
    char line[8192];
    while (fgets(line, sizeof line, syms)) {
        unsigned long off;
        char name[8192];
        if (sscanf(line, "%lx %8191s", &off, name) != 2) continue;
        if (nfns == cap) fns = realloc(fns, (cap = cap ? cap * 2 : 4096) * sizeof *fns);
        fns[nfns++] = (struct fn){ off, strdup(name), 0, 0 };
    }
    fclose(syms);
    qsort(fns, nfns, sizeof *fns, by_off);

    pid_t first = fork();
    if (first == 0) {
        ptrace(PTRACE_TRACEME, 0, 0, 0);
        execvp(argv[4], argv + 4);
        _exit(127);
    }
    int status;
    if (waitpid(first, &status, 0) < 0 || !WIFSTOPPED(status)) { fprintf(stderr, "firsthit: no exec stop\n"); return 1; }
    unsigned long base = base_of(first, argv[2]);
    if (!base) { fprintf(stderr, "firsthit: %s is not mapped by the command\n", argv[2]); return 1; }
    int mem = mem_of(first);
    for (size_t i = 0; i < nfns; i++) {
        /* Several names may share an address (folded code): one breakpoint, and all the names
         * are printed when it is hit. */
        if (i && fns[i].off == fns[i - 1].off) { fns[i].orig = fns[i - 1].orig; continue; }
        unsigned char cc = 0xcc;
        if (pread(mem, &fns[i].orig, 1, base + fns[i].off) != 1 ||
            pwrite(mem, &cc, 1, base + fns[i].off) != 1) { fns[i].hit = 1; continue; }
    }
    close(mem);
    ptrace(PTRACE_SETOPTIONS, first, 0,
           PTRACE_O_TRACECLONE | PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK | PTRACE_O_TRACEEXEC | PTRACE_O_EXITKILL);
    ptrace(PTRACE_CONT, first, 0, 0);

    int code = 0;
    for (;;) {
        pid_t pid = waitpid(-1, &status, __WALL);
        if (pid < 0) { if (errno == EINTR) continue; break; }
        if (WIFEXITED(status) || WIFSIGNALED(status)) {
            if (pid == first) code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            continue;
        }
        if (!WIFSTOPPED(status)) continue;
        int sig = WSTOPSIG(status), event = status >> 16, deliver = 0;
        if (sig == SIGTRAP && event == PTRACE_EVENT_EXEC) {
            /* Another program now: nothing of the binary's is left to see. */
            ptrace(PTRACE_DETACH, pid, 0, 0);
            continue;
        }
        if (sig == SIGTRAP && event == 0) {
            struct user_regs_struct regs;
            ptrace(PTRACE_GETREGS, pid, 0, &regs);
            struct fn *fn = find(regs.rip - 1 - base);
            if (fn && fn->orig != 0xcc) {
                int m = mem_of(pid);
                unsigned char now = 0;
                if (pread(m, &now, 1, regs.rip - 1) == 1 && now == 0xcc)
                    pwrite(m, &fn->orig, 1, regs.rip - 1);
                close(m);
                /* Every name of the address: the linker may know the code by any of them. */
                for (struct fn *alias = fn; !fn->hit && alias < fns + nfns && alias->off == fn->off; alias++)
                    fprintf(out, "%s\n", alias->name);
                fn->hit = 1;
                regs.rip -= 1;
                ptrace(PTRACE_SETREGS, pid, 0, &regs);
            } else {
                deliver = sig;
            }
        } else if (event == 0 && sig != SIGSTOP) {
            deliver = sig;
        }
        /* else a fork or clone event, or a new process's first stop */
        ptrace(PTRACE_CONT, pid, 0, deliver);
    }
    fclose(out);
    return code;
}
