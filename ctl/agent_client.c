/* Host-side client for amber-agent: connecting (hybrid vsock handshake), ping, files, shutdown. */
#include "ctl/agent_client_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int ac_fail(struct agent_error *e, int err, const char *fmt, ...)
{
    if (err < 0)
        err = -err;
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
        va_end(ap);
        e->err = err;
    }
    return -err;
}

char *agent_text_escape(const void *in, size_t n, char *out, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = in;
    size_t o = 0;
    if (!cap)
        return out;
    for (size_t i = 0; i < n && p[i]; i++) {
        unsigned char c = p[i];
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            if (o + 1 >= cap)
                break;
            out[o++] = (char)c;
            continue;
        }
        if (o + 4 >= cap)
            break;
        out[o++] = '\\';
        out[o++] = 'x';
        out[o++] = hex[c >> 4];
        out[o++] = hex[c & 15];
    }
    out[o] = '\0';
    return out;
}

unsigned agent_host_mode(uint32_t guest_mode, unsigned umask_bits)
{
    return guest_mode & 0777u & ~umask_bits;
}

int ac_timeout(const struct agent_addr *a)
{
    return a->timeout_ms > 0 ? a->timeout_ms : AC_DEFAULT_TIMEOUT_MS;
}

static int wait_fd(int fd, short events, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = events};
    int r;
    do
        r = poll(&p, 1, timeout_ms);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return -errno;
    return r == 0 ? -ETIMEDOUT : 0;
}

int ac_write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    bool sock = true; /* sockets get MSG_NOSIGNAL; anything else falls back to write() */
    while (len) {
        ssize_t n = sock ? send(fd, p, len, MSG_NOSIGNAL) : write(fd, p, len);
        if (n < 0 && sock && errno == ENOTSOCK) {
            sock = false;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            wait_fd(fd, POLLOUT, -1);
            continue;
        }
        if (n < 0)
            return -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int ac_send(int fd, uint8_t type, const void *payload, size_t len)
{
    uint8_t hdr[PROTO_HDR_LEN];
    int r = proto_frame_header(hdr, type, 1, len);
    if (r == 0)
        r = ac_write_all(fd, hdr, sizeof(hdr));
    if (r == 0 && len)
        r = ac_write_all(fd, payload, len);
    return r;
}

int ac_next(int fd, struct proto_rx *rx, struct proto_frame *f, int timeout_ms)
{
    for (;;) {
        int r = proto_rx_next(rx, f);
        if (r != 0)
            return r;
        if ((r = wait_fd(fd, POLLIN, timeout_ms)) < 0)
            return r;
        size_t room;
        uint8_t *dst = proto_rx_space(rx, &room);
        ssize_t n = read(fd, dst, room);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -ECONNRESET;
        proto_rx_commit(rx, (size_t)n);
    }
}

int ac_error_frame(const struct proto_frame *f, struct agent_error *e)
{
    struct proto_tlv_iter it;
    uint16_t tag;
    const uint8_t *val;
    uint32_t n;
    uint64_t code = EPROTO;
    char msg[256] = "agent error";
    proto_tlv_iter_init(&it, f->payload, f->len);
    while (proto_tlv_next(&it, &tag, &val, &n) > 0) {
        if (tag == TAG_ERRNO)
            proto_tlv_u64(val, n, &code);
        else if (tag == TAG_MESSAGE)
            agent_text_escape(val, n, msg, sizeof(msg));
    }
    if (code == 0 || code > 4095)
        code = EPROTO;
    return ac_fail(e, (int)code, "%s", msg);
}

static int connect_unix(const char *path, int timeout_ms)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    int r = 0;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        r = -errno;
        if (r == -EINPROGRESS || r == -EAGAIN) {
            /* A full backlog: wait for room, then try again once. */
            r = wait_fd(fd, POLLOUT, timeout_ms);
            if (r == 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EISCONN)
                r = -errno;
        }
    }
    if (r < 0) {
        close(fd);
        return r;
    }
    return fd;
}

/* Firecracker's hybrid vsock: "CONNECT <port>\n" answered by "OK <host port>\n". The reply
 * is read byte by byte so no protocol byte after it is consumed here. */
static int hybrid_handshake(int fd, uint32_t port, int timeout_ms, struct agent_error *e)
{
    char line[32];
    int n = snprintf(line, sizeof(line), "CONNECT %u\n", port);
    int r = ac_write_all(fd, line, (size_t)n);
    if (r < 0)
        return ac_fail(e, r, "vsock handshake: %s", strerror(-r));
    size_t len = 0;
    for (;;) {
        if ((r = wait_fd(fd, POLLIN, timeout_ms)) < 0)
            return ac_fail(e, r, "vsock handshake: no reply (%s)", strerror(-r));
        char ch;
        ssize_t got = read(fd, &ch, 1);
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (got <= 0)
            return ac_fail(e, ECONNREFUSED,
                           "vsock handshake: closed (nothing listens on guest port %u?)", port);
        if (ch == '\n')
            break;
        if (len >= sizeof(line) - 1)
            return ac_fail(e, EPROTO, "vsock handshake: reply too long");
        line[len++] = ch;
    }
    line[len] = 0;
    if (strncmp(line, "OK ", 3) != 0) {
        char shown[sizeof(line) * 4];
        return ac_fail(e, EPROTO, "vsock handshake: unexpected reply \"%s\"",
                       agent_text_escape(line, len, shown, sizeof(shown)));
    }
    return 0;
}

int agent_connect(const struct agent_addr *a, struct agent_error *e)
{
    int timeout = ac_timeout(a);
    if (!a->path)
        return ac_fail(e, EINVAL, "no socket path");
    int fd = connect_unix(a->path, timeout);
    if (fd < 0)
        return ac_fail(e, fd, "connect %s: %s", a->path, strerror(-fd));
    if (a->hybrid) {
        int r = hybrid_handshake(fd, a->port ? a->port : PROTO_DEFAULT_PORT, timeout, e);
        if (r < 0) {
            close(fd);
            return r;
        }
    }
    return fd;
}

/* Connect, send one request frame, and set up a reader. Returns the fd or -errno. */
static int request_open(const struct agent_addr *a, uint8_t type, const struct proto_buf *b,
                        struct proto_rx *rx, struct agent_error *e)
{
    if (proto_rx_init(rx) < 0)
        return ac_fail(e, ENOMEM, "out of memory");
    int fd = agent_connect(a, e);
    if (fd < 0) {
        proto_rx_free(rx);
        return fd;
    }
    int r = ac_send(fd, type, b ? b->data : NULL, b ? b->len : 0);
    if (r < 0) {
        close(fd);
        proto_rx_free(rx);
        return ac_fail(e, r, "sending request: %s", strerror(-r));
    }
    return fd;
}

/* Wait for the RESULT frame of a request; ERROR and anything else fail. */
static int expect_result(int fd, struct proto_rx *rx, struct proto_frame *f, int timeout_ms,
                         struct agent_error *e)
{
    int r = ac_next(fd, rx, f, timeout_ms);
    if (r < 0)
        return ac_fail(e, r, "waiting for the agent: %s", strerror(-r));
    if (f->type == PROTO_ERROR)
        return ac_error_frame(f, e);
    if (f->type != PROTO_RESULT)
        return ac_fail(e, EPROTO, "unexpected frame type 0x%02x", f->type);
    return 0;
}

int agent_ping(const struct agent_addr *a, struct agent_ping_info *info, struct agent_error *e)
{
    struct proto_rx rx;
    struct proto_frame f;
    int fd = request_open(a, PROTO_PING, NULL, &rx, e);
    if (fd < 0)
        return fd;
    int r = expect_result(fd, &rx, &f, ac_timeout(a), e);
    if (r == 0) {
        struct proto_tlv_iter it;
        uint16_t tag;
        const uint8_t *val;
        uint32_t n;
        uint64_t v;
        memset(info, 0, sizeof(*info));
        proto_tlv_iter_init(&it, f.payload, f.len);
        while (proto_tlv_next(&it, &tag, &val, &n) > 0) {
            if (tag == TAG_PROTO_VERSION && proto_tlv_u64(val, n, &v) == 0)
                info->proto_version = (uint32_t)v;
            else if (tag == TAG_UPTIME_MS && proto_tlv_u64(val, n, &v) == 0)
                info->uptime_ms = v;
            else if (tag == TAG_AGENT_VERSION)
                agent_text_escape(val, n, info->agent_version, sizeof(info->agent_version));
        }
    }
    close(fd);
    proto_rx_free(&rx);
    return r;
}

int agent_read_file(const struct agent_addr *a, const char *guest_path, int out_fd, uint32_t *mode,
                    struct agent_error *e)
{
    uint8_t buf[PROTO_MAX_STR + 64];
    struct proto_buf b = {buf, 0, sizeof(buf)};
    if (proto_tlv_put_str(&b, TAG_PATH, guest_path) < 0)
        return ac_fail(e, ENAMETOOLONG, "path too long");
    struct proto_rx rx;
    struct proto_frame f;
    int fd = request_open(a, PROTO_READ_FILE, &b, &rx, e);
    if (fd < 0)
        return fd;
    int r = expect_result(fd, &rx, &f, ac_timeout(a), e);
    uint64_t v;
    if (r == 0 && mode && proto_tlv_find_u64(f.payload, f.len, TAG_MODE, &v))
        *mode = (uint32_t)v;
    while (r == 0) {
        r = ac_next(fd, &rx, &f, ac_timeout(a));
        if (r < 0) {
            r = ac_fail(e, r, "reading %s: %s", guest_path, strerror(-r));
        } else if (f.type == PROTO_EOF) {
            r = 0;
            break;
        } else if (f.type == PROTO_ERROR) {
            r = ac_error_frame(&f, e);
        } else if (f.type != PROTO_DATA) {
            r = ac_fail(e, EPROTO, "unexpected frame type 0x%02x", f.type);
        } else if ((r = ac_write_all(out_fd, f.payload, f.len)) < 0) {
            r = ac_fail(e, r, "writing local copy: %s", strerror(-r));
        }
    }
    close(fd);
    proto_rx_free(&rx);
    return r;
}

int agent_write_file(const struct agent_addr *a, const char *guest_path, uint32_t mode, int in_fd,
                     struct agent_error *e)
{
    uint8_t buf[PROTO_MAX_STR + 64];
    struct proto_buf b = {buf, 0, sizeof(buf)};
    if (proto_tlv_put_str(&b, TAG_PATH, guest_path) < 0)
        return ac_fail(e, ENAMETOOLONG, "path too long");
    proto_tlv_put_u64(&b, TAG_MODE, mode & 07777);
    uint8_t *chunk = malloc(PROTO_DATA_CHUNK);
    if (!chunk)
        return ac_fail(e, ENOMEM, "out of memory");
    struct proto_rx rx;
    struct proto_frame f;
    int fd = request_open(a, PROTO_WRITE_FILE, &b, &rx, e);
    if (fd < 0) {
        free(chunk);
        return fd;
    }
    int r = 0;
    for (;;) {
        ssize_t n = read(in_fd, chunk, PROTO_DATA_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = ac_fail(e, errno, "reading local file: %s", strerror(errno));
            break;
        }
        /* A send error usually means the agent refused (open failed): read its reason. */
        if (ac_send(fd, n ? PROTO_DATA : PROTO_EOF, chunk, (size_t)n) < 0 || n == 0)
            break;
    }
    if (r == 0)
        r = expect_result(fd, &rx, &f, ac_timeout(a), e);
    close(fd);
    proto_rx_free(&rx);
    free(chunk);
    return r;
}

int agent_shutdown(const struct agent_addr *a, bool reboot, struct agent_error *e)
{
    uint8_t buf[32];
    struct proto_buf b = {buf, 0, sizeof(buf)};
    proto_tlv_put_u64(&b, TAG_ACTION, reboot ? PROTO_REBOOT : PROTO_POWEROFF);
    struct proto_rx rx;
    struct proto_frame f;
    int fd = request_open(a, PROTO_SHUTDOWN, &b, &rx, e);
    if (fd < 0)
        return fd;
    int r = expect_result(fd, &rx, &f, ac_timeout(a), e);
    close(fd);
    proto_rx_free(&rx);
    return r;
}
