/* Seccomp allowlists: table sanity, and real filters loaded in forked children (no KVM needed). */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <linux/futex.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "vmm/seccomp.h"

/* What a child does after its filter is on; returns 0 if every allowed call behaved. */
typedef int (*child_fn)(void);

struct outcome {
    int status;    /* exit status, or -1 if killed by a signal */
    char err[512]; /* what the child wrote to stderr */
};

static struct outcome run_filtered(enum seccomp_kind kind, const struct vm_config *cfg, child_fn fn)
{
    struct outcome o = {.status = -1};
    int pipefd[2];
    assert_int_equal(pipe(pipefd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(pipefd[1], STDERR_FILENO);
        close(pipefd[0]);
        if (seccomp_install_handler() || seccomp_install(kind, cfg))
            _exit(100);
        _exit(fn() ? 101 : 0);
    }
    close(pipefd[1]);
    size_t len = 0;
    ssize_t n;
    while ((n = read(pipefd[0], o.err + len, sizeof(o.err) - 1 - len)) > 0)
        len += (size_t)n;
    o.err[len] = '\0';
    close(pipefd[0]);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    o.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return o;
}

static void expect_violation(struct outcome o, const char *line)
{
    if (o.status != SECCOMP_VIOLATION_STATUS || !strstr(o.err, line))
        fail_msg("want status %d and '%s', got status %d and stderr '%s'", SECCOMP_VIOLATION_STATUS,
                 line, o.status, o.err);
}

static void expect_clean(struct outcome o)
{
    if (o.status != 0)
        fail_msg("want a clean exit, got status %d and stderr '%s'", o.status, o.err);
}

/* The ASan runtime makes its own syscalls (sigaltstack on thread start and exit) that the
 * filters rightly forbid, so runs that must exit cleanly are skipped in sanitizer builds. */
#ifdef __SANITIZE_ADDRESS__
#define SKIP_UNDER_ASAN()                                                                          \
    do {                                                                                           \
        print_message("ASan's runtime makes syscalls (sigaltstack) the filters forbid\n");         \
        skip();                                                                                    \
    } while (0)
#else
#define SKIP_UNDER_ASAN() ((void)0)
#endif

static struct vm_config cfg_plain;

/* --- the vcpu filter --- */

static int vcpu_allowed(void)
{
    /* An ioctl from the list on a bad fd reaches the kernel and fails with EBADF. */
    if (ioctl(-1, KVM_RUN, 0) != -1 || errno != EBADF)
        return 1;
    if (ioctl(-1, KVM_IRQ_LINE, NULL) != -1 || errno != EBADF)
        return 1;
    void *m = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED || mprotect(m, 4096, PROT_READ) < 0 || munmap(m, 1 << 20) < 0)
        return 1;
    void *big = malloc(64 << 20); /* mmap-backed */
    free(big);
    return write(STDERR_FILENO, "", 0) < 0;
}

static int vcpu_open(void)
{
    return open("/dev/null", O_RDONLY) < 0 ? 0 : 1;
}

static int vcpu_exec_map(void)
{
    mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return 1;
}

static int vcpu_create_vm(void)
{
    ioctl(-1, KVM_CREATE_VM, 0);
    return 1;
}

static int vcpu_tun(void)
{
    ioctl(-1, TUNSETOFFLOAD, 0); /* the vmm thread's ioctl, not a vCPU's */
    return 1;
}

static int vcpu_getpid(void)
{
    getpid();
    return 1;
}

static void *vcpu_thread_body(void *arg)
{
    if (seccomp_install(SECCOMP_VCPU, arg))
        return arg;
    free(malloc(100)); /* a malloc arena for this thread */
    return NULL;       /* glibc's thread exit path runs under the filter */
}

/* A vCPU-like thread filters itself, allocates, and ends; the unfiltered main joins it. */
static int vcpu_thread_lifecycle(void)
{
    pthread_t t;
    void *ret = &ret;
    if (pthread_create(&t, NULL, vcpu_thread_body, &cfg_plain) || pthread_join(t, &ret))
        return 1;
    return ret != NULL;
}

static void test_vcpu_thread_exit(void **state)
{
    SKIP_UNDER_ASAN();
    (void)state;
    struct outcome o = {.status = -1};
    int pipefd[2];
    assert_int_equal(pipe(pipefd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(pipefd[1], STDERR_FILENO);
        _exit(seccomp_install_handler() || vcpu_thread_lifecycle() ? 1 : 0);
    }
    close(pipefd[1]);
    ssize_t n = read(pipefd[0], o.err, sizeof(o.err) - 1);
    o.err[n > 0 ? n : 0] = '\0';
    close(pipefd[0]);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    o.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    expect_clean(o);
}

static void test_vcpu_allows(void **state)
{
    SKIP_UNDER_ASAN();
    (void)state;
    expect_clean(run_filtered(SECCOMP_VCPU, &cfg_plain, vcpu_allowed));
}

static void test_vcpu_forbids(void **state)
{
    (void)state;
    expect_violation(run_filtered(SECCOMP_VCPU, &cfg_plain, vcpu_open),
                     "amber: seccomp violation: syscall 257 (openat)\n");
    expect_violation(run_filtered(SECCOMP_VCPU, &cfg_plain, vcpu_exec_map),
                     "amber: seccomp violation: syscall 9 (mmap)\n");
    expect_violation(run_filtered(SECCOMP_VCPU, &cfg_plain, vcpu_create_vm),
                     "amber: seccomp violation: syscall 16 (ioctl)\n");
    expect_violation(run_filtered(SECCOMP_VCPU, &cfg_plain, vcpu_tun),
                     "amber: seccomp violation: syscall 16 (ioctl)\n");
    expect_violation(run_filtered(SECCOMP_VCPU, &cfg_plain, vcpu_getpid),
                     "amber: seccomp violation: syscall 39 (getpid)\n");
}

/* --- the vmm filter --- */

static int vmm_allowed(void)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 1;
    close(fd);
    fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 1;
    close(fd);
    if (ioctl(-1, KVM_IRQ_LINE, NULL) != -1 || errno != EBADF)
        return 1;
    if (ioctl(-1, TUNSETOFFLOAD, 0) != -1 || errno != EBADF)
        return 1;
    return getpid() <= 0;
}

static int vmm_inet(void)
{
    socket(AF_INET, SOCK_STREAM, 0);
    return 1;
}

static int vmm_create(void)
{
    open("/tmp/amber-test-seccomp-create", O_WRONLY | O_CREAT | O_EXCL, 0600);
    return 1;
}

static int vmm_exit_file(void)
{
    char path[64];
    snprintf(path, sizeof(path), "/tmp/amber-test-seccomp-%d", (int)getpid());
    FILE *f = fopen(path, "we");
    if (!f)
        return 1;
    fputs("{}", f);
    fclose(f);
    return unlink(path) < 0;
}

/* The exit file's temporary is created before the filter; only the rename runs under it. */
static int vmm_exit_rename(void)
{
    /* Missing files: the call reaches the kernel (allowed) and fails with ENOENT. */
    return rename("/nonexistent-amber-a", "/nonexistent-amber-b") == -1 && errno == ENOENT ? 0 : 1;
}

static int vmm_api_unlink(void)
{
    return unlink("/nonexistent-amber-sock") == -1 && errno == ENOENT ? 0 : 1;
}

static int vmm_open_rdwr(void)
{
    int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return 1;
    close(fd);
    return 0;
}

static int vmm_open_trunc(void)
{
    open("/dev/null", O_WRONLY | O_TRUNC | O_CLOEXEC);
    return 1;
}

static int vmm_open_append(void)
{
    open("/dev/null", O_WRONLY | O_APPEND | O_CLOEXEC);
    return 1;
}

static int vmm_open_rdwr_trunc(void)
{
    open("/dev/null", O_RDWR | O_TRUNC | O_CLOEXEC);
    return 1;
}

/* What PUT /snapshot/create does (board/snapshot.c): create both files, size, probe, write. */
static int vmm_snapshot_files(void)
{
    char path[64];
    snprintf(path, sizeof(path), "/tmp/amber-test-seccomp-snap-%d", (int)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return 1;
    static char page[4096] __attribute__((aligned(4096)));
    unsigned char vec;
    int bad = ftruncate(fd, 8192) < 0 || mincore(page, sizeof(page), &vec) < 0 ||
              pwrite(fd, page, sizeof(page), 4096) != (ssize_t)sizeof(page) || fsync(fd) < 0;
    if (ioctl(-1, KVM_GET_REGS, NULL) != -1 || errno != EBADF)
        bad = 1;
    close(fd);
    return unlink(path) < 0 || bad;
}

static int vmm_create_vm(void)
{
    ioctl(-1, KVM_CREATE_VM, 0);
    return 1;
}

static int vmm_fork(void)
{
    fork();
    return 1;
}

static int vmm_kvm_run(void)
{
    ioctl(-1, KVM_RUN, 0);
    return 1;
}

static void test_vmm_allows(void **state)
{
    SKIP_UNDER_ASAN();
    (void)state;
    expect_clean(run_filtered(SECCOMP_VMM, &cfg_plain, vmm_allowed));
    struct vm_config with_exit = cfg_plain;
    strcpy(with_exit.exit_file, "/tmp/x");
    expect_clean(run_filtered(SECCOMP_VMM, &with_exit, vmm_exit_rename));
    struct vm_config with_api = cfg_plain;
    strcpy(with_api.api_sock, "/tmp/api.sock");
    expect_clean(run_filtered(SECCOMP_VMM, &with_api, vmm_api_unlink));
    expect_clean(run_filtered(SECCOMP_VMM, &with_api, vmm_snapshot_files));
    struct vm_config with_rw = cfg_plain;
    with_rw.ndrives = 1;
    expect_clean(run_filtered(SECCOMP_VMM, &with_rw, vmm_open_rdwr));
}

/* What the narrowing took away: writes to existing files unless a drive is writable, O_TRUNC
 * and O_APPEND always, creating the exit file, rename without an exit file, unlink without an
 * API socket. */
static void test_vmm_narrowed(void **state)
{
    (void)state;
    const char *open_line = "amber: seccomp violation: syscall 257 (openat)\n";
    struct vm_config ro_drive = cfg_plain;
    ro_drive.ndrives = 1;
    ro_drive.drive[0].read_only = true;
    expect_violation(run_filtered(SECCOMP_VMM, &cfg_plain, vmm_open_rdwr), open_line);
    expect_violation(run_filtered(SECCOMP_VMM, &ro_drive, vmm_open_rdwr), open_line);
    struct vm_config rw_drive = cfg_plain;
    rw_drive.ndrives = 1;
    strcpy(rw_drive.exit_file, "/tmp/x");
    expect_violation(run_filtered(SECCOMP_VMM, &rw_drive, vmm_open_trunc), open_line);
    expect_violation(run_filtered(SECCOMP_VMM, &rw_drive, vmm_open_rdwr_trunc), open_line);
    expect_violation(run_filtered(SECCOMP_VMM, &rw_drive, vmm_open_append), open_line);
    expect_violation(run_filtered(SECCOMP_VMM, &rw_drive, vmm_exit_file), open_line);
    expect_violation(run_filtered(SECCOMP_VMM, &cfg_plain, vmm_exit_rename),
                     "amber: seccomp violation: syscall 82 (rename)\n");
    expect_violation(run_filtered(SECCOMP_VMM, &cfg_plain, vmm_api_unlink),
                     "amber: seccomp violation: syscall 87 (unlink)\n");
    struct vm_config no_api = cfg_plain;
    strcpy(no_api.api_sock, "/tmp/api.sock");
    no_api.no_api = true;
    expect_violation(run_filtered(SECCOMP_VMM, &no_api, vmm_api_unlink),
                     "amber: seccomp violation: syscall 87 (unlink)\n");
}

static void test_vmm_forbids(void **state)
{
    (void)state;
    expect_violation(run_filtered(SECCOMP_VMM, &cfg_plain, vmm_inet),
                     "amber: seccomp violation: syscall 41 (socket)\n");
    expect_violation(run_filtered(SECCOMP_VMM, &cfg_plain, vmm_create),
                     "amber: seccomp violation: syscall 257 (openat)\n");
    /* Without an exit file, creating files is not allowed at all. */
    expect_violation(run_filtered(SECCOMP_VMM, &cfg_plain, vmm_exit_file),
                     "amber: seccomp violation: syscall 257 (openat)\n");
    expect_violation(run_filtered(SECCOMP_VMM, &cfg_plain, vmm_create_vm),
                     "amber: seccomp violation: syscall 16 (ioctl)\n");
    expect_violation(run_filtered(SECCOMP_VMM, &cfg_plain, vmm_kvm_run),
                     "amber: seccomp violation: syscall 16 (ioctl)\n");
    expect_violation(run_filtered(SECCOMP_VMM, &cfg_plain, vmm_fork),
                     "amber: seccomp violation: syscall 56 (clone)\n");
    struct vm_config with_exit = cfg_plain;
    strcpy(with_exit.exit_file, "/tmp/x");
    expect_violation(run_filtered(SECCOMP_VMM, &with_exit, vmm_create),
                     "amber: seccomp violation: syscall 257 (openat)\n");
    /* snapshot/create's files need the API; O_EXCL is never among its flags. */
    expect_violation(run_filtered(SECCOMP_VMM, &cfg_plain, vmm_snapshot_files),
                     "amber: seccomp violation: syscall 257 (openat)\n");
    struct vm_config with_api = cfg_plain;
    strcpy(with_api.api_sock, "/tmp/api.sock");
    expect_violation(run_filtered(SECCOMP_VMM, &with_api, vmm_create),
                     "amber: seccomp violation: syscall 257 (openat)\n");
}

/* --- what the kernel issues on a thread's behalf --- */

/* Every filter lists the syscalls a thread can make without asking for them. */
static void test_kernel_issued_listed(void **state)
{
    (void)state;
    const char *want[] = {"rt_sigreturn", "restart_syscall", "exit", "exit_group"};
    const enum seccomp_kind kinds[] = {SECCOMP_VMM, SECCOMP_VCPU};
    for (unsigned k = 0; k < 2; k++)
        for (unsigned w = 0; w < 4; w++) {
            bool found = false;
            const char *name, *why;
            for (unsigned i = 0; seccomp_allowed_at(kinds[k], i, &name, &why); i++)
                found |= !strcmp(name, want[w]);
            if (!found)
                fail_msg("the %s filter does not allow %s", k ? "vcpu" : "vmm", want[w]);
        }
}

/*
 * A filtered child waits on a futex with a timeout; the parent stops and continues it in the
 * middle. The kernel then resumes the wait through restart_syscall (as it does after io_uring
 * task work on Linux 6.12), which must not trap. Returns the child's outcome.
 */
static struct outcome run_restarted_wait(enum seccomp_kind kind)
{
    struct outcome o = {.status = -1};
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(ready[0]);
        if (seccomp_install_handler() || seccomp_install(kind, &cfg_plain))
            _exit(100);
        static int word;
        struct timespec ts = {.tv_sec = 1};
        if (write(ready[1], "r", 1) != 1)
            _exit(102);
        long rc = syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 0, &ts, NULL, 0);
        _exit(rc == -1 && errno == ETIMEDOUT ? 0 : 101);
    }
    close(ready[1]);
    char c;
    assert_int_equal(read(ready[0], &c, 1), 1);
    close(ready[0]);
    struct timespec gap = {.tv_nsec = 200 * 1000 * 1000};
    nanosleep(&gap, NULL); /* the child is in its wait by now */
    assert_int_equal(kill(pid, SIGSTOP), 0);
    int st;
    assert_int_equal(waitpid(pid, &st, WUNTRACED), pid);
    assert_true(WIFSTOPPED(st));
    assert_int_equal(kill(pid, SIGCONT), 0);
    assert_int_equal(waitpid(pid, &st, 0), pid);
    o.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    if (WIFSIGNALED(st))
        snprintf(o.err, sizeof(o.err), "killed by signal %d", WTERMSIG(st));
    return o;
}

static void test_restart_syscall(void **state)
{
    SKIP_UNDER_ASAN();
    (void)state;
    expect_clean(run_restarted_wait(SECCOMP_VMM));
    expect_clean(run_restarted_wait(SECCOMP_VCPU));
}

/* --seccomp-filter loads a raw BPF program: export the vcpu list and load it from the file. */
static void test_filter_file(void **state)
{
    SKIP_UNDER_ASAN();
    (void)state;
    char path[] = "/tmp/amber-test-bpf-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    scmp_filter_ctx ctx = seccomp_build(SECCOMP_VCPU, &cfg_plain);
    assert_non_null(ctx);
    assert_int_equal(seccomp_export_bpf(ctx, fd), 0);
    seccomp_release(ctx);
    close(fd);
    struct vm_config c = cfg_plain;
    strcpy(c.seccomp_filter, path);
    expect_clean(run_filtered(SECCOMP_VMM, &c, vcpu_allowed));
    expect_violation(run_filtered(SECCOMP_VMM, &c, vcpu_open),
                     "amber: seccomp violation: syscall 257 (openat)\n");
    strcpy(c.seccomp_filter, "/nonexistent.bpf");
    struct outcome o = run_filtered(SECCOMP_VMM, &c, vcpu_allowed);
    assert_int_equal(o.status, 100);
    unlink(path);
}

/* Every entry is distinct and says why; print the counts the report quotes. */
static void test_tables(void **state)
{
    (void)state;
    const enum seccomp_kind kinds[] = {SECCOMP_VMM, SECCOMP_VCPU};
    const char *names[] = {"vmm", "vcpu"};
    for (unsigned k = 0; k < 2; k++) {
        unsigned n = seccomp_allowed_count(kinds[k]);
        assert_true(n > 5 && n < 60);
        for (unsigned i = 0; i < n; i++) {
            const char *name, *why, *name2, *why2;
            assert_true(seccomp_allowed_at(kinds[k], i, &name, &why));
            assert_true(strlen(why) > 5);
            for (unsigned j = 0; j < i; j++) {
                assert_true(seccomp_allowed_at(kinds[k], j, &name2, &why2));
                assert_string_not_equal(name, name2);
            }
        }
        const char *x, *y;
        assert_false(seccomp_allowed_at(kinds[k], n, &x, &y));
        print_message("seccomp %s filter: %u syscalls allowed\n", names[k], n);
    }
}

/* --- the confinement flags (config/config.c) that come with the filters --- */

static int parse(struct vm_config *c, const char *const *args)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = "amber";
    for (; *args; args++)
        argv[argc++] = (char *)*args;
    argv[argc] = NULL;
    char err[256];
    config_defaults(c);
    return config_parse_args(c, argc, argv, err, sizeof(err));
}

static void test_jail_flags(void **state)
{
    (void)state;
    struct vm_config c;
    const char *all[] = {"--kernel",
                         "/k",
                         "--chroot",
                         "/srv/jail",
                         "--uid",
                         "1000",
                         "--gid=1001",
                         "--new-mount-ns",
                         "--new-pid-ns",
                         "--netns",
                         "/run/netns/a",
                         "--cgroup",
                         "/sys/fs/cgroup/a",
                         "--rlimit-nofile",
                         "512",
                         "--rlimit-fsize",
                         "1073741824",
                         NULL};
    assert_int_equal(parse(&c, all), 0);
    assert_string_equal(c.chroot_dir, "/srv/jail");
    assert_true(c.has_ids);
    assert_int_equal(c.uid, 1000);
    assert_int_equal(c.gid, 1001);
    assert_true(c.new_mount_ns && c.new_pid_ns);
    assert_string_equal(c.netns, "/run/netns/a");
    assert_string_equal(c.cgroup, "/sys/fs/cgroup/a");
    assert_int_equal(c.rlimit_nofile, 512);
    assert_int_equal(c.rlimit_fsize_bytes, 1ULL << 30);

    const char *plain[] = {"--kernel", "/k", NULL};
    assert_int_equal(parse(&c, plain), 0);
    assert_false(c.has_ids || c.new_pid_ns || c.chroot_dir[0] || c.rlimit_nofile);

    const char *bad[][8] = {
        {"--kernel", "/k", "--uid", "1000", NULL},             /* uid without gid */
        {"--kernel", "/k", "--gid", "1000", NULL},             /* gid without uid */
        {"--kernel", "/k", "--chroot", "relative", NULL},      /* not absolute */
        {"--kernel", "/k", "--uid", "-1", "--gid", "0", NULL}, /* not a number */
        {"--kernel", "/k", "--rlimit-nofile", "3", NULL},      /* too small to run */
        {"--kernel", "/k", "--rlimit-fsize", "0", NULL},
        {"--kernel", "/k", "--on-reboot", "restart", "--new-pid-ns", NULL},
        {"--kernel", "/k", "--on-reboot", "restart", "--chroot", "/j", NULL},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (parse(&c, bad[i]) != -EINVAL)
            fail_msg("case %zu was accepted", i);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tables),          cmocka_unit_test(test_vcpu_thread_exit),
        cmocka_unit_test(test_vcpu_allows),     cmocka_unit_test(test_vcpu_forbids),
        cmocka_unit_test(test_vmm_allows),      cmocka_unit_test(test_vmm_forbids),
        cmocka_unit_test(test_vmm_narrowed),    cmocka_unit_test(test_filter_file),
        cmocka_unit_test(test_jail_flags),      cmocka_unit_test(test_kernel_issued_listed),
        cmocka_unit_test(test_restart_syscall),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
