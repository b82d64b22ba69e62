/* amber-agent: the log line helper and one connection's frame I/O (send, errors, receive). */
#include "guest/agent/agent.h"
#include "guest/agent/logring.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

void agent_log(const char *fmt, ...)
{
    char line[512];
    int n = snprintf(line, sizeof(line), "amber-agent: ");
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    agent_trace("%.*s", (int)len - 1, line);
    if (write(STDERR_FILENO, line, len) < 0) {
        /* nowhere left to report it */
    }
}

int conn_send(struct agent_conn *c, uint8_t type, const void *payload, size_t len)
{
    uint8_t hdr[PROTO_HDR_LEN];
    int r = proto_frame_header(hdr, type, c->id, len);
    if (r < 0)
        return r;
    struct iovec iov[2] = {{hdr, sizeof(hdr)}, {(void *)payload, len}};
    int iovcnt = len ? 2 : 1;
    struct iovec *v = iov;
    while (iovcnt > 0) {
        ssize_t n = writev(c->fd, v, iovcnt);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        while (iovcnt > 0 && (size_t)n >= v->iov_len) {
            n -= (ssize_t)v->iov_len;
            v++;
            iovcnt--;
        }
        if (iovcnt > 0) {
            v->iov_base = (uint8_t *)v->iov_base + n;
            v->iov_len -= (size_t)n;
        }
    }
    return 0;
}

int conn_send_error(struct agent_conn *c, int err, const char *fmt, ...)
{
    char msg[512];
    uint8_t buf[600];
    struct proto_buf b = {buf, 0, sizeof(buf)};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    proto_tlv_put_u64(&b, TAG_ERRNO, (uint64_t)(err < 0 ? -err : err));
    proto_tlv_put_str(&b, TAG_MESSAGE, msg);
    return conn_send(c, PROTO_ERROR, b.data, b.len);
}

int conn_fill(struct agent_conn *c, int timeout_ms)
{
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    int r;
    do
        r = poll(&p, 1, timeout_ms);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return -errno;
    if (r == 0)
        return -ETIMEDOUT;
    size_t room;
    uint8_t *dst = proto_rx_space(&c->rx, &room);
    ssize_t n;
    do
        n = read(c->fd, dst, room);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    if (n == 0)
        return -ECONNRESET;
    proto_rx_commit(&c->rx, (size_t)n);
    return 0;
}

int conn_next_frame(struct agent_conn *c, struct proto_frame *f, int timeout_ms)
{
    for (;;) {
        int r = proto_rx_next(&c->rx, f);
        if (r != 0)
            return r;
        r = conn_fill(c, timeout_ms);
        if (r < 0)
            return r;
    }
}
