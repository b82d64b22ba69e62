/* Per-thread seccomp allowlists, each syscall with its reason, and the SIGSYS death message. */
#include "vmm/seccomp.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/fs.h>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

#include "vmm/log.h"

static bool config_has_rw_drive(const struct vm_config *cfg)
{
    for (unsigned i = 0; i < cfg->ndrives; i++)
        if (!cfg->drive[i].read_only)
            return true;
    return false;
}

/*
 * When the filters go on (vmm.c and vcpu.c call seccomp_install):
 * - A vCPU thread loads SECCOMP_VCPU as the first thing it does, before its first KVM_RUN, so no
 *   guest instruction ever runs beside an unfiltered vCPU thread.
 * - The main thread loads SECCOMP_VMM right after vm_start(), before the loop serves any guest
 *   or client event. The vCPU threads exist by then and so do not inherit it.
 * - Before boot the main thread is NOT filtered. With --api-sock and no boot configuration,
 *   InstanceStart builds the VM on the main thread: it opens the kernel, drives and /dev/kvm,
 *   creates KVM objects, maps RAM and starts threads, and the PUT handlers open log, metrics
 *   and socket files. Allowing all that would leave the running VMM with a filter twice as
 *   wide for the rest of its life, to cover a phase in which no guest code has run yet. That
 *   phase serves only the local API socket (mode 0600); run amber under --chroot/--uid (and a
 *   new mount namespace) to bound it.
 * Every filter allows what the kernel may issue on a thread's behalf, whatever the thread does:
 * rt_sigreturn (a handler returns), restart_syscall (a timed futex or sleep that a stop, task
 * work such as an io_uring completion, or a signal interrupted is resumed through its restart
 * block; Linux 6.12 does this to the loop thread's timed wait in pause_request), exit and
 * exit_group. A valid request must never kill the VM; the unit tests check all four.
 * Why SCMP_ACT_TRAP and not SCMP_ACT_KILL_PROCESS: the kernel kills without a word and the
 * operator sees only "killed by SIGSYS". The trap handler names the syscall on stderr first,
 * then exits; a thread that traps again inside the handler (SIGSYS blocked there) is killed by
 * the kernel, so a violation can never continue.
 */

enum rule {
    ANY,          /* any arguments */
    IOCTL,        /* request number in the kind's ioctl list */
    AF_UNIX_ONLY, /* socket(AF_UNIX, ...) */
    NO_EXEC,      /* mmap/mprotect without PROT_EXEC */
    OPEN_FLAGS,   /* openat of an existing file to read; to read and write only with a rw drive */
    SETFL_ONLY,   /* fcntl(fd, F_SETFL, ...) */
    IF_EXIT_FILE, /* only when --exit-file is set (any arguments then) */
    IF_API_SOCK,  /* only when an API socket is served (any arguments then) */
};

struct allow {
    int nr;
    const char *name;
    enum rule rule;
    const char *reason;
};

#define ALLOW(sys, why)                                                                            \
    {                                                                                              \
        SCMP_SYS(sys), #sys, ANY, why                                                              \
    }
#define ALLOW_IF(sys, rule, why)                                                                   \
    {                                                                                              \
        SCMP_SYS(sys), #sys, rule, why                                                             \
    }

/* The main thread once the VM runs: the epoll loop, device back-ends, the API and teardown. */
static const struct allow vmm_allow[] = {
    /* BEGIN vmm (scripts/seccomp-audit.sh reads these lists). The snapshot/create entries
     * (ftruncate, mincore, pwrite64, fsync; openat and the KVM_GET_* ioctls through their
     * rules) serve PUT /snapshot/create: a paused VM's state and RAM go to two new files. */
    ALLOW(accept4, "new API clients and host-initiated vsock connections"),
    ALLOW(brk, "malloc"),
    ALLOW(clock_gettime, "timestamps (pause, API, metrics) when the vDSO falls back"),
    ALLOW(close, "closing client, vsock and swapped drive fds"),
    ALLOW(connect, "guest-initiated vsock connections to <uds_path>_<port>"),
    ALLOW(epoll_ctl, "the event loop's watches"),
    ALLOW(epoll_wait, "the event loop"),
    ALLOW(exit, "a thread ends (the kernel's own exit path for a filtered thread)"),
    ALLOW(exit_group, "process exit, and the SIGSYS handler"),
    ALLOW_IF(fcntl, SETFL_ONLY,
             "F_SETFL only: a swapped drive is opened O_NONBLOCK (a FIFO cannot stall the open), "
             "which is cleared once fstat shows a regular file or block device"),
    ALLOW(futex, "device locks, the pause barrier and vCPU joins"),
    ALLOW(getpid, "pthread_kill (vCPU kicks) resolves our tgid"),
    ALLOW(getrandom, "virtio-rng"),
    ALLOW(io_uring_enter, "virtio-blk I/O submission and completion"),
    ALLOW(io_uring_register, "PATCH /drives swaps the ring's registered files"),
    ALLOW_IF(ioctl, IOCTL, "KVM_IRQ_LINE, TUNSETOFFLOAD, BLKGETSIZE64, TCSETS only"),
    ALLOW(madvise, "malloc trimming and thread stack release"),
    ALLOW_IF(mmap, NO_EXEC, "malloc, without PROT_EXEC"),
    ALLOW_IF(mprotect, NO_EXEC, "malloc arenas, without PROT_EXEC"),
    ALLOW(mremap, "realloc of large buffers"),
    ALLOW(munmap, "free, vCPU run areas and guest RAM at teardown"),
    ALLOW(newfstatat, "fstat of a swapped drive, lstat of the API socket at exit"),
    ALLOW_IF(openat, OPEN_FLAGS,
             "PATCH /drives backing files: O_RDONLY, O_RDWR with a rw drive; with the API, "
             "snapshot/create's two new files"),
    ALLOW(read, "eventfds, timerfds, signalfd, TAP and console input"),
    ALLOW(readv, "TAP receive"),
    ALLOW(recvfrom, "API requests and vsock data"),
    ALLOW_IF(rename, IF_EXIT_FILE, "the exit file is renamed into place"),
    ALLOW(restart_syscall, "the kernel resumes an interrupted timed wait (futex, io_uring)"),
    ALLOW(rt_sigprocmask, "pthread_kill blocks signals around tgkill"),
    ALLOW(rt_sigreturn, "return from signal handlers"),
    ALLOW(sendto, "API responses and vsock data"),
    ALLOW(shutdown, "vsock half-close"),
    ALLOW_IF(socket, AF_UNIX_ONLY, "AF_UNIX only: guest-initiated vsock connections"),
    ALLOW(tgkill, "kicking vCPUs out of KVM_RUN for pause and exit"),
    ALLOW(timerfd_settime, "vsock and API timers"),
    ALLOW_IF(unlink, IF_API_SOCK, "removing the API socket at exit"),
    ALLOW(write, "eventfds, logs, metrics, console and TAP"),
    ALLOW(writev, "TAP transmit"),
    ALLOW(ftruncate, "snapshot/create: the memory file's size (a sparse file)"),
    ALLOW(mincore, "snapshot/create: skip guest pages that were never touched"),
    ALLOW(pwrite64, "snapshot/create: resident, non-zero guest pages to the memory file"),
    ALLOW(fsync, "snapshot/create with fsync requested"),
    ALLOW(lseek, "snapshot/create Diff: SEEK_DATA/SEEK_HOLE check that the holes were kept"),
    ALLOW(pread64, "the SIGUSR2 stall report reads each vCPU's KVM counters (its stats fd)"),
    /* END vmm */
};

/* A vCPU thread: KVM_RUN and what PIO/MMIO exits do (UART, i8042, virtio registers). */
static const struct allow vcpu_allow[] = {
    /* BEGIN vcpu */
    ALLOW(brk, "malloc on a vCPU thread (glibc may grow the heap, e.g. when logging)"),
    ALLOW(clock_gettime, "when the vDSO falls back"),
    ALLOW(exit, "the thread ends"),
    ALLOW(exit_group, "the SIGSYS handler"),
    ALLOW(futex, "device locks and the pause barrier"),
    ALLOW(io_uring_enter, "a virtio-blk reset waits for in-flight I/O"),
    ALLOW_IF(ioctl, IOCTL,
             "KVM_RUN, KVM_KVMCLOCK_CTRL, KVM_IRQ_LINE, and reading state for a fault or "
             "stall report (KVM_TRANSLATE: the bytes at RIP)"),
    ALLOW(madvise, "malloc trimming and the stack release at thread exit"),
    ALLOW_IF(mmap, NO_EXEC, "a malloc arena for this thread, without PROT_EXEC"),
    ALLOW_IF(mprotect, NO_EXEC, "growing that arena, without PROT_EXEC"),
    ALLOW(munmap, "malloc"),
    ALLOW(read, "a virtio-blk reset clears its completion eventfd"),
    ALLOW(restart_syscall, "the kernel resumes an interrupted timed wait (the pause barrier)"),
    ALLOW(rt_sigprocmask, "glibc blocks signals while a thread exits"),
    ALLOW(rt_sigreturn, "return from the kick handler"),
    ALLOW(timerfd_settime, "a vsock reset hands its teardown to the loop"),
    ALLOW(write, "console output, irq/kick/loop eventfds and logs"),
    /* END vcpu */
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

static const unsigned long vmm_ioctls[] = {KVM_IRQ_LINE, TUNSETOFFLOAD, BLKGETSIZE64, TCSETS,
#ifdef AMBER_TEST_HOOKS
                                           /* AMBER_TEST_FREEZE_CLOCK (vmm/vm.c), tests only */
                                           KVM_GET_CLOCK, KVM_SET_CLOCK
#endif
};
/* snapshot/create reads a paused VM's state (vmm/x86/cpu_state.c, vm_state.c); only reads. */
static const unsigned long vmm_snapshot_ioctls[] = {
    KVM_GET_REGS,  KVM_GET_SREGS,          KVM_GET_FPU,         KVM_GET_XSAVE,     KVM_GET_XSAVE2,
    KVM_GET_XCRS,  KVM_GET_LAPIC,          KVM_GET_VCPU_EVENTS, KVM_GET_DEBUGREGS, KVM_GET_MP_STATE,
    KVM_GET_MSRS,  KVM_GET_MSR_INDEX_LIST, KVM_GET_CPUID2,      KVM_GET_IRQCHIP,   KVM_GET_PIT2,
    KVM_GET_CLOCK, KVM_CHECK_EXTENSION,    KVM_GET_DIRTY_LOG};
static const unsigned long vcpu_ioctls[] = {KVM_RUN,          KVM_KVMCLOCK_CTRL,   KVM_GET_REGS,
                                            KVM_GET_SREGS,    KVM_GET_VCPU_EVENTS, KVM_IRQ_LINE,
                                            KVM_GET_MP_STATE, KVM_TRANSLATE};

static const struct allow *table(enum seccomp_kind kind, unsigned *n)
{
    *n = kind == SECCOMP_VMM ? NELEM(vmm_allow) : NELEM(vcpu_allow);
    return kind == SECCOMP_VMM ? vmm_allow : vcpu_allow;
}

unsigned seccomp_allowed_count(enum seccomp_kind kind)
{
    unsigned n;
    table(kind, &n);
    return n;
}

bool seccomp_allowed_at(enum seccomp_kind kind, unsigned i, const char **name, const char **reason)
{
    unsigned n;
    const struct allow *t = table(kind, &n);
    if (i >= n)
        return false;
    *name = t[i].name;
    *reason = t[i].reason;
    return true;
}

static int add_rule(scmp_filter_ctx ctx, enum seccomp_kind kind, const struct allow *a,
                    const struct vm_config *cfg)
{
    /* The kernel takes the request as an unsigned int: compare the low 32 bits. */
    const unsigned long *ioctls = kind == SECCOMP_VMM ? vmm_ioctls : vcpu_ioctls;
    unsigned nioctls = kind == SECCOMP_VMM ? NELEM(vmm_ioctls) : NELEM(vcpu_ioctls);
    int rc = 0;

    switch (a->rule) {
    case ANY:
        return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, a->nr, 0);
    case IOCTL:
        for (unsigned i = 0; i < nioctls && !rc; i++)
            rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, a->nr, 1,
                                  SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffUL, ioctls[i]));
        for (unsigned i = 0; kind == SECCOMP_VMM && i < NELEM(vmm_snapshot_ioctls) && !rc; i++)
            rc =
                seccomp_rule_add(ctx, SCMP_ACT_ALLOW, a->nr, 1,
                                 SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffUL, vmm_snapshot_ioctls[i]));
        return rc;
    case AF_UNIX_ONLY:
        return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, a->nr, 1, SCMP_A0(SCMP_CMP_EQ, AF_UNIX));
    case NO_EXEC:
        return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, a->nr, 1,
                                SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
    case SETFL_ONLY:
        return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, a->nr, 1, SCMP_A1(SCMP_CMP_EQ, F_SETFL));
    case OPEN_FLAGS: {
        /* An existing file only (no O_CREAT, O_TMPFILE, O_TRUNC, O_APPEND): to read, or to read
         * and write when some drive is writable (a PATCH /drives swap reopens it O_RDWR). The
         * exit file is opened before the filter loads (vmm.c), so nothing here creates files. */
        const uint64_t mask = O_ACCMODE | O_CREAT | O_TRUNC | O_APPEND | __O_TMPFILE;
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, a->nr, 1,
                              SCMP_A2(SCMP_CMP_MASKED_EQ, mask, O_RDONLY));
        if (!rc && cfg && config_has_rw_drive(cfg))
            rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, a->nr, 1,
                                  SCMP_A2(SCMP_CMP_MASKED_EQ, mask, O_RDWR));
        /* Snapshot (board/snapshot.c create_file): PUT /snapshot/create creates the state and
         * memory files, so only an amber serving the API may, and only with exactly
         * O_WRONLY|O_CREAT|O_TRUNC (no O_EXCL, O_APPEND or O_TMPFILE). */
        if (!rc && cfg && cfg->api_sock[0] && !cfg->no_api) {
            const uint64_t create = mask | O_EXCL;
            rc =
                seccomp_rule_add(ctx, SCMP_ACT_ALLOW, a->nr, 1,
                                 SCMP_A2(SCMP_CMP_MASKED_EQ, create, O_WRONLY | O_CREAT | O_TRUNC));
        }
        return rc;
    }
    case IF_EXIT_FILE:
        return cfg && cfg->exit_file[0] ? seccomp_rule_add(ctx, SCMP_ACT_ALLOW, a->nr, 0) : 0;
    case IF_API_SOCK:
        return cfg && cfg->api_sock[0] && !cfg->no_api
                   ? seccomp_rule_add(ctx, SCMP_ACT_ALLOW, a->nr, 0)
                   : 0;
    }
    return -EINVAL;
}

scmp_filter_ctx seccomp_build(enum seccomp_kind kind, const struct vm_config *cfg)
{
    uint32_t deny = SCMP_ACT_TRAP;
#ifdef AMBER_TEST_HOOKS
    /* scripts/seccomp-audit.sh: log instead of trapping, so one run sees every violation. */
    if (cfg && !strcmp(cfg->id, "seccomp-audit"))
        deny = SCMP_ACT_LOG;
#endif
    scmp_filter_ctx ctx = seccomp_init(deny);
    if (!ctx)
        return NULL;
    unsigned n;
    const struct allow *t = table(kind, &n);
    for (unsigned i = 0; i < n; i++) {
        int rc = add_rule(ctx, kind, &t[i], cfg);
        if (rc) {
            log_err("seccomp: cannot add the rule for %s: %s", t[i].name, strerror(-rc));
            seccomp_release(ctx);
            return NULL;
        }
    }
    return ctx;
}

/* --- the SIGSYS handler: async-signal-safe only (write, exit_group) --- */

static const char *const syscall_names[] = {
#include "amber_syscall_names.h"
};

static size_t put_str(char *buf, size_t pos, size_t cap, const char *s)
{
    while (*s && pos < cap)
        buf[pos++] = *s++;
    return pos;
}

static size_t put_uint(char *buf, size_t pos, size_t cap, unsigned v)
{
    char digits[12];
    int n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v && n < (int)sizeof(digits));
    while (n > 0 && pos < cap)
        buf[pos++] = digits[--n];
    return pos;
}

static void sigsys_handler(int sig, siginfo_t *si, void *uctx)
{
    (void)sig;
    (void)uctx;
    unsigned nr = (unsigned)si->si_syscall;
    const char *name = nr < NELEM(syscall_names) && syscall_names[nr] ? syscall_names[nr] : "?";
    char line[128];
    size_t cap = sizeof(line) - 1, pos = 0;
    pos = put_str(line, pos, cap, "amber: seccomp violation: syscall ");
    pos = put_uint(line, pos, cap, nr);
    pos = put_str(line, pos, cap, " (");
    pos = put_str(line, pos, cap, name);
    pos = put_str(line, pos, cap, ")");
    line[pos++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, pos);
    (void)w;
    syscall(SYS_exit_group, SECCOMP_VIOLATION_STATUS);
}

int seccomp_install_handler(void)
{
    struct sigaction sa = {.sa_sigaction = sigsys_handler, .sa_flags = SA_SIGINFO};
    sigemptyset(&sa.sa_mask);
    return sigaction(SIGSYS, &sa, NULL) < 0 ? -errno : 0;
}

/* --seccomp-filter: a raw classic-BPF program, loaded as it is on every thread kind. */
static int install_file(const char *path)
{
    struct sock_filter insns[BPF_MAXINSNS];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, insns, sizeof(insns));
    int e = errno;
    close(fd);
    if (n < 0)
        return -e;
    if (n == 0 || n % (ssize_t)sizeof(insns[0]))
        return -EINVAL;
    struct sock_fprog prog = {.len = (unsigned short)(n / (ssize_t)sizeof(insns[0])),
                              .filter = insns};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return -errno;
    return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0 ? -errno : 0;
}

#ifdef AMBER_TEST_HOOKS
/* Test builds only (build/test-hooks/amber): a sandbox id asks for a forbidden syscall right
 * after a filter is loaded, so tests can watch the process die with the expected line
 * (--id seccomp-violate-vmm or seccomp-violate-vcpu); --id seccomp-audit logs instead of
 * trapping (see seccomp_build). */
static void test_hook(enum seccomp_kind kind, const struct vm_config *cfg)
{
    if (kind == SECCOMP_VMM && !strcmp(cfg->id, "seccomp-violate-vmm")) {
        log_warn("test hook: socket(AF_INET) under the vmm filter");
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        log_err("test hook: socket(AF_INET) was allowed (fd %d)", fd);
    } else if (kind == SECCOMP_VCPU && !strcmp(cfg->id, "seccomp-violate-vcpu")) {
        log_warn("test hook: openat under the vcpu filter");
        int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        log_err("test hook: openat was allowed (fd %d)", fd);
    }
}
#endif

int seccomp_install(enum seccomp_kind kind, const struct vm_config *cfg)
{
    int rc;
    if (cfg->seccomp_filter[0]) {
        rc = install_file(cfg->seccomp_filter);
        if (rc)
            log_err("seccomp: cannot load %s: %s", cfg->seccomp_filter, strerror(-rc));
        return rc;
    }
    scmp_filter_ctx ctx = seccomp_build(kind, cfg);
    if (!ctx)
        return -ENOMEM;
    /* PR_SET_NO_NEW_PRIVS is set by libseccomp (SCMP_FLTATR_CTL_NNP defaults to on). */
    rc = seccomp_load(ctx);
    seccomp_release(ctx);
    if (rc) {
        log_err("seccomp: cannot load the %s filter: %s", kind == SECCOMP_VMM ? "vmm" : "vcpu",
                strerror(-rc));
        return rc;
    }
#ifdef AMBER_TEST_HOOKS
    test_hook(kind, cfg);
#endif
    return 0;
}
