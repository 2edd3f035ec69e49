/*
 * Starting a local task inside its Landlock domain without a thread per start.
 *
 * Landlock domains, no_new_privs and capabilities belong to a thread, so the Python executor
 * enters an attempt's domain in a throwaway thread that then starts the task (which inherits
 * it): ~0.2 ms of the scheduler's CPU per task went to that thread, its Python and the
 * ctypes calls around glibc's posix_spawn (docs/benchmarks.md, "Fourteenth round"). Here the
 * child itself enters the domain between vfork and exec, as posix_spawn's child applies its
 * file actions: the calling thread is only suspended until the exec, the scheduler's other
 * threads run on, and nothing of the scheduler is restricted.
 *
 * What the task gets is what stratoflow.adapters.local.spawn.spawn gives it, plus the domain:
 * stdin /dev/null, stdout and stderr the log, every other descriptor closed, a session of its
 * own, every signal at its default disposition and none blocked, its work dir as cwd, exactly
 * the given environment; as root, no capability (the bounding set emptied, then capset; with
 * no_new_privs an exec as uid 0 grants none back); no_new_privs; each ruleset entered in turn;
 * as root, a mount namespace of its own in which every mount is read-only but what it may write
 * (see read_only_but()).
 *
 * Built by `make install` into the virtualenv (not the package: the AWS layer never loads it)
 * and loaded by spawn.py through ctypes, which gives up the GIL for the call. Where it is
 * missing the executor starts tasks as before.
 *
 * Only async-signal-safe calls in the child: it runs on the caller's stack, sharing its
 * memory, until it execs or exits.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include <sys/socket.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#ifndef SYS_landlock_restrict_self
#define SYS_landlock_restrict_self 446
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
/* the same number on x86-64 and aarch64 (every architecture since 5.1's common table) */
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
/* <linux/mount.h>'s, spelled here: it clashes with glibc's <sys/mount.h> before 2.36 */
#define SF_OPEN_TREE_CLONE 1
#define SF_AT_RECURSIVE 0x8000
#define SF_MOVE_MOUNT_F_EMPTY_PATH 0x4
#define SF_MOUNT_ATTR_RDONLY 0x1
struct sf_mount_attr {
    uint64_t attr_set, attr_clr, propagation, userns_fd;
};
/* the most paths read_only_but() keeps writable besides the work dir (spawn.py refuses more) */
#define SF_MAX_WRITABLE 64

/* sf_confined_spawn's flags */
#define SF_DROP_CAPS 1      /* root: give up every capability */
#define SF_NO_UNIX_SOCKETS 2 /* no socket(AF_UNIX) (seccomp): see no_unix_sockets() */
#define SF_READ_ONLY_MOUNTS 4 /* every mount read-only but the writable paths: read_only_but() */

#if defined(__x86_64__)
#define SF_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define SF_AUDIT_ARCH AUDIT_ARCH_AARCH64
#else
#error "native/confine.c knows the seccomp architecture of x86-64 and aarch64 only"
#endif

/* Where the child failed: the caller names it in its error. */
enum sf_stage {
    SF_OK = 0,
    SF_SIGNALS,
    SF_SESSION,
    SF_DESCRIPTORS,
    SF_CWD,
    SF_CAPABILITIES,
    SF_NO_NEW_PRIVS,
    SF_LANDLOCK,
    SF_CLOSE,
    SF_EXEC,
    SF_SECCOMP,
    SF_MOUNT_NS,
    SF_MOUNT_PRIVATE,
    SF_MOUNT_CLONE,
    SF_MOUNT_READ_ONLY,
    SF_MOUNT_WRITABLE,
};

struct sf_failure {
    int stage;
    int error;
};

/* Empty the bounding set, then every other set. Without CAP_SETPCAP (a root scheduler started
 * without it) the bounding set cannot be emptied: no_new_privs, set after this whenever a
 * domain is entered, still keeps an exec as uid 0 from gaining what capset gave up. A drop
 * makes new credentials (~3 us each): only what is there is dropped (the executor's start
 * threads have emptied theirs, which their children inherit). */
static int drop_capabilities(int tolerate_bounding) {
    for (int cap = 0; cap < 64; cap++) {
        int held = prctl(PR_CAPBSET_READ, cap, 0, 0, 0);
        if (held < 0) break; /* EINVAL: past the kernel's last capability */
        if (held == 1 && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
            if (errno == EPERM && tolerate_bounding) break;
            return -1;
        }
    }
    /* capset also clears the ambient set (nothing is permitted any more) */
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    return syscall(SYS_capset, &header, data) == 0 ? 0 : -1;
}

/* A task of a root server is uid 0 even without capabilities, and Landlock does not cover
 * connecting to a Unix socket's path: Docker's or systemd's socket would give it root on the
 * machine. Under this filter it cannot make a socket to connect with: socket(AF_UNIX) fails
 * with EACCES (socketpair, which asyncio and multiprocessing use, still works: its sockets
 * are connected to each other only); io_uring, which could make one without a syscall, is
 * refused; another architecture's syscalls (i386, x32) kill the process. */
static int no_unix_sockets(void) {
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SF_AUDIT_ARCH, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
#if defined(__x86_64__)
        BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000 /* __X32_SYSCALL_BIT */, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
#endif
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_socket, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        /* the family: the low half of the first argument (an int) */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_UNIX, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EACCES),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog program = {(unsigned short)(sizeof code / sizeof code[0]), code};
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program, 0, 0);
}

/* A task of a root server is uid 0 even without capabilities, and Landlock has no right for
 * chmod, chown, utime nor the extended attributes: it could chmod 4755 a copy of a shell root
 * owns, open the home to everyone, or lock another project out of its work dir. In a mount
 * namespace of its own, every mount is read-only (those calls fail with EROFS there) but a
 * clone of what Landlock lets it write: its work dir (the cwd, fchdir'd to already) and each
 * of `writable` (resolved paths; one missing is skipped, as Landlock skips it). Each clone is
 * taken before the mounts are made read-only, so it keeps the flags the host gives it (a
 * read-only one stays so), and is mounted back on its own path after. Devices still open for
 * writing on a read-only mount, and the log is the descriptor the caller opened (on the
 * host's mount). Every mount is made private first: nothing done here reaches the host, and
 * the namespace goes with the task's last process. The cwd ends in the work dir's clone (by
 * its descriptor, no path looked up): a cwd left on the host's mount would reach, through
 * "..", every mount of the host, writable. Needs CAP_SYS_ADMIN: before the capabilities go,
 * and before Landlock, which forbids changing mounts. */
static int read_only_but(char *const writable[], int n_writable, int *stage) {
    int trees[SF_MAX_WRITABLE + 1];
    *stage = SF_MOUNT_NS;
    if (n_writable < 0 || n_writable > SF_MAX_WRITABLE) {
        errno = E2BIG;
        return -1;
    }
    if (unshare(CLONE_NEWNS) != 0) return -1;
    *stage = SF_MOUNT_PRIVATE;
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) return -1;
    *stage = SF_MOUNT_CLONE;
    for (int i = 0; i <= n_writable; i++) {
        const char *path = i == 0 ? "." : writable[i - 1];
        trees[i] = syscall(SYS_open_tree, AT_FDCWD, path,
                           SF_OPEN_TREE_CLONE | O_CLOEXEC | SF_AT_RECURSIVE);
        if (trees[i] < 0 && (i == 0 || errno != ENOENT)) return -1;
    }
    *stage = SF_MOUNT_READ_ONLY; /* mount_setattr came with 5.12, before Landlock (5.13) */
    struct sf_mount_attr read_only = {SF_MOUNT_ATTR_RDONLY, 0, 0, 0};
    if (syscall(SYS_mount_setattr, AT_FDCWD, "/", SF_AT_RECURSIVE, &read_only,
                sizeof read_only) != 0)
        return -1;
    *stage = SF_MOUNT_WRITABLE;
    for (int i = 0; i <= n_writable; i++)
        if (trees[i] >= 0 && syscall(SYS_move_mount, trees[i], "", AT_FDCWD,
                                     i == 0 ? "." : writable[i - 1],
                                     SF_MOVE_MOUNT_F_EMPTY_PATH) != 0)
            return -1;
    *stage = SF_CWD;
    return fchdir(trees[0]); /* the others are closed with the rest (close_range) */
}

/* Discard the signals that arrived while everything was blocked (setting SIG_IGN discards a
 * pending signal), keeping each disposition as it is (SIG_DFL or SIG_IGN by now). */
static int discard_pending(void) {
    sigset_t pending;
    if (sigpending(&pending) != 0) return -1;
    struct sigaction ign, was;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP || sigismember(&pending, sig) != 1) continue;
        if (sigaction(sig, &ign, &was) != 0) return -1;
        if (was.sa_handler != SIG_IGN && sigaction(sig, &was, NULL) != 0) return -1;
    }
    return 0;
}

/* noinline: its frame lies below the caller's, whose variables the parent reads after */
static void __attribute__((noreturn, noinline))
child(const char *path, char *const argv[], char *const envp[], int cwd_fd, int out_fd,
      int null_fd, const int *rulesets, int n_rulesets, int flags, char *const writable[],
      int n_writable, volatile struct sf_failure *failure) {
    int stage = SF_SIGNALS;
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++) {
        struct sigaction old;
        if (sig == SIGKILL || sig == SIGSTOP || sigaction(sig, NULL, &old) != 0) continue;
        /* a handler of the scheduler's, and what Python ignores (SIGPIPE, SIGXFSZ): default */
        if (old.sa_handler != SIG_DFL &&
            (old.sa_handler != SIG_IGN || sig == SIGPIPE || sig == SIGXFSZ))
            if (sigaction(sig, &dfl, NULL) != 0) goto fail;
    }
    /* everything stays blocked until the exec: a signal now would find the scheduler's
     * memory in this process (a core dump of it) */
    stage = SF_SESSION;
    if (setsid() < 0) goto fail;
    stage = SF_DESCRIPTORS;
    if (dup2(null_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(out_fd, 2) < 0) goto fail;
    stage = SF_CWD;
    if (fchdir(cwd_fd) != 0) goto fail;
    if ((flags & SF_READ_ONLY_MOUNTS) && read_only_but(writable, n_writable, &stage) != 0)
        goto fail;
    if (flags & SF_DROP_CAPS) {
        stage = SF_CAPABILITIES;
        if (drop_capabilities(n_rulesets > 0) != 0) goto fail;
    }
    if (n_rulesets > 0) {
        stage = SF_NO_NEW_PRIVS;
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) goto fail;
        stage = SF_LANDLOCK;
        for (int i = 0; i < n_rulesets; i++)
            if (syscall(SYS_landlock_restrict_self, rulesets[i], 0) != 0) goto fail;
    }
    if (flags & SF_NO_UNIX_SOCKETS) {
        stage = SF_NO_NEW_PRIVS; /* a filter needs it (no capability is left to waive it) */
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) goto fail;
        stage = SF_SECCOMP;
        if (no_unix_sockets() != 0) goto fail;
    }
    stage = SF_CLOSE;
    if (syscall(SYS_close_range, 3, ~0U, 0) != 0) goto fail; /* Linux 5.9, before Landlock */
    stage = SF_SIGNALS;
    sigset_t none;
    sigemptyset(&none);
    if (discard_pending() != 0 || sigprocmask(SIG_SETMASK, &none, NULL) != 0) goto fail;
    stage = SF_EXEC;
    execve(path, argv, envp);
fail:
    failure->error = errno != 0 ? errno : EINVAL;
    failure->stage = stage;
    _exit(127);
}

/* What spawn.py checks before it calls anything: a helper built from another version of this
 * file (a checkout updated, `make install` not run again) is not called with the wrong
 * arguments. */
int sf_abi_version(void) { return 3; }

/*
 * Start `path` (no PATH search) with `argv` and `envp` (NULL-terminated), cwd the directory of
 * `cwd_fd`, stdout and stderr `out_fd`, stdin `null_fd`, inside each of the `n_rulesets`
 * Landlock rulesets (none: no domain, no no_new_privs), as root without capabilities when
 * `flags` holds SF_DROP_CAPS, without Unix sockets when it holds SF_NO_UNIX_SOCKETS, in a mount
 * namespace where only its cwd and the `n_writable` paths of `writable` are not read-only when
 * it holds SF_READ_ONLY_MOUNTS. Returns the child's pid; or -1 with `*stage` and `*error`
 * saying where and why it failed (the child, if one was made, has been reaped).
 */
int sf_confined_spawn(const char *path, char *const argv[], char *const envp[], int cwd_fd,
                      int out_fd, int null_fd, const int *rulesets, int n_rulesets,
                      int flags, char *const writable[], int n_writable, int *stage,
                      int *error) {
    volatile struct sf_failure failure = {SF_OK, 0};
    sigset_t all, old;
    sigfillset(&all);
    /* no handler of the scheduler's may run in the child, which shares its memory */
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t pid = vfork();
    if (pid == 0)
        child(path, argv, envp, cwd_fd, out_fd, null_fd, rulesets, n_rulesets, flags, writable,
              n_writable, &failure);
    int vfork_error = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        *stage = SF_OK;
        *error = vfork_error;
        return -1;
    }
    if (failure.stage != SF_OK) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        *stage = failure.stage;
        *error = failure.error;
        return -1;
    }
    return pid;
}
