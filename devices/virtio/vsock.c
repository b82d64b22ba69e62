/* virtio-vsock device: virtqueues, the Unix listener, CONNECT handshakes and host sockets. */
#include "devices/virtio/vsock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "devices/virtio/vsock_mux.h"
#include "vmm/log.h"

#define VSOCK_QUEUE_SIZE           256
#define VSOCK_HANDSHAKE_TIMEOUT_MS 5000 /* a client must send its CONNECT line within this */
#define VSOCK_MAX_HANDSHAKES       64
#define VSOCK_ACCEPT_BATCH         32

enum { VSOCK_RXQ, VSOCK_TXQ, VSOCK_EVQ, VSOCK_NUM_QUEUES };

struct vsock_dev;

/* A host client that has connected but not yet sent its CONNECT line. */
struct vsock_client {
    struct vsock_dev *dev;
    int fd;
    bool watched;
    size_t len;
    char line[VSOCK_CONNECT_MAX];
    uint64_t deadline_ms;
    struct vsock_client *prev, *next;
};

struct vsock_dev {
    struct virtio_dev *vdev;
    struct vsock_mux mux;
    struct loop *loop;
    uint64_t guest_cid;
    char uds_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    int listen_fd;
    bool listen_watched;
    int timer_fd;
    bool quiesced;
    uint64_t quiesced_at_ms;
    bool reset_pending; /* the driver reset the device (vCPU thread); the loop finishes it */
    struct vsock_client *clients;
    unsigned nclients;
    bool rx_held; /* rx_chain was popped but not yet filled */
    struct virtq_chain rx_chain, tx_chain;
    uint8_t pkt[VSOCK_HDR_SIZE + VSOCK_MAX_PKT_BYTES];
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- host socket I/O for the engine ---- */

static void conn_event(void *opaque, uint32_t events);

static void apply_watch(struct vsock_dev *dev, struct vsock_conn *c)
{
    uint32_t ev =
        ((c->want & VSOCK_WANT_READ) ? EPOLLIN : 0) | ((c->want & VSOCK_WANT_WRITE) ? EPOLLOUT : 0);
    int err = 0;
    if (!ev) {
        /* Deleted rather than modified to 0: EPOLLHUP would still fire and spin the loop. */
        if (c->watched)
            loop_del(dev->loop, c->fd);
        c->watched = false;
    } else if (!c->watched) {
        err = loop_add(dev->loop, c->fd, ev, conn_event, c);
        c->watched = err == 0;
    } else {
        err = loop_mod(dev->loop, c->fd, ev);
    }
    if (err)
        log_err("vsock: cannot watch host socket for port %u: %s", c->peer_port, strerror(-err));
}

static int io_connect(void *opaque, uint32_t port)
{
    struct vsock_dev *dev = opaque;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s_%u", dev->uds_path, port);
    if (n < 0 || (size_t)n >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* AF_UNIX connect never goes "in progress": it succeeds or fails now (EAGAIN = backlog
     * full), so this does not block. */
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int err = -errno;
        close(fd);
        log_info("vsock: guest connect to %s: %s", sa.sun_path, strerror(-err));
        return err;
    }
    return fd;
}

static ssize_t io_read(void *opaque, int fd, void *buf, size_t len)
{
    ssize_t n = recv(fd, buf, len, MSG_DONTWAIT);
    return n < 0 ? -errno : n;
}

static ssize_t io_write(void *opaque, int fd, const void *buf, size_t len)
{
    ssize_t n = send(fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    return n < 0 ? -errno : n;
}

static void io_shutdown_wr(void *opaque, int fd)
{
    shutdown(fd, SHUT_WR);
}

static void io_close(void *opaque, struct vsock_conn *c)
{
    struct vsock_dev *dev = opaque;
    if (c->watched)
        loop_del(dev->loop, c->fd);
    c->watched = false;
    close(c->fd);
}

static void io_watch(void *opaque, struct vsock_conn *c)
{
    struct vsock_dev *dev = opaque;
    if (!dev->quiesced) /* resume applies c->want */
        apply_watch(dev, c);
}

static const struct vsock_io vsock_unix_io = {
    .connect = io_connect,
    .read = io_read,
    .write = io_write,
    .shutdown_wr = io_shutdown_wr,
    .close = io_close,
    .watch = io_watch,
};

/* ---- queues ---- */

static bool queue_live(struct vsock_dev *dev, unsigned q)
{
    struct virtio_dev *d = dev->vdev;
    return !dev->quiesced && (d->status & VIRTIO_STATUS_DRIVER_OK) &&
           !(d->status & VIRTIO_STATUS_NEEDS_RESET) && d->vq[q].ready;
}

/* Hand the guest every packet the engine has while rx buffers last. */
static void process_rx(struct vsock_dev *dev)
{
    struct virtio_dev *d = dev->vdev;
    struct virtq *q = &d->vq[VSOCK_RXQ];
    bool pushed = false;
    if (!queue_live(dev, VSOCK_RXQ))
        return;
    while (vsock_mux_has_rx(&dev->mux)) {
        if (!dev->rx_held) {
            int r = virtq_pop(q, &dev->rx_chain);
            if (r < 0) {
                virtio_set_needs_reset(d, "vsock: bad rx chain");
                return;
            }
            if (r == 0)
                break;
            dev->rx_held = true;
        }
        if (dev->rx_chain.in_len < VSOCK_HDR_SIZE) {
            log_warn("vsock: rx buffer of %llu bytes is too small, returned unused",
                     (unsigned long long)dev->rx_chain.in_len);
            virtq_push(q, dev->rx_chain.head, 0);
            dev->rx_held = false;
            pushed = true;
            continue;
        }
        size_t cap = dev->rx_chain.in_len < sizeof(dev->pkt) ? (size_t)dev->rx_chain.in_len
                                                             : sizeof(dev->pkt);
        size_t n = vsock_mux_rx(&dev->mux, dev->pkt, cap);
        if (n == 0)
            break; /* keep the chain for the next packet */
        virtq_chain_write(&dev->rx_chain, 0, dev->pkt, n);
        virtq_push(q, dev->rx_chain.head, (uint32_t)n);
        dev->rx_held = false;
        pushed = true;
    }
    if (pushed)
        virtio_notify_used(d, VSOCK_RXQ);
}

static void process_tx(struct vsock_dev *dev)
{
    struct virtio_dev *d = dev->vdev;
    struct virtq *q = &d->vq[VSOCK_TXQ];
    struct virtq_chain *c = &dev->tx_chain;
    bool pushed = false;
    if (!queue_live(dev, VSOCK_TXQ))
        return;
    for (;;) {
        int r = virtq_pop(q, c);
        if (r < 0) {
            virtio_set_needs_reset(d, "vsock: bad tx chain");
            break;
        }
        if (r == 0)
            break;
        if (c->out_len < VSOCK_HDR_SIZE) {
            log_warn("vsock: tx chain of %llu bytes has no header", (unsigned long long)c->out_len);
        } else {
            size_t len = c->out_len < sizeof(dev->pkt) ? (size_t)c->out_len : sizeof(dev->pkt);
            len = (size_t)virtq_chain_read(c, 0, dev->pkt, len);
            vsock_mux_tx(&dev->mux, dev->pkt, len);
        }
        virtq_push(q, c->head, 0);
        pushed = true;
    }
    if (pushed)
        virtio_notify_used(d, VSOCK_TXQ);
    process_rx(dev);
}

/*
 * The driver reset the device from a vCPU thread, where fds and watches must not be touched
 * (the loop may be about to call back into a connection). Every loop-thread entry point calls
 * this first, with d->lock held. Returns true if it tore the connections down just now.
 */
static bool finish_reset(struct vsock_dev *dev)
{
    if (!dev->reset_pending)
        return false;
    dev->reset_pending = false;
    vsock_mux_reset(&dev->mux); /* the guest forgot every socket: close the host ends */
    dev->rx_held = false;
    return true;
}

/* ---- timers: handshake and engine deadlines ---- */

static void arm_timer(struct vsock_dev *dev)
{
    if (dev->quiesced)
        return;
    uint64_t next = vsock_mux_next_deadline(&dev->mux);
    for (struct vsock_client *cl = dev->clients; cl; cl = cl->next)
        if (!next || cl->deadline_ms < next)
            next = cl->deadline_ms;
    struct itimerspec its = {0};
    if (next) {
        uint64_t now = now_ms();
        uint64_t delta = next > now ? next - now : 1;
        its.it_value.tv_sec = (time_t)(delta / 1000);
        its.it_value.tv_nsec = (long)(delta % 1000) * 1000000;
    }
    timerfd_settime(dev->timer_fd, 0, &its, NULL);
}

static void client_free(struct vsock_dev *dev, struct vsock_client *cl, bool close_fd)
{
    if (cl->watched)
        loop_del(dev->loop, cl->fd);
    if (close_fd)
        close(cl->fd);
    if (cl->prev)
        cl->prev->next = cl->next;
    else
        dev->clients = cl->next;
    if (cl->next)
        cl->next->prev = cl->prev;
    dev->nclients--;
    free(cl);
}

static void timer_event(void *opaque, uint32_t events)
{
    struct vsock_dev *dev = opaque;
    uint64_t ticks;
    if (read(dev->timer_fd, &ticks, sizeof(ticks)) < 0) {
        /* spurious wake-up after re-arming: nothing to do */
    }
    pthread_mutex_lock(&dev->vdev->lock);
    finish_reset(dev);
    if (!dev->quiesced) {
        uint64_t now = now_ms();
        struct vsock_client *cl = dev->clients;
        while (cl) {
            struct vsock_client *next = cl->next;
            if (cl->deadline_ms <= now) {
                log_warn("vsock: host client sent no CONNECT line in time, closing it");
                client_free(dev, cl, true);
            }
            cl = next;
        }
        dev->mux.now_ms = now;
        vsock_mux_expire(&dev->mux);
        process_rx(dev);
        arm_timer(dev);
    }
    pthread_mutex_unlock(&dev->vdev->lock);
}

/* ---- host side: listener, handshakes, connection events ---- */

static void conn_event(void *opaque, uint32_t events)
{
    struct vsock_conn *c = opaque;
    struct vsock_dev *dev = c->mux->opaque;
    pthread_mutex_lock(&dev->vdev->lock);
    if (!finish_reset(dev) && !dev->quiesced) { /* after a reset, c is gone */
        dev->mux.now_ms = now_ms();
        vsock_mux_host_event(&dev->mux, c, events & EPOLLIN, events & EPOLLOUT,
                             events & (EPOLLHUP | EPOLLERR));
        process_rx(dev);
        arm_timer(dev);
    }
    pthread_mutex_unlock(&dev->vdev->lock);
}

/* Read the CONNECT line without consuming a byte past its newline: those belong to the guest. */
static void client_read(struct vsock_dev *dev, struct vsock_client *cl)
{
    char peek[VSOCK_CONNECT_MAX];
    size_t room = sizeof(cl->line) - cl->len;
    ssize_t n = recv(cl->fd, peek, room, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        client_free(dev, cl, true);
        return;
    }
    const char *nl = memchr(peek, '\n', (size_t)n);
    size_t take = nl ? (size_t)(nl - peek) + 1 : (size_t)n;
    ssize_t got = recv(cl->fd, cl->line + cl->len, take, MSG_DONTWAIT);
    if (got != (ssize_t)take) {
        client_free(dev, cl, true);
        return;
    }
    cl->len += take;
    uint32_t port;
    int r = vsock_connect_parse(cl->line, cl->len, &port);
    if (r == -EAGAIN)
        return;
    if (r < 0) {
        log_warn("vsock: host client sent a malformed CONNECT line, closing it");
        client_free(dev, cl, true);
        return;
    }
    int fd = cl->fd;
    client_free(dev, cl, false); /* the engine takes the fd over */
    dev->mux.now_ms = now_ms();
    r = vsock_mux_connect(&dev->mux, fd, port);
    if (r < 0) {
        log_warn("vsock: cannot open a connection to guest port %u: %s", port, strerror(-r));
        close(fd);
        return;
    }
    process_rx(dev);
}

static void client_event(void *opaque, uint32_t events)
{
    struct vsock_client *cl = opaque;
    struct vsock_dev *dev = cl->dev;
    pthread_mutex_lock(&dev->vdev->lock);
    finish_reset(dev);
    if (!dev->quiesced) {
        client_read(dev, cl);
        arm_timer(dev);
    }
    pthread_mutex_unlock(&dev->vdev->lock);
}

static void listen_event(void *opaque, uint32_t events)
{
    struct vsock_dev *dev = opaque;
    pthread_mutex_lock(&dev->vdev->lock);
    finish_reset(dev);
    for (int i = 0; i < VSOCK_ACCEPT_BATCH && !dev->quiesced; i++) {
        int fd = accept4(dev->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                log_warn("vsock: accept: %s", strerror(errno));
            break;
        }
        struct vsock_client *cl = NULL;
        if (dev->nclients < VSOCK_MAX_HANDSHAKES)
            cl = calloc(1, sizeof(*cl));
        if (!cl) {
            log_warn("vsock: too many host clients in handshake, closing one");
            close(fd);
            continue;
        }
        cl->dev = dev;
        cl->fd = fd;
        cl->deadline_ms = now_ms() + VSOCK_HANDSHAKE_TIMEOUT_MS;
        if (loop_add(dev->loop, fd, EPOLLIN, client_event, cl) < 0) {
            close(fd);
            free(cl);
            continue;
        }
        cl->watched = true;
        cl->next = dev->clients;
        if (dev->clients)
            dev->clients->prev = cl;
        dev->clients = cl;
        dev->nclients++;
    }
    arm_timer(dev);
    pthread_mutex_unlock(&dev->vdev->lock);
}

/* ---- virtio ops ---- */

static void vsock_config_read(struct virtio_dev *d, uint32_t off, uint8_t *data, uint32_t len)
{
    struct vsock_dev *dev = d->priv;
    uint8_t cfg[8];
    for (int i = 0; i < 8; i++)
        cfg[i] = (uint8_t)(dev->guest_cid >> (8 * i));
    if (off < sizeof(cfg) && len <= sizeof(cfg) - off)
        memcpy(data, cfg + off, len);
}

static void vsock_queue_notify(struct virtio_dev *d, unsigned q)
{
    struct vsock_dev *dev = d->priv;
    finish_reset(dev);
    dev->mux.now_ms = now_ms();
    if (q == VSOCK_TXQ)
        process_tx(dev);
    else if (q == VSOCK_RXQ)
        process_rx(dev);
    /* the event queue only carries transport resets, which we never send */
    arm_timer(dev);
}

/* Runs on a vCPU thread: defer the teardown to the loop, woken through the timer. */
static void vsock_reset(struct virtio_dev *d)
{
    struct vsock_dev *dev = d->priv;
    dev->reset_pending = true;
    dev->rx_held = false;
    struct itimerspec soon = {.it_value.tv_nsec = 1};
    timerfd_settime(dev->timer_fd, 0, &soon, NULL);
}

static void vsock_quiesce(struct virtio_dev *d)
{
    struct vsock_dev *dev = d->priv;
    pthread_mutex_lock(&d->lock);
    finish_reset(dev);
    dev->quiesced = true;
    dev->quiesced_at_ms = now_ms();
    /* Stop watching every host fd: new connections wait in the listen backlog, data in the
     * socket buffers. Nothing is read, written or dropped until resume. */
    if (dev->listen_watched)
        loop_del(dev->loop, dev->listen_fd);
    dev->listen_watched = false;
    for (struct vsock_client *cl = dev->clients; cl; cl = cl->next) {
        if (cl->watched)
            loop_del(dev->loop, cl->fd);
        cl->watched = false;
    }
    for (struct vsock_conn *c = dev->mux.all; c; c = c->next) {
        if (c->watched)
            loop_del(dev->loop, c->fd);
        c->watched = false;
    }
    struct itimerspec off = {0};
    timerfd_settime(dev->timer_fd, 0, &off, NULL);
    pthread_mutex_unlock(&d->lock);
}

static void vsock_resume(struct virtio_dev *d)
{
    struct vsock_dev *dev = d->priv;
    pthread_mutex_lock(&d->lock); /* the transport calls resume without it */
    finish_reset(dev);
    if (!dev->quiesced) {
        pthread_mutex_unlock(&d->lock);
        return;
    }
    dev->quiesced = false;
    uint64_t paused_ms = now_ms() - dev->quiesced_at_ms; /* not counted against timeouts */
    vsock_mux_shift_deadlines(&dev->mux, paused_ms);
    for (struct vsock_client *cl = dev->clients; cl; cl = cl->next) {
        cl->deadline_ms += paused_ms;
        cl->watched = loop_add(dev->loop, cl->fd, EPOLLIN, client_event, cl) == 0;
    }
    for (struct vsock_conn *c = dev->mux.all; c; c = c->next)
        apply_watch(dev, c);
    dev->listen_watched = loop_add(dev->loop, dev->listen_fd, EPOLLIN, listen_event, dev) == 0;
    if (!dev->listen_watched)
        log_err("vsock: cannot watch the listening socket again");
    arm_timer(dev);
    pthread_mutex_unlock(&d->lock);
}

static void vsock_dump(struct virtio_dev *d)
{
    struct vsock_dev *dev = d->priv;
    log_info("state: vsock: quiesced %d reset_pending %d rx_held %d listen_watched %d, %u host "
             "clients in the CONNECT handshake",
             dev->quiesced, dev->reset_pending, dev->rx_held, dev->listen_watched, dev->nclients);
    vsock_mux_dump(&dev->mux);
}

static void vsock_destroy(struct virtio_dev *d)
{
    struct vsock_dev *dev = d->priv;
    if (!dev)
        return;
    vsock_mux_reset(&dev->mux);
    while (dev->clients)
        client_free(dev, dev->clients, true);
    if (dev->listen_watched)
        loop_del(dev->loop, dev->listen_fd);
    close(dev->listen_fd);
    loop_del(dev->loop, dev->timer_fd);
    close(dev->timer_fd);
    free(dev);
    d->priv = NULL;
}

static const struct virtio_dev_ops vsock_ops = {
    .name = "vsock",
    .device_id = VIRTIO_ID_VSOCK,
    .num_queues = VSOCK_NUM_QUEUES,
    .queue_max = VSOCK_QUEUE_SIZE,
    .features = 0, /* stream only, which needs no feature bit */
    .config_size = 8,
    .config_read = vsock_config_read,
    .queue_notify = vsock_queue_notify,
    .reset = vsock_reset,
    .quiesce = vsock_quiesce,
    .resume = vsock_resume,
    .destroy = vsock_destroy,
    .dump = vsock_dump,
};

/* ---- creation ---- */

int vsock_listen(const char *uds_path, char *err, size_t errlen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(uds_path);
    if (len == 0 || len >= sizeof(sa.sun_path)) {
        snprintf(err, errlen, "vsock uds_path must be 1-%zu bytes", sizeof(sa.sun_path) - 1);
        return -EINVAL;
    }
    memcpy(sa.sun_path, uds_path, len + 1);
    struct stat st;
    if (lstat(uds_path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            snprintf(err, errlen, "vsock uds_path %s exists and is not a socket", uds_path);
            return -EEXIST;
        }
        if (unlink(uds_path) < 0 && errno != ENOENT) {
            int e = -errno;
            snprintf(err, errlen, "unlink stale %s: %s", uds_path, strerror(-e));
            return e;
        }
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int e = -errno;
        snprintf(err, errlen, "vsock socket: %s", strerror(-e));
        return e;
    }
    int e = 0;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        e = -errno;
        snprintf(err, errlen, "bind %s: %s", uds_path, strerror(-e));
        goto err_close;
    }
    /* chmod before listen: until then a connect() is refused, so no one slips in early */
    if (chmod(uds_path, 0600) < 0 || listen(fd, SOMAXCONN) < 0) {
        e = -errno;
        snprintf(err, errlen, "listen %s: %s", uds_path, strerror(-e));
        goto err_unlink;
    }
    return fd;
err_unlink:
    unlink(uds_path);
err_close:
    close(fd);
    return e;
}

int vsock_create_fd(struct virtio_dev *d, const struct vsock_config *cfg, int listen_fd,
                    const struct guest_mem *mem, struct loop *loop, uint64_t mmio_base,
                    unsigned gsi, char *err, size_t errlen)
{
    int e;
    if (cfg->cid < 3 || cfg->cid == UINT32_MAX) {
        snprintf(err, errlen, "vsock guest_cid %u is reserved (use 3 or more)", cfg->cid);
        e = -EINVAL;
        goto err_fd;
    }
    struct vsock_dev *dev = calloc(1, sizeof(*dev));
    if (!dev) {
        snprintf(err, errlen, "out of memory for vsock");
        e = -ENOMEM;
        goto err_fd;
    }
    dev->vdev = d;
    dev->loop = loop;
    dev->guest_cid = cfg->cid;
    dev->listen_fd = listen_fd;
    snprintf(dev->uds_path, sizeof(dev->uds_path), "%s", cfg->uds_path);
    vsock_mux_init(&dev->mux, cfg->cid, &vsock_unix_io, dev);
    dev->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (dev->timer_fd < 0) {
        e = -errno;
        snprintf(err, errlen, "vsock timerfd: %s", strerror(-e));
        goto err_dev;
    }
    e = loop_add(loop, dev->timer_fd, EPOLLIN, timer_event, dev);
    if (e < 0) {
        snprintf(err, errlen, "vsock timer watch: %s", strerror(-e));
        goto err_timer;
    }
    e = loop_add(loop, listen_fd, EPOLLIN, listen_event, dev);
    if (e < 0) {
        snprintf(err, errlen, "vsock listen watch: %s", strerror(-e));
        goto err_timer_watch;
    }
    dev->listen_watched = true;
    e = virtio_dev_init(d, &vsock_ops, dev, mem, loop, mmio_base, gsi);
    if (e < 0) {
        snprintf(err, errlen, "vsock transport: %s", strerror(-e));
        goto err_listen_watch;
    }
    return 0;
err_listen_watch:
    loop_del(loop, listen_fd);
err_timer_watch:
    loop_del(loop, dev->timer_fd);
err_timer:
    close(dev->timer_fd);
err_dev:
    free(dev);
err_fd:
    close(listen_fd);
    return e;
}

int vsock_create(struct virtio_dev *d, const struct vsock_config *cfg, const struct guest_mem *mem,
                 struct loop *loop, uint64_t mmio_base, unsigned gsi, char *err, size_t errlen)
{
    int fd = vsock_listen(cfg->uds_path, err, errlen);
    if (fd < 0)
        return fd;
    return vsock_create_fd(d, cfg, fd, mem, loop, mmio_base, gsi, err, errlen);
}
