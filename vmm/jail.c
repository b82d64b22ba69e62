/* Built-in jailer: inherited fds, environment, cgroup, namespaces, chroot, rlimits and ids. */
#include "vmm/jail.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vmm/log.h"

/* Close every fd above stderr: nothing amber did not open itself may reach the guest's VMM. */
static int close_inherited_fds(void)
{
    if (syscall(SYS_close_range, 3U, ~0U, 0U) == 0)
        return 0;
    /* Kernels before 5.9: walk the table up to the limit. */
    struct rlimit rl;
    long max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
                   ? (long)rl.rlim_cur
                   : 65536;
    for (long fd = 3; fd < max; fd++)
        close((int)fd);
    return 0;
}

static int join_cgroup(const char *dir)
{
    char path[CONFIG_PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        log_err("jail: cannot open %s: %s", path, strerror(e));
        return -e;
    }
    char pid[24];
    int n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
    int rc = write(fd, pid, (size_t)n) == n ? 0 : -errno;
    close(fd);
    if (rc)
        log_err("jail: cannot join cgroup %s: %s", dir, strerror(-rc));
    return rc;
}

static int join_netns(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns(fd, CLONE_NEWNET) < 0) {
        int e = errno;
        log_err("jail: cannot join network namespace %s: %s", path, strerror(e));
        if (fd >= 0)
            close(fd);
        return -e;
    }
    close(fd);
    return 0;
}

/* The --new-pid-ns parent: forward termination signals (and SIGUSR2), then report how the
 * child ended. */
static int supervise(pid_t child)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR2); /* the stall report, forwarded like the rest */
    sigaddset(&set, SIGCHLD);
    for (;;) {
        siginfo_t si;
        int sig = sigwaitinfo(&set, &si);
        if (sig < 0)
            continue;
        if (sig != SIGCHLD) {
            kill(child, sig);
            continue;
        }
        int st;
        pid_t r = waitpid(child, &st, WNOHANG);
        if (r == child)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }
}

/* /dev/kvm opened before the id switch; one per process (a VM restart re-executes amber). */
static int kvm_fd_before_drop = -1;

int jail_take_kvm_fd(void)
{
    int fd = kvm_fd_before_drop;
    kvm_fd_before_drop = -1;
    return fd;
}

/* Open /dev/kvm (inside the chroot, if any) while privileged. Missing is not an error here:
 * vm_create reports it when it needs the device. */
static void open_kvm_before_drop(void)
{
    if (kvm_fd_before_drop >= 0)
        return;
    kvm_fd_before_drop = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm_fd_before_drop < 0)
        log_warn("jail: cannot open /dev/kvm before switching ids: %s", strerror(errno));
}

/* After the id switch: TAP devices are opened at boot through /dev/net/tun, by the new ids. */
static int check_tun_access(const struct vm_config *cfg)
{
    if (!cfg->nnets || access("/dev/net/tun", R_OK | W_OK) == 0)
        return 0;
    int e = errno;
    log_err("jail: uid %u gid %u cannot open /dev/net/tun (%s), which --net needs: give those "
            "ids read-write access to it (its usual mode is 0666), or use --chroot, where amber "
            "creates the node for them",
            cfg->uid, cfg->gid, strerror(e));
    return -e;
}

static int drop_ids(const struct vm_config *cfg)
{
    if (setgroups(0, NULL) < 0 || setresgid(cfg->gid, cfg->gid, cfg->gid) < 0 ||
        setresuid(cfg->uid, cfg->uid, cfg->uid) < 0) {
        int e = errno;
        log_err("jail: cannot switch to uid %u gid %u: %s", cfg->uid, cfg->gid, strerror(e));
        return -e;
    }
    return 0;
}

/* Enter a new pid namespace: returns 0 in the child (pid 1), 1 in the parent when done. */
static int enter_pid_ns(const struct vm_config *cfg, int *exit_status)
{
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR2); /* the stall report, forwarded like the rest */
    sigaddset(&set, SIGCHLD);
    if (unshare(CLONE_NEWPID) < 0) {
        int e = errno;
        log_err("jail: cannot create a pid namespace: %s", strerror(e));
        return -e;
    }
    /* Blocked before fork, so no signal is lost between the fork and sigwaitinfo. */
    sigprocmask(SIG_BLOCK, &set, &old);
    pid_t child = fork();
    if (child < 0) {
        int e = errno;
        sigprocmask(SIG_SETMASK, &old, NULL);
        log_err("jail: fork into the pid namespace: %s", strerror(e));
        return -e;
    }
    if (child == 0) {
        sigprocmask(SIG_SETMASK, &old, NULL);
        return 0;
    }
    if (cfg->has_ids && drop_ids(cfg) < 0)
        log_warn("jail: the pid-namespace parent keeps its ids");
    *exit_status = supervise(child);
    return 1;
}

static int enter_mount_ns(void)
{
    if (unshare(CLONE_NEWNS) < 0) {
        int e = errno;
        log_err("jail: cannot create a mount namespace: %s", strerror(e));
        return -e;
    }
    /* Nothing we mount or unmount may propagate back to the host. */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
        int e = errno;
        log_err("jail: cannot make / private in the new mount namespace: %s", strerror(e));
        return -e;
    }
    return 0;
}

/* Recreate the host's character device `host` at root/`rel`, owned by the jailed ids. */
static int make_node(const struct vm_config *cfg, const char *host, const char *rel, bool required)
{
    struct stat st;
    if (stat(host, &st) < 0 || !S_ISCHR(st.st_mode)) {
        if (!required)
            return 0;
        log_err("jail: %s is missing on the host", host);
        return -ENODEV;
    }
    char path[CONFIG_PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/dev", cfg->chroot_dir);
    mkdir(path, 0755);
    if (!strcmp(rel, "dev/net/tun")) {
        snprintf(path, sizeof(path), "%s/dev/net", cfg->chroot_dir);
        mkdir(path, 0755);
    }
    snprintf(path, sizeof(path), "%s/%s", cfg->chroot_dir, rel);
    if (mknod(path, S_IFCHR | 0600, st.st_rdev) < 0 && errno != EEXIST) {
        int e = errno;
        log_err("jail: cannot create %s: %s", path, strerror(e));
        return -e;
    }
    struct stat now;
    if (lstat(path, &now) < 0 || !S_ISCHR(now.st_mode) || now.st_rdev != st.st_rdev) {
        log_err("jail: %s exists and is not the device %u:%u", path, major(st.st_rdev),
                minor(st.st_rdev));
        return -EEXIST;
    }
    if (cfg->has_ids && chown(path, cfg->uid, cfg->gid) < 0) {
        int e = errno;
        log_err("jail: cannot chown %s: %s", path, strerror(e));
        return -e;
    }
    return 0;
}

static int enter_chroot(const struct vm_config *cfg)
{
    int rc = make_node(cfg, "/dev/kvm", "dev/kvm", true);
    if (!rc)
        rc = make_node(cfg, "/dev/net/tun", "dev/net/tun", false);
    if (rc)
        return rc;
    if (chdir(cfg->chroot_dir) < 0 || chroot(".") < 0 || chdir("/") < 0) {
        int e = errno;
        log_err("jail: cannot chroot to %s: %s", cfg->chroot_dir, strerror(e));
        return -e;
    }
    return 0;
}

static int set_limit(int resource, const char *name, uint64_t value)
{
    struct rlimit rl = {.rlim_cur = value, .rlim_max = value};
    if (setrlimit(resource, &rl) < 0) {
        int e = errno;
        log_err("jail: cannot set %s to %llu: %s", name, (unsigned long long)value, strerror(e));
        return -e;
    }
    return 0;
}

/* After the id switch no capability may remain, effective or permitted. */
static int check_no_caps(void)
{
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof(data));
    if (syscall(SYS_capget, &hdr, data) < 0)
        return -errno;
    for (int i = 0; i < 2; i++) {
        if (data[i].effective || data[i].permitted) {
            log_err("jail: capabilities remain after the id switch (eff %#x prm %#x)",
                    data[i].effective, data[i].permitted);
            return -EPERM;
        }
    }
    return 0;
}

/*
 * clearenv() only drops libc's pointer: the strings stay in the initial stack, where
 * /proc/PID/environ shows them. Wipe them, and where allowed (CAP_SYS_RESOURCE) make the
 * kernel's environment range empty too.
 */
static int wipe_environment(void)
{
    char *lo = NULL;
    for (char **e = environ; e && *e; e++) {
        if (!lo || *e < lo)
            lo = *e;
        memset(*e, 0, strlen(*e));
    }
    if (clearenv() != 0)
        return -ENOMEM;
    if (lo)
        prctl(PR_SET_MM, PR_SET_MM_ENV_END, (unsigned long)lo, 0, 0); /* best effort */
    return 0;
}

int jail_enter(const struct vm_config *cfg, int *exit_status)
{
    int rc = close_inherited_fds();
    if (!rc)
        rc = wipe_environment();
    if (!rc && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        rc = -errno;
    if (rc) {
        log_err("jail: cannot clean the process up: %s", strerror(-rc));
        return rc;
    }
    if (cfg->cgroup[0] && (rc = join_cgroup(cfg->cgroup)))
        return rc;
    if (cfg->netns[0] && (rc = join_netns(cfg->netns)))
        return rc;
    if (cfg->new_pid_ns && (rc = enter_pid_ns(cfg, exit_status)))
        return rc;
    if (cfg->new_mount_ns && (rc = enter_mount_ns()))
        return rc;
    if (cfg->chroot_dir[0] && (rc = enter_chroot(cfg)))
        return rc;
    if (cfg->rlimit_nofile && (rc = set_limit(RLIMIT_NOFILE, "RLIMIT_NOFILE", cfg->rlimit_nofile)))
        return rc;
    if (cfg->rlimit_fsize_bytes &&
        (rc = set_limit(RLIMIT_FSIZE, "RLIMIT_FSIZE", cfg->rlimit_fsize_bytes)))
        return rc;
    if (cfg->new_pid_ns && !cfg->has_ids)
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* if the parent is SIGKILLed, so are we */
    if (cfg->has_ids) {
        open_kvm_before_drop();
        if ((rc = drop_ids(cfg)))
            return rc;
        if (cfg->uid != 0 && (rc = check_no_caps()))
            return rc;
        if ((rc = check_tun_access(cfg)))
            return rc;
        if (cfg->new_pid_ns)
            /* After the id switch, which clears it: if the parent is SIGKILLed, so are we. */
            prctl(PR_SET_PDEATHSIG, SIGKILL);
        log_info("jail: running as uid %u gid %u%s%s", cfg->uid, cfg->gid,
                 cfg->chroot_dir[0] ? " in " : "", cfg->chroot_dir);
    }
    return 0;
}
