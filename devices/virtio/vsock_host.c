/* virtio-vsock's host side: Unix sockets for the engine, the listener and CONNECT handshakes. */
#include "devices/virtio/vsock_priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/log.h"

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
        log_err_rl("vsock: cannot watch host socket for port %u: %s", c->peer_port, strerror(-err));
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
        log_info_rl("vsock: guest connect to %s: %s", sa.sun_path, strerror(-err));
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

const struct vsock_io vsock_unix_io = {
    .connect = io_connect,
    .read = io_read,
    .write = io_write,
    .shutdown_wr = io_shutdown_wr,
    .close = io_close,
    .watch = io_watch,
};

/* ---- listener, handshakes, connection events ---- */

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

static void conn_event(void *opaque, uint32_t events)
{
    struct vsock_conn *c = opaque;
    struct vsock_dev *dev = c->mux->opaque;
    pthread_mutex_lock(&dev->vdev->lock);
    if (!dev->ops->finish_reset(dev) && !dev->quiesced) { /* after a reset, c is gone */
        dev->mux.now_ms = clock_now_ms();
        vsock_mux_host_event(&dev->mux, c, events & EPOLLIN, events & EPOLLOUT,
                             events & (EPOLLHUP | EPOLLERR));
        dev->ops->process_rx(dev);
        dev->ops->arm_timer(dev);
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
    dev->mux.now_ms = clock_now_ms();
    r = vsock_mux_connect(&dev->mux, fd, port);
    if (r < 0) {
        log_warn("vsock: cannot open a connection to guest port %u: %s", port, strerror(-r));
        close(fd);
        return;
    }
    dev->ops->process_rx(dev);
}

static void client_event(void *opaque, uint32_t events)
{
    struct vsock_client *cl = opaque;
    struct vsock_dev *dev = cl->dev;
    pthread_mutex_lock(&dev->vdev->lock);
    dev->ops->finish_reset(dev);
    if (!dev->quiesced) {
        client_read(dev, cl);
        dev->ops->arm_timer(dev);
    }
    pthread_mutex_unlock(&dev->vdev->lock);
}

void vsock_listen_event(void *opaque, uint32_t events)
{
    struct vsock_dev *dev = opaque;
    pthread_mutex_lock(&dev->vdev->lock);
    dev->ops->finish_reset(dev);
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
        cl->deadline_ms = clock_now_ms() + VSOCK_HANDSHAKE_TIMEOUT_MS;
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
    dev->ops->arm_timer(dev);
    pthread_mutex_unlock(&dev->vdev->lock);
}

void vsock_clients_expire(struct vsock_dev *dev, uint64_t now)
{
    struct vsock_client *cl = dev->clients;
    while (cl) {
        struct vsock_client *next = cl->next;
        if (cl->deadline_ms <= now) {
            log_warn("vsock: host client sent no CONNECT line in time, closing it");
            client_free(dev, cl, true);
        }
        cl = next;
    }
}

uint64_t vsock_clients_next_deadline(const struct vsock_dev *dev)
{
    uint64_t next = 0;
    for (const struct vsock_client *cl = dev->clients; cl; cl = cl->next)
        if (!next || cl->deadline_ms < next)
            next = cl->deadline_ms;
    return next;
}

void vsock_host_quiesce(struct vsock_dev *dev)
{
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
}

void vsock_host_resume(struct vsock_dev *dev, uint64_t paused_ms)
{
    for (struct vsock_client *cl = dev->clients; cl; cl = cl->next) {
        cl->deadline_ms += paused_ms;
        cl->watched = loop_add(dev->loop, cl->fd, EPOLLIN, client_event, cl) == 0;
    }
    for (struct vsock_conn *c = dev->mux.all; c; c = c->next)
        apply_watch(dev, c);
    dev->listen_watched =
        loop_add(dev->loop, dev->listen_fd, EPOLLIN, vsock_listen_event, dev) == 0;
    if (!dev->listen_watched)
        log_err("vsock: cannot watch the listening socket again");
}

void vsock_host_close(struct vsock_dev *dev)
{
    while (dev->clients)
        client_free(dev, dev->clients, true);
    if (dev->listen_watched)
        loop_del(dev->loop, dev->listen_fd);
    dev->listen_watched = false;
    close(dev->listen_fd);
    dev->listen_fd = -1;
}

/* ---- the listening socket ---- */

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
