/* Host-side client for amber-agent: exec, pumping stdin out and stdout/stderr in with poll(). */
#include "ctl/agent_client_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vmm/clock.h"

/* Extra wait past the command's own timeout before the client gives up on a silent agent. */
#define EXEC_GRACE_MS 10000

static int encode_spec(const struct agent_exec_spec *s, struct proto_buf *b)
{
    int r = 0;
    if (s->shell)
        r = proto_tlv_put_str(b, TAG_SHELL, s->shell);
    for (size_t i = 0; r == 0 && s->argv && s->argv[i]; i++)
        r = proto_tlv_put_str(b, TAG_ARGV, s->argv[i]);
    for (size_t i = 0; r == 0 && s->env && s->env[i]; i++)
        r = proto_tlv_put_str(b, TAG_ENV, s->env[i]);
    if (r == 0 && s->cwd)
        r = proto_tlv_put_str(b, TAG_CWD, s->cwd);
    if (r == 0 && s->user)
        r = proto_tlv_put_str(b, TAG_USER, s->user);
    if (r == 0 && s->timeout_ms)
        r = proto_tlv_put_u64(b, TAG_TIMEOUT_MS, s->timeout_ms);
    if (r == 0 && s->pty_cols && s->pty_rows)
        r = proto_tlv_put_u64(b, TAG_COLS, s->pty_cols);
    if (r == 0 && s->pty_cols && s->pty_rows)
        r = proto_tlv_put_u64(b, TAG_ROWS, s->pty_rows);
    return r;
}

struct xpump {
    int sock;
    struct proto_rx rx;
    const struct agent_exec_io *io;
    struct agent_exec_result *res;
    struct agent_error *e;
    uint8_t *out;   /* one outbound frame (header + stdin chunk) */
    size_t out_len; /* bytes of it not yet sent */
    size_t out_off;
    bool stdin_done;  /* EOF frame queued */
    bool send_broken; /* the agent stopped reading: keep listening for its verdict */
    bool exited;
    bool pty; /* a PTY request: io->resize_fd is honoured (never for a plain exec) */
};

static void queue_frame(struct xpump *p, uint8_t type, size_t payload_len)
{
    proto_frame_header(p->out, type, 1, payload_len);
    p->out_off = 0;
    p->out_len = PROTO_HDR_LEN + payload_len;
}

static void pump_stdin(struct xpump *p)
{
    ssize_t n = read(p->io->stdin_fd, p->out + PROTO_HDR_LEN, PROTO_DATA_CHUNK);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n <= 0) { /* EOF, or a local read error: the command just sees end of input */
        queue_frame(p, PROTO_EOF, 0);
        p->stdin_done = true;
        return;
    }
    queue_frame(p, PROTO_DATA, (size_t)n);
}

/* The window changed: drain the notification, queue RESIZE with size_fd's size. */
static void pump_resize(struct xpump *p)
{
    uint8_t junk[256];
    while (read(p->io->resize_fd, junk, sizeof(junk)) > 0) {
    }
    struct winsize ws;
    if (ioctl(p->io->size_fd, TIOCGWINSZ, &ws) < 0 || !ws.ws_col || !ws.ws_row)
        return;
    struct proto_buf b = {p->out + PROTO_HDR_LEN, 0, PROTO_DATA_CHUNK};
    uint16_t cols = ws.ws_col > PROTO_MAX_WINSIZE ? PROTO_MAX_WINSIZE : ws.ws_col;
    uint16_t rows = ws.ws_row > PROTO_MAX_WINSIZE ? PROTO_MAX_WINSIZE : ws.ws_row;
    proto_tlv_put_u64(&b, TAG_COLS, cols);
    proto_tlv_put_u64(&b, TAG_ROWS, rows);
    queue_frame(p, PROTO_RESIZE, b.len);
}

static void pump_send(struct xpump *p)
{
    while (p->out_len) {
        ssize_t n = send(p->sock, p->out + p->out_off, p->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n < 0) {
            p->send_broken = true;
            p->out_len = 0;
            return;
        }
        p->out_off += (size_t)n;
        p->out_len -= (size_t)n;
    }
}

static void parse_exit(struct xpump *p, const struct proto_frame *f)
{
    struct proto_tlv_iter it;
    uint16_t tag;
    const uint8_t *val;
    uint32_t n;
    uint64_t v;
    proto_tlv_iter_init(&it, f->payload, f->len);
    while (proto_tlv_next(&it, &tag, &val, &n) > 0) {
        if (proto_tlv_u64(val, n, &v) < 0)
            continue;
        if (tag == TAG_EXIT_CODE)
            p->res->exit_code = (int)(v & 0xff);
        else if (tag == TAG_SIGNAL)
            p->res->signal = (int)(v & 0x7f);
        else if (tag == TAG_DURATION_MS)
            p->res->duration_ms = v;
        else if (tag == TAG_TIMED_OUT)
            p->res->timed_out = v != 0;
    }
    p->exited = true;
}

/* Handle buffered frames. Returns 0, or -errno on a failure already recorded in p->e. */
static int pump_frames(struct xpump *p)
{
    struct proto_frame f;
    int r;
    while (!p->exited && (r = proto_rx_next(&p->rx, &f)) != 0) {
        if (r < 0)
            return ac_fail(p->e, r, "bad frame from the agent: %s", strerror(-r));
        switch (f.type) {
        case PROTO_STDOUT:
        case PROTO_STDERR: {
            int fd = f.type == PROTO_STDOUT ? p->io->stdout_fd : p->io->stderr_fd;
            if (fd >= 0 && (r = ac_write_all(fd, f.payload, f.len)) < 0)
                return ac_fail(p->e, r, "writing command output: %s", strerror(-r));
            break;
        }
        case PROTO_STARTED: {
            uint64_t v;
            if (proto_tlv_find_u64(f.payload, f.len, TAG_PID, &v))
                p->res->pid = (uint32_t)v;
            break;
        }
        case PROTO_EXIT:
            parse_exit(p, &f);
            break;
        case PROTO_ERROR:
            return ac_error_frame(&f, p->e);
        default:
            return ac_fail(p->e, EPROTO, "unexpected frame type 0x%02x", f.type);
        }
    }
    return 0;
}

static int pump_loop(struct xpump *p, uint64_t deadline_ms)
{
    for (;;) {
        int r = pump_frames(p);
        if (r < 0 || p->exited)
            return r;
        struct pollfd fds[3];
        nfds_t nfds = 1;
        bool want_stdin = !p->stdin_done && !p->send_broken && p->out_len == 0;
        bool want_resize = p->pty && p->io->resize_fd >= 0 && !p->send_broken && p->out_len == 0;
        int i_stdin = -1, i_resize = -1;
        fds[0] = (struct pollfd){.fd = p->sock, .events = POLLIN};
        if (p->out_len && !p->send_broken)
            fds[0].events |= POLLOUT;
        if (want_stdin) {
            i_stdin = (int)nfds;
            fds[nfds++] = (struct pollfd){.fd = p->io->stdin_fd, .events = POLLIN};
        }
        if (want_resize) {
            i_resize = (int)nfds;
            fds[nfds++] = (struct pollfd){.fd = p->io->resize_fd, .events = POLLIN};
        }
        int timeout = -1;
        if (deadline_ms) {
            uint64_t now = clock_now_ms();
            if (now >= deadline_ms)
                return ac_fail(p->e, ETIMEDOUT, "the agent did not report an exit in time");
            timeout = (int)(deadline_ms - now);
        }
        int n = poll(fds, nfds, timeout);
        if (n < 0 && errno != EINTR)
            return ac_fail(p->e, errno, "poll: %s", strerror(errno));
        if (n <= 0)
            continue;
        if (fds[0].revents & POLLOUT)
            pump_send(p);
        if (i_resize >= 0 && fds[i_resize].revents) {
            pump_resize(p);
            pump_send(p);
        } else if (i_stdin >= 0 && fds[i_stdin].revents) {
            pump_stdin(p);
            pump_send(p);
        }
        if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            size_t room;
            uint8_t *dst = proto_rx_space(&p->rx, &room);
            ssize_t got = read(p->sock, dst, room);
            if (got < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            if (got < 0)
                return ac_fail(p->e, errno, "reading from the agent: %s", strerror(errno));
            if (got == 0)
                return ac_fail(p->e, ECONNRESET, "the agent closed the connection early");
            proto_rx_commit(&p->rx, (size_t)got);
        }
    }
}

int agent_exec(const struct agent_addr *a, const struct agent_exec_spec *spec,
               const struct agent_exec_io *io, struct agent_exec_result *res, struct agent_error *e)
{
    struct xpump p = {
        .sock = -1, .io = io, .res = res, .e = e, .pty = spec->pty_cols && spec->pty_rows};
    memset(res, 0, sizeof(*res));
    uint8_t *req = malloc(PROTO_MAX_PAYLOAD);
    p.out = malloc(PROTO_HDR_LEN + PROTO_DATA_CHUNK);
    int r;
    if (!req || !p.out || proto_rx_init(&p.rx) < 0) {
        r = ac_fail(e, ENOMEM, "out of memory");
        goto out;
    }
    struct proto_buf b = {req, 0, PROTO_MAX_PAYLOAD};
    if ((r = encode_spec(spec, &b)) < 0) {
        r = ac_fail(e, r, "command too large for one request");
        goto out;
    }
    p.sock = agent_connect(a, e);
    if (p.sock < 0) {
        r = p.sock;
        goto out;
    }
    uint8_t type = spec->pty_cols && spec->pty_rows ? PROTO_PTY : PROTO_EXEC;
    if ((r = ac_send(p.sock, type, b.data, b.len)) < 0) {
        r = ac_fail(e, r, "sending exec: %s", strerror(-r));
        goto out;
    }
    fcntl(p.sock, F_SETFL, fcntl(p.sock, F_GETFL) | O_NONBLOCK);
    if (io->stdin_fd < 0) {
        queue_frame(&p, PROTO_EOF, 0);
        p.stdin_done = true;
        pump_send(&p);
    }
    uint64_t deadline = spec->timeout_ms ? clock_now_ms() + spec->timeout_ms + EXEC_GRACE_MS : 0;
    r = pump_loop(&p, deadline);
out:
    if (p.sock >= 0)
        close(p.sock);
    proto_rx_free(&p.rx);
    free(p.out);
    free(req);
    return r;
}
