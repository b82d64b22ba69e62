/* The VMM process: event loop, signals, the optional API, and the VM from boot to exit. */
#include "board/process.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api.h"
#include "config/json.h"
#include "devices/virtio/blk.h"
#include "devices/virtio/net.h"
#include "devices/virtio/vsock.h"
#include "board/devices.h"
#include "vmm/jail.h"
#include "vmm/loader.h"
#include "vmm/log.h"
#include "vmm/loop.h"
#include "vmm/seccomp.h"
#include "board/snapshot.h"
#include "board/snapshot_boot.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"

#define EXIT_BAD_INPUT       2
#define CONFIG_FILE_MAX_SIZE (1 << 20)
/* How long a stall report waits for the running vCPUs' register samples. */
#define STATE_SAMPLE_WAIT_MS 200

struct vmm {
    struct vm_config *cfg;
    struct loop loop;
    struct vm vm;
    struct board board; /* the VM's devices, once vm_created */
    bool vm_created;
    int signal_fd;
    struct api *api;
    int vsock_fd;        /* bound by PUT /vsock before boot, or -1 */
    int pid_fd;          /* --pid-file, flock'ed until exit, or -1 */
    int exit_fd;         /* --exit-file's temporary, opened before the filter, or -1 */
    bool restart;        /* guest rebooted with --on-reboot=restart */
    char early_exit[64]; /* why the loop ended before any VM existed, or "" */
};

/* Write our pid to path and hold an exclusive lock on it for the life of the process, so a
 * file whose lock is free belongs to an amber that is gone. */
static int take_pid_file(struct vmm *vmm, const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open pid file '%s': %s", path, strerror(errno));
        return -errno;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        snprintf(err, errlen, "pid file '%s' is locked by a running amber", path);
        close(fd);
        return -EBUSY;
    }
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)n, 0) != n) {
        snprintf(err, errlen, "cannot write pid file '%s': %s", path, strerror(errno));
        close(fd);
        return -EIO;
    }
    vmm->pid_fd = fd;
    return 0;
}

/* The exit file's temporary name: path + ".tmp". */
static void exit_tmp_name(const char *path, char *tmp, size_t len)
{
    snprintf(tmp, len, "%s.tmp", path);
}

/* Create the exit file's temporary now, while the main thread may still create files: the
 * running VMM's filter has no open(O_CREAT). Failure is not fatal: write_exit_file tries again
 * (and succeeds when the thread is unfiltered, e.g. with --seccomp=off). */
static void exit_file_prepare(struct vmm *vmm)
{
    char tmp[CONFIG_PATH_MAX + 8];
    if (!vmm->cfg->exit_file[0] || vmm->exit_fd >= 0)
        return;
    exit_tmp_name(vmm->cfg->exit_file, tmp, sizeof(tmp));
    vmm->exit_fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (vmm->exit_fd < 0)
        log_warn("cannot create exit file '%s': %s", tmp, strerror(errno));
}

/* Record why amber ended, atomically (write a temporary file, then rename it into place). fd
 * is the temporary already open (exit_file_prepare), or -1 to create it now. Plain write(2):
 * stdio's fdopen would call fcntl, which the running VMM's filter does not allow. */
static void write_exit_file(const char *path, int fd, const char *reason, int status)
{
    char tmp[CONFIG_PATH_MAX + 8], line[2 * 512 + 64];
    size_t n = 0;
    exit_tmp_name(path, tmp, sizeof(tmp));
    if (fd < 0)
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        log_warn("cannot write exit file '%s': %s", path, strerror(errno));
        return;
    }
    n += (size_t)snprintf(line, sizeof(line), "{\"reason\": \"");
    for (const char *c = reason; *c && n < sizeof(line) - 40; c++) {
        if (*c == '"' || *c == '\\')
            line[n++] = '\\';
        if ((unsigned char)*c >= 0x20)
            line[n++] = *c;
    }
    n += (size_t)snprintf(line + n, sizeof(line) - n, "\", \"status\": %d}\n", status);
    bool ok = write(fd, line, n) == (ssize_t)n;
    if (close(fd) != 0 || !ok || rename(tmp, path) < 0)
        log_warn("cannot write exit file '%s': %s", path, strerror(errno));
}

static void on_signal(void *opaque, uint32_t events)
{
    struct vmm *vmm = opaque;
    struct signalfd_siginfo si;
    if (read(vmm->signal_fd, &si, sizeof(si)) != sizeof(si))
        return;
    if (si.ssi_signo == SIGUSR2) {
        /* A stall report, not an ending: log every device's state and carry on. */
        if (vmm->vm_created) {
            /* Each running vCPU samples its own registers (only its thread can); the devices
             * are dumped meanwhile, and a vCPU that does not answer in time is said so. */
            for (unsigned i = 0; i < vmm->vm.nvcpus; i++)
                vcpu_sample_request(&vmm->vm.vcpus[i]);
            devices_dump(&vmm->board);
            vcpu_sample_wait(vmm->vm.vcpus, vmm->vm.nvcpus, STATE_SAMPLE_WAIT_MS);
            for (unsigned i = 0; i < vmm->vm.nvcpus; i++)
                vcpu_dump(&vmm->vm.vcpus[i]);
        } else {
            log_info("state: SIGUSR2 before boot: no devices yet");
        }
        log_info("state: end of report"); /* readers wait for this line, not for a time */
        return;
    }
    const char *name = sigabbrev_np((int)si.ssi_signo);
    if (vmm->vm_created) {
        vm_request_exit(&vmm->vm, VM_EXIT_SIGNAL, "terminated by SIG%s", name ? name : "?");
    } else {
        snprintf(vmm->early_exit, sizeof(vmm->early_exit), "terminated by SIG%s before boot",
                 name ? name : "?");
        loop_quit(&vmm->loop, 0);
    }
}

static int setup_signals(struct vmm *vmm)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR2); /* a stall report: see on_signal */
    /* Blocked in every thread (vCPU threads inherit the mask) and read from the loop. */
    int ret = pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (ret)
        return -ret;
    vmm->signal_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (vmm->signal_fd < 0)
        return -errno;
    return loop_add(&vmm->loop, vmm->signal_fd, EPOLLIN, on_signal, vmm);
}

/* Exit status for a failed boot: bad input is 2, anything else a VMM failure. */
static int boot_status(int err)
{
    switch (-err) {
    case EINVAL:
    case ENOENT:
    case ENOEXEC:
    case EACCES:
    case ENOMEM:
    case EISDIR:
    case EBUSY:
    case ENODEV:
    case E2BIG:
    case ENOSPC:
        return EXIT_BAD_INPUT;
    default:
        return 1;
    }
}

/* The main thread's seccomp filter goes on once the vCPUs run (see vmm/seccomp.c for why not
 * earlier). A restart re-executes amber, which a filtered thread could not do. */
static int filter_main_thread(struct vmm *vmm, char *err, size_t errlen)
{
    if (!vmm->cfg->seccomp)
        return 0;
    if (vmm->cfg->on_reboot == ON_REBOOT_RESTART) {
        log_warn("SECCOMP: --on-reboot restart: the main thread stays UNFILTERED (it must "
                 "re-execute amber); vCPU threads are filtered");
        return 0;
    }
    exit_file_prepare(vmm);
    int ret = seccomp_install(SECCOMP_VMM, vmm->cfg);
    if (ret)
        snprintf(err, errlen, "cannot install the seccomp filter: %s", strerror(-ret));
    return ret;
}

static int boot(struct vmm *vmm, char *err, size_t errlen)
{
    int ret = vm_create(&vmm->vm, vmm->cfg, &vmm->loop, err, errlen);
    if (ret) {
        if (vmm->vsock_fd >= 0)
            close(vmm->vsock_fd);
        vmm->vsock_fd = -1;
        return ret;
    }
    vmm->vm_created = true;
    ret = devices_create(&vmm->board, &vmm->vm, vmm->vsock_fd, err, errlen);
    vmm->vsock_fd = -1; /* the board owns it now, success or not */
    if (!ret)
        ret = loader_boot(&vmm->vm, err, errlen);
    if (!ret)
        ret = vm_start(&vmm->vm, err, errlen);
    if (!ret)
        ret = filter_main_thread(vmm, err, errlen);
    if (ret) {
        vm_destroy(&vmm->vm);
        vmm->vm_created = false;
    }
    return ret;
}

/* --- the API back-end: what the HTTP handlers ask of the VM --- */

static int be_start(void *ctx, const struct vm_config *cfg, char *err, size_t errlen)
{
    struct vmm *vmm = ctx;
    (void)cfg; /* the API edits vmm->cfg in place */
    int ret = config_validate(vmm->cfg, err, errlen);
    if (ret)
        return ret;
    return boot(vmm, err, errlen);
}

static int be_pause(void *ctx, char *err, size_t errlen)
{
    struct vmm *vmm = ctx;
    int ret = vm_pause(&vmm->vm, PAUSE_TIMEOUT_MS);
    if (ret == -ETIMEDOUT)
        snprintf(err, errlen, "a vCPU did not stop within %d ms; the VM is still running",
                 PAUSE_TIMEOUT_MS);
    else if (ret == -EBUSY)
        snprintf(err, errlen,
                 "a device's in-flight I/O did not finish within %d ms; the VM is still running",
                 PAUSE_TIMEOUT_MS);
    else if (ret)
        snprintf(err, errlen, "pause failed: %s", strerror(-ret));
    return ret == -ETIMEDOUT || ret == -EBUSY ? -ETIME : ret;
}

static int be_resume(void *ctx, char *err, size_t errlen)
{
    struct vmm *vmm = ctx;
    int ret = vm_resume(&vmm->vm);
    if (ret)
        snprintf(err, errlen, "resume failed: %s", strerror(-ret));
    return ret;
}

static int be_ctrl_alt_del(void *ctx, char *err, size_t errlen)
{
    struct vmm *vmm = ctx;
    int ret = devices_ctrl_alt_del(&vmm->board);
    if (ret)
        snprintf(err, errlen, "cannot send Ctrl-Alt-Del: %s", strerror(-ret));
    return ret;
}

static int be_drive_swap(void *ctx, const char *drive_id, const char *path, char *err,
                         size_t errlen)
{
    struct vmm *vmm = ctx;
    struct virtio_dev *d = devices_find_drive(&vmm->board, drive_id);
    if (!d) {
        snprintf(err, errlen, "no drive '%s'", drive_id);
        return -ENOENT;
    }
    return blk_swap_backing(d, path, err, errlen);
}

static int be_rate_limit(void *ctx, enum api_rl_target t, const char *id,
                         const struct rl_config *rl, unsigned set, char *err, size_t errlen)
{
    struct vmm *vmm = ctx;
    struct virtio_dev *d =
        t == API_RL_DRIVE ? devices_find_drive(&vmm->board, id) : devices_find_net(&vmm->board, id);
    if (!d) {
        snprintf(err, errlen, "no %s '%s'", t == API_RL_DRIVE ? "drive" : "network interface", id);
        return -ENOENT;
    }
    if (t == API_RL_DRIVE)
        blk_set_rate_limit(d, rl, set);
    else
        net_set_rate_limit(d, t == API_RL_NET_TX, rl, set);
    return 0;
}

static int be_vsock_bind(void *ctx, const struct vsock_config *vsock, char *err, size_t errlen)
{
    struct vmm *vmm = ctx;
    if (vmm->vsock_fd >= 0)
        close(vmm->vsock_fd);
    vmm->vsock_fd = vsock_listen(vsock->uds_path, err, errlen);
    return vmm->vsock_fd < 0 ? vmm->vsock_fd : 0;
}

static int be_snapshot_create(void *ctx, const struct api_snapshot_create *p, char *err,
                              size_t errlen)
{
    struct vmm *vmm = ctx;
    struct snapshot_create_params cp = {.snapshot_path = p->snapshot_path,
                                        .mem_file_path = p->mem_file_path,
                                        .fsync = p->fsync,
                                        .diff = p->diff};
    struct snapshot_stats st;
    if (!vmm->vm_created)
        return -EINVAL;
    return snapshot_create(&vmm->board, &cp, &st, err, errlen);
}

/* PUT /snapshot/load and --restore: the snapshot replaces every boot step. */
static int restore(struct vmm *vmm, const struct api_snapshot_load *p, char *err, size_t errlen)
{
    int ret =
        snapshot_boot(&vmm->board, &vmm->vm, vmm->cfg, &vmm->loop, vmm->vsock_fd, p, err, errlen);
    vmm->vsock_fd = -1; /* consumed, success or not */
    if (ret)
        return ret;
    vmm->vm_created = true;
    ret = filter_main_thread(vmm, err, errlen);
    if (ret) {
        vm_destroy(&vmm->vm);
        vmm->vm_created = false;
    }
    return ret;
}

static int be_snapshot_load(void *ctx, const struct api_snapshot_load *p, char *err, size_t errlen)
{
    return restore(ctx, p, err, errlen);
}

static void be_stop(void *ctx, const char *why)
{
    struct vmm *vmm = ctx;
    if (vmm->vm_created) {
        vm_request_exit(&vmm->vm, VM_EXIT_SIGNAL, "%s", why);
    } else {
        snprintf(vmm->early_exit, sizeof(vmm->early_exit), "%s", why);
        loop_quit(&vmm->loop, 0);
    }
}

static const struct api_backend backend_ops = {
    .start = be_start,
    .pause = be_pause,
    .resume = be_resume,
    .ctrl_alt_del = be_ctrl_alt_del,
    .drive_swap = be_drive_swap,
    .rate_limit = be_rate_limit,
    .vsock_bind = be_vsock_bind,
    .snapshot_create = be_snapshot_create,
    .snapshot_load = be_snapshot_load,
    .stop = be_stop,
};

static int load_config_file(struct vm_config *cfg, char *err, size_t errlen)
{
    int fd = open(cfg->config_file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open config file '%s': %s", cfg->config_file,
                 strerror(errno));
        return -errno;
    }
    char *text = malloc(CONFIG_FILE_MAX_SIZE + 1);
    ssize_t n = text ? read(fd, text, CONFIG_FILE_MAX_SIZE + 1) : -1;
    close(fd);
    if (n < 0 || n > CONFIG_FILE_MAX_SIZE) {
        snprintf(err, errlen, "cannot read config file '%s': %s", cfg->config_file,
                 n < 0 ? strerror(errno) : "larger than 1 MiB");
        free(text);
        return -EINVAL;
    }
    text[n] = '\0';
    char why[512] = "";
    int ret = config_json_load(cfg, text, (size_t)n, why, sizeof(why));
    free(text);
    if (ret)
        snprintf(err, errlen, "config file '%s': %s", cfg->config_file, why);
    return ret;
}

static int setup_api(struct vmm *vmm, char *err, size_t errlen)
{
    struct api_backend be = backend_ops;
    be.ctx = vmm;
    const char *sock = vmm->cfg->api_sock[0] && !vmm->cfg->no_api ? vmm->cfg->api_sock : NULL;
    vmm->api = api_create(&vmm->loop, sock, vmm->cfg, &be, err, errlen);
    return vmm->api ? 0 : -EINVAL;
}

static int run(struct vmm *vmm, char *reason, size_t reasonlen)
{
    char err[1024] = "";
    struct vm_config *cfg = vmm->cfg;

    if (cfg->pid_file[0] && take_pid_file(vmm, cfg->pid_file, err, sizeof(err))) {
        log_err("%s", err);
        snprintf(reason, reasonlen, "%s", err);
        return EXIT_BAD_INPUT;
    }

    /* The API socket comes first: clients connect the moment its file exists. */
    if (cfg->api_sock[0] || cfg->no_api) {
        if (setup_api(vmm, err, sizeof(err))) {
            log_err("%s", err);
            snprintf(reason, reasonlen, "%s", err);
            return EXIT_BAD_INPUT;
        }
    }
    if (cfg->config_file[0]) {
        int ret = load_config_file(cfg, err, sizeof(err));
        if (ret) {
            log_err("%s", err);
            snprintf(reason, reasonlen, "%s", err);
            return EXIT_BAD_INPUT;
        }
    }
    if (cfg->restore_path[0]) {
        static struct api_snapshot_load p; /* large paths: not on the stack */
        p.resume_vm = true;
        p.clock_realtime = true;
        snprintf(p.snapshot_path, sizeof(p.snapshot_path), "%s", cfg->restore_path);
        snprintf(p.mem_file_path, sizeof(p.mem_file_path), "%s", cfg->restore_mem_path);
        int ret = restore(vmm, &p, err, sizeof(err));
        if (ret) {
            log_err("%s", err);
            snprintf(reason, reasonlen, "%s", err);
            return ret == -EBADMSG || ret == -EPROTONOSUPPORT || ret == -E2BIG ? EXIT_BAD_INPUT
                                                                               : boot_status(ret);
        }
        if (vmm->api)
            api_set_started(vmm->api);
    } else if (cfg->kernel[0]) { /* (a restore fills cfg->kernel from the snapshot) */
        int ret = config_validate(cfg, err, sizeof(err));
        if (!ret)
            ret = boot(vmm, err, sizeof(err));
        if (ret) {
            log_err("%s", err);
            snprintf(reason, reasonlen, "%s", err);
            return boot_status(ret);
        }
        if (vmm->api)
            api_set_started(vmm->api);
    }

    int status = loop_run(&vmm->loop);
    if (vmm->api)
        api_set_stopped(vmm->api);
    snprintf(reason, reasonlen, "%s", vmm->early_exit[0] ? vmm->early_exit : "stopped before boot");
    if (vmm->vm_created) {
        vm_destroy(&vmm->vm);
        int why = atomic_load(&vmm->vm.exit_reason);
        if (why != VM_EXIT_NONE)
            snprintf(reason, reasonlen, "%s", vmm->vm.exit_detail);
        if (why == VM_EXIT_ERROR) {
            log_err("exit: %s", reason);
            return 1;
        }
        if (why == VM_EXIT_REBOOT && cfg->on_reboot == ON_REBOOT_RESTART) {
            log_info("%s: restarting", reason);
            vmm->restart = true;
            return 0;
        }
    }
    log_info("exit: %s", reason);
    return status;
}

int vmm_main(struct vm_config *cfg, char **argv)
{
    static struct vmm vmm;
    vmm.cfg = cfg;
    vmm.signal_fd = -1;
    vmm.vsock_fd = -1;
    vmm.pid_fd = -1;
    vmm.exit_fd = -1;

    int jail_status = 0;
    int ret = jail_enter(cfg, &jail_status);
    if (ret > 0)
        return jail_status; /* the --new-pid-ns parent, after its child ended */
    if (ret < 0)
        return EXIT_BAD_INPUT;
    if (!cfg->seccomp)
        log_warn("SECCOMP IS OFF (--seccomp=off): amber's threads run UNFILTERED; for "
                 "debugging only");
    else if ((ret = seccomp_install_handler()) < 0) {
        log_err("cannot install the SIGSYS handler: %s", strerror(-ret));
        return 1;
    }

    ret = loop_init(&vmm.loop);
    if (ret) {
        log_err("cannot create the event loop: %s", strerror(-ret));
        return 1;
    }
    ret = vcpu_install_kick_handler();
    if (!ret)
        ret = setup_signals(&vmm);
    if (ret) {
        log_err("cannot set up signal handling: %s", strerror(-ret));
        return 1;
    }

    char reason[512] = "";
    int status = run(&vmm, reason, sizeof(reason));

    if (vmm.vm_created)
        vm_destroy(&vmm.vm);
    if (vmm.api)
        api_destroy(vmm.api);
    if (vmm.vsock_fd >= 0)
        close(vmm.vsock_fd);
    loop_destroy(&vmm.loop);
    if (vmm.pid_fd >= 0)
        close(vmm.pid_fd);
    if (vmm.restart) {
        /* A fresh process is the simplest complete reset: new RAM, vCPUs and devices, and
         * every fd closed on exec. The same arguments boot the same VM again. */
        execv("/proc/self/exe", argv);
        log_err("cannot restart: %s", strerror(errno));
        snprintf(reason, sizeof(reason), "guest rebooted; restart failed");
        status = 1;
    }
    if (cfg->exit_file[0])
        write_exit_file(cfg->exit_file, vmm.exit_fd, reason, status);
    return status;
}
