/* amber-agent as PID 1: early mounts, module loading, and a clean power-off or reboot. */
#include "guest/agent/agent.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void mount_one(const char *src, const char *dir, const char *type, unsigned long flags,
                      const char *data)
{
    mkdir(dir, 0755);
    if (mount(src, dir, type, flags, data) < 0 && errno != EBUSY)
        agent_log("mount %s on %s: %s", type, dir, strerror(errno));
}

/* True if something is already mounted on dir (its device differs from its parent's). */
static bool is_mounted(const char *dir)
{
    char parent[256];
    struct stat a, b;
    snprintf(parent, sizeof(parent), "%s/..", dir);
    if (stat(dir, &a) < 0 || stat(parent, &b) < 0)
        return false;
    return a.st_dev != b.st_dev;
}

void init_mounts(void)
{
    const unsigned long safe = MS_NOSUID | MS_NODEV | MS_NOEXEC;
    if (!is_mounted("/proc"))
        mount_one("proc", "/proc", "proc", safe, NULL);
    if (!is_mounted("/sys"))
        mount_one("sysfs", "/sys", "sysfs", safe, NULL);
    if (!is_mounted("/dev"))
        mount_one("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
    if (!is_mounted("/dev/pts"))
        mount_one("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
                  "gid=5,mode=620,ptmxmode=666");
    if (!is_mounted("/dev/shm"))
        mount_one("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
    if (!is_mounted("/tmp"))
        mount_one("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
    if (!is_mounted("/run"))
        mount_one("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
}

/* Dependency order; the file name's base is the module name /sys/module shows (with '_'). */
static const char *const default_modules[] = {
    "drivers/virtio/virtio.ko",
    "drivers/virtio/virtio_ring.ko",
    "drivers/virtio/virtio_mmio.ko",
    "drivers/block/virtio_blk.ko",
    "net/core/failover.ko",
    "drivers/net/net_failover.ko",
    "drivers/net/virtio_net.ko",
    "drivers/char/hw_random/virtio-rng.ko",
    "net/vmw_vsock/vsock.ko",
    "net/vmw_vsock/vmw_vsock_virtio_transport_common.ko",
    "net/vmw_vsock/vmw_vsock_virtio_transport.ko",
};

static void load_module(const char *path)
{
    char name[128];
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    snprintf(name, sizeof(name), "/sys/module/%s", base);
    char *dot = strstr(name, ".ko");
    if (dot)
        *dot = 0;
    for (char *p = name + strlen("/sys/module/"); *p; p++)
        if (*p == '-')
            *p = '_';
    if (access(name, F_OK) == 0)
        return; /* loaded already, or built in */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return; /* not shipped in this image */
    if (syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST)
        agent_log("finit_module %s: %s", path, strerror(errno));
    close(fd);
}

void init_load_modules(void)
{
    struct utsname un;
    char path[512];
    if (uname(&un) < 0)
        return;
    /* The image's list (paths relative to /lib/modules, in order) wins when present. */
    FILE *f = fopen("/etc/amber-modules", "re");
    if (f) {
        char line[256];
        while (fgets(line, sizeof(line), f)) {
            line[strcspn(line, "\r\n")] = 0;
            if (!line[0])
                continue;
            snprintf(path, sizeof(path), "/lib/modules/%s", line);
            load_module(path);
        }
        fclose(f);
    }
    for (size_t i = 0; i < sizeof(default_modules) / sizeof(default_modules[0]); i++) {
        snprintf(path, sizeof(path), "/lib/modules/%s/kernel/%s", un.release, default_modules[i]);
        load_module(path);
    }
}

static void reap_for_ms(int ms)
{
    struct timespec step = {0, 20 * 1000 * 1000};
    for (int waited = 0; waited < ms; waited += 20) {
        while (waitpid(-1, NULL, WNOHANG) > 0) {
        }
        if (waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD)
            return; /* nothing left */
        nanosleep(&step, NULL);
    }
}

void init_power(int action)
{
    agent_log("%s", action == PROTO_REBOOT ? "rebooting" : "powering off");
    kill(-1, SIGTERM);
    reap_for_ms(1000);
    kill(-1, SIGKILL);
    reap_for_ms(200);
    sync();
    if (mount(NULL, "/", NULL, MS_REMOUNT | MS_RDONLY, NULL) < 0 && errno != EBUSY)
        agent_log("remount / read-only: %s", strerror(errno));
    sync();
    reboot(action == PROTO_REBOOT ? RB_AUTOBOOT : RB_POWER_OFF);
    agent_log("reboot: %s", strerror(errno));
}

uint32_t agent_cmdline_port(uint32_t def)
{
    char buf[4096];
    int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return def;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return def;
    buf[n] = 0;
    const char *key = "amber.agent_port=";
    char *save = NULL;
    for (char *tok = strtok_r(buf, " \n\t", &save); tok; tok = strtok_r(NULL, " \n\t", &save)) {
        if (strncmp(tok, key, strlen(key)) != 0)
            continue;
        char *end;
        errno = 0;
        unsigned long v = strtoul(tok + strlen(key), &end, 10);
        if (!errno && *end == 0 && v > 0 && v < 0xffffffffUL)
            def = (uint32_t)v;
        else
            agent_log("ignoring bad %s", tok);
    }
    return def;
}
