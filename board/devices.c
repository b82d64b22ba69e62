/* The board: legacy ports, virtio-mmio slots, KVM wiring, the console and the VM's hooks. */
#include "board/devices.h"

#include <errno.h>
#include <sys/epoll.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "devices/i8042.h"
#include "devices/pm.h"
#include "devices/serial.h"
#include "devices/vmgenid.h"
#include "devices/virtio/blk.h"
#include "devices/virtio/net.h"
#include "devices/virtio/rng.h"
#include "devices/virtio/vsock.h"
#include "vmm/clock.h"
#include "vmm/log.h"
#include "vmm/vm.h"

#define CONSOLE_ESCAPE 0x01 /* Ctrl-A, then 'x' quits */

static void on_poweroff(void *opaque)
{
    struct board *b = opaque;
    vm_request_exit(b->vm, VM_EXIT_POWEROFF, "guest powered off");
}

static void on_reset(void *opaque)
{
    struct board *b = opaque;
    vm_request_exit(b->vm, VM_EXIT_REBOOT, "guest rebooted (i8042 reset)");
}

static void stdin_set_watch(struct board *b, bool on)
{
    struct board_console *p = &b->console;
    if (!p->stdin_watched || p->stdin_paused == !on)
        return;
    p->stdin_paused = !on;
    loop_mod(b->vm->loop, p->stdin_fd, on ? EPOLLIN : 0);
}

static void on_stdin(void *opaque, uint32_t events)
{
    struct board *b = opaque;
    struct board_console *p = &b->console;
    size_t space = serial_rx_space(b->serial);
    if (space == 0) {
        stdin_set_watch(b, false); /* re-armed by the UART's rx_ready callback */
        return;
    }
    uint8_t buf[256];
    if (space > sizeof(buf))
        space = sizeof(buf);
    ssize_t n = read(p->stdin_fd, buf, space);
    if (n <= 0) {
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            return;
        loop_del(b->vm->loop, p->stdin_fd); /* EOF: the guest simply gets no more input */
        p->stdin_watched = false;
        return;
    }
    size_t out = 0;
    for (ssize_t i = 0; i < n; i++) {
        if (p->tty_raw && p->escape) {
            p->escape = false;
            if (buf[i] == 'x') {
                vm_request_exit(b->vm, VM_EXIT_SIGNAL, "quit from the console (Ctrl-A x)");
                return;
            }
            if (buf[i] != CONSOLE_ESCAPE)
                continue;
        } else if (p->tty_raw && buf[i] == CONSOLE_ESCAPE) {
            p->escape = true;
            continue;
        }
        buf[out++] = buf[i];
    }
    serial_input(b->serial, buf, out);
}

/* The UART freed receive space: called on a vCPU thread, so hop to the loop. */
static void rx_ready_on_loop(void *arg)
{
    struct board *b = arg;
    if (!b->vm->paused)
        stdin_set_watch(b, true);
}

static void on_rx_ready(void *opaque)
{
    struct board *b = opaque;
    loop_post(b->vm->loop, rx_ready_on_loop, b);
}

static void console_drain(struct board *b);
static void console_drain_call(void *arg);

static void on_console_writable(void *opaque, uint32_t events)
{
    (void)events; /* EPOLLERR and EPOLLHUP show up as the write's error */
    console_drain(opaque);
}

/*
 * Write out what the UART's ring holds, on the loop thread. A full fd is watched for EPOLLOUT
 * rather than waited on, so neither the loop nor a vCPU ever blocks on the console's reader.
 */
static void console_drain(struct board *b)
{
    struct board_console *p = &b->console;
    if (!b->serial)
        return; /* a drain posted before teardown */
    int rc = serial_drain(b->serial);
    bool want_pollout = rc == -EAGAIN;
    if (want_pollout && !p->console_polled) {
        int ret = loop_add(b->vm->loop, p->console_out, EPOLLOUT, on_console_writable, b);
        if (ret) {
            log_warn("console: cannot wait for the output to drain (%s); dropping output",
                     strerror(-ret));
            serial_stop_output(b->serial);
            return;
        }
        p->console_polled = true;
    } else if (!want_pollout && p->console_polled) {
        loop_del(b->vm->loop, p->console_out);
        p->console_polled = false;
    }
    if (rc == 1)
        loop_post(b->vm->loop, console_drain_call, b); /* let other events in */
}

static void console_drain_call(void *arg)
{
    console_drain(arg);
}

/* Output entered the UART's empty ring: called on a vCPU thread, so hop to the loop. */
static void on_tx_ready(void *opaque)
{
    struct board *b = opaque;
    loop_post(b->vm->loop, console_drain_call, b);
}

/*
 * The fd the console drains into when it is stdout. A regular file is used as it is (epoll
 * cannot watch it, and writes to it do not wait on a reader). Anything else gets its own
 * non-blocking open file description through /proc, so the O_NONBLOCK does not leak into the
 * description the shell (and our stderr) may share; where /proc is missing (a chroot) or the fd
 * is a socket, O_NONBLOCK is set on stdout itself and restored at exit.
 */
static int console_open_stdout(struct board_console *p)
{
    struct stat st;
    if (fstat(STDOUT_FILENO, &st) < 0)
        return -1;
    if (S_ISREG(st.st_mode))
        return STDOUT_FILENO;
    p->console_fd = open("/proc/self/fd/1", O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (p->console_fd >= 0)
        return p->console_fd;
    int flags = fcntl(STDOUT_FILENO, F_GETFL);
    if (flags < 0)
        return -1;
    if (!(flags & O_NONBLOCK) && fcntl(STDOUT_FILENO, F_SETFL, flags | O_NONBLOCK) == 0)
        p->stdout_flags = flags;
    return STDOUT_FILENO;
}

static int setup_console(struct board *b, char *err, size_t errlen)
{
    struct vm *vm = b->vm;
    struct board_console *p = &b->console;
    const struct vm_config *cfg = vm->cfg;
    int out_fd = -1;
    p->console_fd = -1;
    if (cfg->console == CONSOLE_STDIO) {
        out_fd = console_open_stdout(p);
    } else if (cfg->console == CONSOLE_FILE) {
        p->console_fd =
            open(cfg->console_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NONBLOCK, 0644);
        if (p->console_fd < 0) {
            int ret = -errno;
            snprintf(err, errlen, "cannot open console file '%s': %s", cfg->console_path,
                     strerror(errno));
            return ret;
        }
        out_fd = p->console_fd;
    }
    p->console_out = out_fd;
    b->serial = serial_create(out_fd, cfg->console_max_mib << 20, vm_irq_line, vm, GSI_COM1);
    if (!b->serial)
        return -ENOMEM;
    serial_set_rx_ready(b->serial, on_rx_ready, b);
    serial_set_tx_ready(b->serial, on_tx_ready, b);
    int ret = bus_register(&vm->pio, SERIAL_COM1_PORT, SERIAL_PORT_LEN, serial_io, b->serial);
    if (ret)
        return ret;

    /* Input comes from stdin when it is a terminal or a pipe. */
    struct stat st;
    if (cfg->console != CONSOLE_STDIO || fstat(STDIN_FILENO, &st) < 0)
        return 0;
    bool tty = isatty(STDIN_FILENO);
    if (!tty && !S_ISFIFO(st.st_mode) && !S_ISSOCK(st.st_mode))
        return 0;
    if (loop_add(vm->loop, STDIN_FILENO, EPOLLIN, on_stdin, b) < 0)
        return 0;
    p->stdin_fd = STDIN_FILENO;
    p->stdin_watched = true;
    if (tty && tcgetattr(STDIN_FILENO, &p->saved_tty) == 0) {
        struct termios raw = p->saved_tty;
        cfmakeraw(&raw);
        raw.c_oflag |= OPOST | ONLCR; /* keep the host's output readable */
        if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0)
            p->tty_raw = true;
    }
    return 0;
}

static int setup_legacy(struct board *b, char *err, size_t errlen)
{
    struct vm *vm = b->vm;
    int ret = setup_console(b, err, errlen);
    if (ret)
        return ret;
    b->i8042 = i8042_create(vm_irq_line, vm, GSI_I8042, on_reset, b);
    b->pm = pm_create(on_poweroff, b);
    if (!b->i8042 || !b->pm)
        return -ENOMEM;
    ret = bus_register(&vm->pio, I8042_PORT_BASE, I8042_PORT_LEN, i8042_io, b->i8042);
    if (!ret)
        ret = bus_register(&vm->pio, LAYOUT_ACPI_SLEEP_CTL, 2, pm_io, b->pm);
    if (ret) {
        snprintf(err, errlen, "cannot register legacy ports: %s", strerror(-ret));
        return ret;
    }
    ret =
        vmgenid_create(&vm->mem, LAYOUT_VMGENID, GSI_ACPI_GED, vm_irq_line, vm, NULL, &b->vmgenid);
    if (ret) {
        snprintf(err, errlen, "cannot create the VM generation ID: %s", strerror(-ret));
        return ret;
    }
    vm_add_vmgenid(vm, LAYOUT_VMGENID, GSI_ACPI_GED);
    return 0;
}

/* Bind a created virtio device to KVM and the MMIO bus. */
static int wire_virtio(struct vm *vm, struct virtio_dev *d, char *err, size_t errlen)
{
    struct kvm_irqfd irqfd = {.fd = (uint32_t)d->irq_fd, .gsi = d->gsi};
    if (ioctl(vm->vm_fd, KVM_IRQFD, &irqfd) < 0) {
        snprintf(err, errlen, "KVM_IRQFD for %s: %s", d->ops->name, strerror(errno));
        return -errno;
    }
    for (unsigned q = 0; q < d->ops->num_queues; q++) {
        struct kvm_ioeventfd ioev = {
            .datamatch = q,
            .addr = d->mmio_base + VIRTIO_MMIO_QUEUE_NOTIFY,
            .len = 4,
            .fd = d->kick_fd[q],
            .flags = KVM_IOEVENTFD_FLAG_DATAMATCH,
        };
        if (ioctl(vm->vm_fd, KVM_IOEVENTFD, &ioev) < 0) {
            snprintf(err, errlen, "KVM_IOEVENTFD for %s queue %u: %s", d->ops->name, q,
                     strerror(errno));
            return -errno;
        }
    }
    int ret = bus_register(&vm->mmio, d->mmio_base, LAYOUT_VIRTIO_MMIO_SLOT, virtio_mmio_io, d);
    if (ret)
        snprintf(err, errlen, "cannot map %s at %#llx", d->ops->name,
                 (unsigned long long)d->mmio_base);
    return ret;
}

/* Reserve the next slot: its transport struct, MMIO base and GSI. */
static struct virtio_dev *next_slot(struct board *b, uint64_t *base, unsigned *gsi, char *err,
                                    size_t errlen)
{
    if (b->nvirtio == VIRTIO_MAX_DEVICES) {
        snprintf(err, errlen, "too many virtio devices: at most %d fit on GSI %d-%d",
                 VIRTIO_MAX_DEVICES, GSI_VIRTIO_FIRST, GSI_VIRTIO_LAST);
        return NULL;
    }
    struct virtio_dev *d = calloc(1, sizeof(*d));
    if (!d) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    *base = LAYOUT_VIRTIO_MMIO_BASE + b->nvirtio * LAYOUT_VIRTIO_MMIO_SLOT;
    *gsi = GSI_VIRTIO_FIRST + b->nvirtio;
    return d;
}

/* Keep a device that was created, announce it to the guest, then wire it; the slot is taken
 * either way. */
static int commit_slot(struct board *b, struct virtio_dev *d, int created, const char *drive_id,
                       char *err, size_t errlen)
{
    if (created) {
        free(d);
        return created;
    }
    b->drive_ids[b->nvirtio] = drive_id;
    b->virtio[b->nvirtio++] = d;
    int ret = vm_add_mmio_dev(b->vm, d->mmio_base, d->gsi);
    if (ret)
        return ret;
    return wire_virtio(b->vm, d, err, errlen);
}

static int add_drive(struct board *b, const struct drive_config *dc, char *err, size_t errlen)
{
    struct vm *vm = b->vm;
    uint64_t base;
    unsigned gsi;
    struct virtio_dev *d = next_slot(b, &base, &gsi, err, errlen);
    if (!d)
        return -ENOSPC;
    int ret = blk_create(d, dc, &vm->mem, vm->loop, base, gsi, err, errlen);
    return commit_slot(b, d, ret, dc->id, err, errlen);
}

static int setup_virtio(struct board *b, char *err, size_t errlen)
{
    struct vm *vm = b->vm;
    const struct vm_config *cfg = vm->cfg;
    int ret = 0;
    /* The root drive is always vda; the others follow in the order given. */
    for (unsigned i = 0; i < cfg->ndrives && !ret; i++)
        if (cfg->drive[i].root)
            ret = add_drive(b, &cfg->drive[i], err, errlen);
    for (unsigned i = 0; i < cfg->ndrives && !ret; i++)
        if (!cfg->drive[i].root)
            ret = add_drive(b, &cfg->drive[i], err, errlen);
    for (unsigned i = 0; i < cfg->nnets && !ret; i++) {
        uint64_t base;
        unsigned gsi;
        struct virtio_dev *d = next_slot(b, &base, &gsi, err, errlen);
        if (!d)
            return -ENOSPC;
        ret = net_create(d, &cfg->net[i], &vm->mem, vm->loop, base, gsi, err, errlen);
        ret = commit_slot(b, d, ret, NULL, err, errlen);
    }
    if (!ret && cfg->vsock.enabled) {
        uint64_t base;
        unsigned gsi;
        struct virtio_dev *d = next_slot(b, &base, &gsi, err, errlen);
        if (!d)
            return -ENOSPC;
        if (b->vsock_listen_fd >= 0)
            ret = vsock_create_fd(d, &cfg->vsock, b->vsock_listen_fd, &vm->mem, vm->loop, base, gsi,
                                  err, errlen);
        else
            ret = vsock_create(d, &cfg->vsock, &vm->mem, vm->loop, base, gsi, err, errlen);
        if (!ret)
            b->vsock_listen_fd = -1; /* the device owns it now */
        ret = commit_slot(b, d, ret, NULL, err, errlen);
    }
    if (!ret && cfg->entropy) {
        uint64_t base;
        unsigned gsi;
        struct virtio_dev *d = next_slot(b, &base, &gsi, err, errlen);
        if (!d)
            return -ENOSPC;
        ret = rng_create(d, &vm->mem, vm->loop, base, gsi);
        if (ret)
            snprintf(err, errlen, "cannot create virtio-rng: %s", strerror(-ret));
        ret = commit_slot(b, d, ret, NULL, err, errlen);
        if (!ret) {
            ret = rng_set_rate_limit(d, &cfg->entropy_rl);
            if (ret)
                snprintf(err, errlen, "virtio-rng: cannot set its rate limiter: %s",
                         strerror(-ret));
        }
    }
    return ret;
}

/* The hooks the board hangs on the VM; defined below. */
static const struct vm_hooks board_hooks;

int devices_create(struct board *b, struct vm *vm, int vsock_listen_fd, char *err, size_t errlen)
{
    memset(b, 0, sizeof(*b));
    b->vm = vm;
    b->vsock_listen_fd = vsock_listen_fd;
    b->console.console_fd = b->console.stdin_fd = b->console.console_out = -1;
    b->console.stdout_flags = -1;
    vm_set_hooks(vm, &board_hooks, b);
    int ret = setup_legacy(b, err, errlen);
    if (!ret)
        ret = setup_virtio(b, err, errlen);
    return ret;
}

static int devices_quiesce(void *opaque, unsigned timeout_ms)
{
    struct board *b = opaque;
    uint64_t deadline_ms = clock_now_ms() + timeout_ms;
    stdin_set_watch(b, false);
    for (unsigned i = 0; i < b->nvirtio; i++) {
        uint64_t now = clock_now_ms();
        unsigned left = now < deadline_ms ? (unsigned)(deadline_ms - now) : 0;
        int ret = virtio_dev_quiesce_within(b->virtio[i], left);
        if (ret) {
            /* Withdraw: devices 0..i are quiesced (i with work in flight); run them again. */
            for (unsigned j = 0; j <= i; j++)
                virtio_dev_resume(b->virtio[j]);
            stdin_set_watch(b, true);
            return ret;
        }
    }
    return 0;
}

static void devices_resume(void *opaque)
{
    struct board *b = opaque;
    for (unsigned i = 0; i < b->nvirtio; i++)
        virtio_dev_resume(b->virtio[i]);
    stdin_set_watch(b, true);
}

void devices_dump(struct board *b)
{
    log_info("state: %u virtio devices%s", b->nvirtio, b->vm->paused ? ", VM paused" : "");
    if (b->serial) {
        struct serial_stats st;
        serial_get_stats(b->serial, &st);
        log_info("state: console: %llu bytes written, %llu dropped%s",
                 (unsigned long long)st.tx_bytes, (unsigned long long)st.tx_dropped,
                 b->console.console_polled ? ", waiting for the reader" : "");
    }
    for (unsigned i = 0; i < b->nvirtio; i++)
        virtio_dev_dump(b->virtio[i]);
}

static void devices_destroy(void *opaque)
{
    struct board *b = opaque;
    struct board_console *p = &b->console;
    for (unsigned i = 0; i < b->nvirtio; i++) {
        virtio_dev_destroy(b->virtio[i]);
        free(b->virtio[i]);
        b->virtio[i] = NULL;
    }
    b->nvirtio = 0;
    if (b->vsock_listen_fd >= 0) {
        close(b->vsock_listen_fd);
        b->vsock_listen_fd = -1;
    }
    if (b->serial) {
        /* One last non-blocking attempt at what the guest printed, then say what was lost. */
        serial_drain(b->serial);
        serial_stop_output(b->serial); /* what a stalled reader left in the ring counts too */
        struct serial_stats st;
        serial_get_stats(b->serial, &st);
        if (st.tx_dropped)
            log_info("console: %llu bytes of guest output dropped (cap reached, reader too "
                     "slow, or no console)",
                     (unsigned long long)st.tx_dropped);
    }
    if (p->stdin_watched)
        loop_del(b->vm->loop, p->stdin_fd);
    p->stdin_watched = false;
    if (p->console_polled)
        loop_del(b->vm->loop, p->console_out);
    p->console_polled = false;
    if (p->tty_raw)
        tcsetattr(STDIN_FILENO, TCSANOW, &p->saved_tty);
    p->tty_raw = false;
    if (p->stdout_flags >= 0)
        fcntl(STDOUT_FILENO, F_SETFL, p->stdout_flags);
    p->stdout_flags = -1;
    if (p->console_fd >= 0)
        close(p->console_fd);
    p->console_fd = -1;
    serial_destroy(b->serial);
    b->serial = NULL;
    i8042_destroy(b->i8042);
    b->i8042 = NULL;
    pm_destroy(b->pm);
    b->pm = NULL;
    vmgenid_destroy(b->vmgenid);
    b->vmgenid = NULL;
}

static const struct vm_hooks board_hooks = {
    .quiesce = devices_quiesce,
    .resume = devices_resume,
    .destroy = devices_destroy,
};

struct virtio_dev *devices_find_drive(struct board *b, const char *id)
{
    for (unsigned i = 0; i < b->nvirtio; i++)
        if (b->drive_ids[i] && strcmp(b->drive_ids[i], id) == 0)
            return b->virtio[i];
    return NULL;
}

struct virtio_dev *devices_find_net(struct board *b, const char *id)
{
    /* Interfaces take slots in cfg->net order: the k-th net device is cfg->net[k]. */
    const struct vm_config *cfg = b->vm->cfg;
    unsigned k = 0;
    while (k < cfg->nnets && strcmp(cfg->net[k].id, id) != 0)
        k++;
    if (k == cfg->nnets)
        return NULL;
    for (unsigned i = 0; i < b->nvirtio; i++)
        if (b->virtio[i]->ops && b->virtio[i]->ops->device_id == VIRTIO_ID_NET && k-- == 0)
            return b->virtio[i];
    return NULL;
}

int devices_ctrl_alt_del(struct board *b)
{
    return b->i8042 ? i8042_send_ctrl_alt_del(b->i8042) : -ENODEV;
}
