/* amber-agent: background commands' supervisor: outlives its connection, keeps the tail of the
 * output, streams to attached clients, takes over the connections bg_handoff.c passes it. */
#include "guest/agent/agent.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BG_KEEP_BYTES     (1024u * 1024u) /* output retained for replay to a later attach */
#define BG_MAX_CLIENTS    8
#define BG_LINGER_MS      60000 /* an exit nobody received waits this long for an attach */
#define BG_SEND_TIMEOUT_S 10    /* a client that stops reading this long is dropped */
#define BG_DRAIN_IDLE_MS  100

/* A piece of retained output, of one stream. */
struct chunk {
    struct chunk *next;
    uint8_t type; /* PROTO_STDOUT or PROTO_STDERR */
    uint32_t len;
    uint8_t data[PROTO_DATA_CHUNK];
};

struct bg {
    const struct agent_opts *opts;
    struct exec_child ch;
    int lfd;
    char sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    char info_path[PATH_MAX];
    struct chunk *head, *tail;
    size_t kept;
    uint64_t dropped;
    struct agent_conn cl[BG_MAX_CLIENTS]; /* fd -1: a free slot */
    const uint8_t *pending;               /* stdin bytes of client pending_cl's DATA frame */
    size_t pending_len;
    bool stdin_eof; /* a client sent EOF: close stdin once pending is written */
    bool exited, exit_sent, delivered, timed_out;
    int status;
    uint64_t deadline_ms, last_output_ms, exit_ms;
    uint8_t info[BG_INFO_MAX];
    size_t info_len;
    uint8_t buf[PROTO_DATA_CHUNK];
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* The listing record: PID, the command, CWD, and once it ended EXIT_CODE or SIGNAL. */
static void info_build(struct bg *b, const struct proto_exec_req *req)
{
    struct proto_buf pb = {b->info, 0, sizeof(b->info) - 64}; /* room left for the exit */
    proto_tlv_put_u64(&pb, TAG_PID, (uint64_t)b->ch.pid);
    if (req->shell)
        proto_tlv_put_str(&pb, TAG_SHELL, req->shell);
    for (size_t i = 0; i < req->argc; i++)
        if (proto_tlv_put_str(&pb, TAG_ARGV, req->argv[i]) < 0)
            break; /* a listing shows what fits */
    if (req->cwd)
        proto_tlv_put_str(&pb, TAG_CWD, req->cwd);
    b->info_len = pb.len;
}

static void info_write(struct bg *b)
{
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof(tmp), "%s.tmp", b->info_path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    bool ok = write(fd, b->info, b->info_len) == (ssize_t)b->info_len;
    close(fd);
    if (!ok || rename(tmp, b->info_path) < 0)
        unlink(tmp);
}

static void client_drop(struct bg *b, int i)
{
    if (b->pending_len && b->pending >= b->cl[i].rx.buf &&
        b->pending < b->cl[i].rx.buf + b->cl[i].rx.cap)
        b->pending_len = 0; /* it pointed into this client's buffer */
    close_fd(&b->cl[i].fd);
    proto_rx_free(&b->cl[i].rx);
}

static void client_send(struct bg *b, int i, uint8_t type, const void *data, size_t len)
{
    if (b->cl[i].fd >= 0 && conn_send(&b->cl[i], type, data, len) < 0)
        client_drop(b, i);
}

static void ring_append(struct bg *b, uint8_t type, const uint8_t *p, size_t n)
{
    while (n) {
        struct chunk *t = b->tail;
        if (!t || t->type != type || t->len == sizeof(t->data)) {
            t = malloc(sizeof(*t));
            if (!t) {
                b->dropped += n;
                return;
            }
            t->next = NULL;
            t->type = type;
            t->len = 0;
            if (b->tail)
                b->tail->next = t;
            else
                b->head = t;
            b->tail = t;
        }
        size_t m = sizeof(t->data) - t->len < n ? sizeof(t->data) - t->len : n;
        memcpy(t->data + t->len, p, m);
        t->len += (uint32_t)m;
        b->kept += m;
        p += m;
        n -= m;
    }
    while (b->kept > BG_KEEP_BYTES && b->head != b->tail) {
        struct chunk *h = b->head;
        b->head = h->next;
        b->kept -= h->len;
        b->dropped += h->len;
        free(h);
    }
}

static void ring_free(struct bg *b)
{
    while (b->head) {
        struct chunk *h = b->head;
        b->head = h->next;
        free(h);
    }
    b->tail = NULL;
}

static void on_output(struct bg *b, int *fd, uint8_t type)
{
    ssize_t n = read(*fd, b->buf, sizeof(b->buf));
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n <= 0) {
        close_fd(fd);
        return;
    }
    b->last_output_ms = now_ms();
    ring_append(b, type, b->buf, (size_t)n);
    for (int i = 0; i < BG_MAX_CLIENTS; i++)
        client_send(b, i, type, b->buf, (size_t)n);
}

static void stdin_write(struct bg *b)
{
    while (b->pending_len && b->ch.in_fd >= 0) {
        ssize_t n = write(b->ch.in_fd, b->pending, b->pending_len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n < 0) { /* EPIPE: the command closed its stdin */
            close_fd(&b->ch.in_fd);
            break;
        }
        b->pending += n;
        b->pending_len -= (size_t)n;
    }
    if (b->ch.in_fd < 0)
        b->pending_len = 0;
    if (!b->pending_len && b->stdin_eof)
        close_fd(&b->ch.in_fd);
}

/* Take the frames clients have sent (stdin DATA and EOF) while no stdin is pending. */
static void take_frames(struct bg *b)
{
    for (int i = 0; i < BG_MAX_CLIENTS && !b->pending_len; i++) {
        struct proto_frame f;
        int r;
        while (b->cl[i].fd >= 0 && !b->pending_len && (r = proto_rx_next(&b->cl[i].rx, &f)) != 0) {
            if (r > 0 && f.type == PROTO_RESIZE && b->ch.pty &&
                (r = pty_resize(b->ch.out_fd, f.payload, f.len)) == 0)
                continue;
            if (r < 0 || (f.type != PROTO_DATA && f.type != PROTO_EOF)) {
                conn_send_error(&b->cl[i], r < 0 ? -r : EPROTO, "background: unexpected frame");
                client_drop(b, i);
            } else if (f.type == PROTO_EOF) {
                b->stdin_eof = true;
                stdin_write(b);
            } else if (b->ch.in_fd >= 0) {
                b->pending = f.payload;
                b->pending_len = f.len;
                stdin_write(b);
            }
        }
    }
}

/* Replay the retained output to client i (after its RESULT{PID, DROPPED}). */
static void replay(struct bg *b, int i)
{
    uint8_t meta[64];
    struct proto_buf pb = {meta, 0, sizeof(meta)};
    proto_tlv_put_u64(&pb, TAG_PID, (uint64_t)b->ch.pid);
    proto_tlv_put_u64(&pb, TAG_DROPPED, b->dropped);
    client_send(b, i, PROTO_RESULT, pb.data, pb.len);
    for (struct chunk *c = b->head; c && b->cl[i].fd >= 0; c = c->next)
        client_send(b, i, c->type, c->data, c->len);
}

static void send_exit_all(struct bg *b)
{
    uint64_t dur = now_ms() - b->ch.start_ms;
    for (int i = 0; i < BG_MAX_CLIENTS; i++) {
        if (b->cl[i].fd < 0)
            continue;
        if (exec_send_exit(&b->cl[i], b->status, b->timed_out, dur) == 0)
            b->delivered = true;
        client_drop(b, i);
    }
}

/* A request handed over by bg_forward(): a frame plus trailing bytes, and the client socket. */
static void on_handoff(struct bg *b)
{
    int cfd = accept4(b->lfd, NULL, NULL, SOCK_CLOEXEC);
    if (cfd < 0)
        return;
    struct timeval tv = {1, 0};
    setsockopt(cfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    static uint8_t msg[BG_MAX_HANDOFF];
    union {
        char buf[CMSG_SPACE(4 * sizeof(int))];
        struct cmsghdr align;
    } cm;
    struct iovec iov = {msg, sizeof(msg)};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf, .msg_controllen = sizeof(cm.buf)};
    ssize_t n = recvmsg(cfd, &mh, MSG_CMSG_CLOEXEC);
    close(cfd);
    int fd = -1;
    for (struct cmsghdr *h = CMSG_FIRSTHDR(&mh); n >= 0 && h; h = CMSG_NXTHDR(&mh, h)) {
        if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS)
            continue;
        size_t nfds = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t k = 0; k < nfds; k++) {
            int x;
            memcpy(&x, CMSG_DATA(h) + k * sizeof(int), sizeof(int));
            if (fd < 0)
                fd = x;
            else
                close(x); /* one socket per handoff */
        }
    }
    struct proto_frame f;
    if (fd < 0 || n <= 0 || (mh.msg_flags & MSG_TRUNC) ||
        proto_frame_parse(msg, (size_t)n, &f) <= 0) {
        if (fd >= 0)
            close(fd);
        return;
    }
    size_t used = PROTO_HDR_LEN + f.len;
    struct agent_conn c = {.fd = fd, .id = f.id, .opts = b->opts};
    struct timeval st = {BG_SEND_TIMEOUT_S, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &st, sizeof(st));
    struct proto_pid_req req;
    if (proto_pid_req_decode(f.payload, f.len, &req) < 0 || req.pid != (uint32_t)b->ch.pid ||
        (f.type != PROTO_KILL && f.type != PROTO_ATTACH && f.type != PROTO_RESIZE)) {
        conn_send_error(&c, EINVAL, "background: bad handoff");
        close(fd);
        return;
    }
    if (f.type == PROTO_RESIZE) {
        int r = b->ch.pty ? pty_resize(b->ch.out_fd, f.payload, f.len) : -ENOTTY;
        if (r < 0)
            conn_send_error(&c, -r, "resize %u: %s", req.pid,
                            r == -ENOTTY ? "not a pty" : strerror(-r));
        else
            conn_send(&c, PROTO_RESULT, NULL, 0);
        close(fd);
        return;
    }
    if (f.type == PROTO_KILL) {
        if (!b->exited) {
            kill(-b->ch.pid, req.signal); /* setsid() made it a group leader */
            conn_send(&c, PROTO_RESULT, NULL, 0);
        } else { /* already ended: say how, signal nothing */
            uint8_t meta[32];
            struct proto_buf pb = {meta, 0, sizeof(meta)};
            if (WIFSIGNALED(b->status))
                proto_tlv_put_u64(&pb, TAG_SIGNAL, (uint64_t)WTERMSIG(b->status));
            else
                proto_tlv_put_u64(&pb, TAG_EXIT_CODE, (uint64_t)WEXITSTATUS(b->status));
            conn_send(&c, PROTO_RESULT, pb.data, pb.len);
        }
        close(fd);
        return;
    }
    int i = 0;
    while (i < BG_MAX_CLIENTS && b->cl[i].fd >= 0)
        i++;
    if (i == BG_MAX_CLIENTS) {
        conn_send_error(&c, EBUSY, "command %u already has %d clients attached", req.pid,
                        BG_MAX_CLIENTS);
        close(fd);
        return;
    }
    if (proto_rx_init(&c.rx) < 0) {
        conn_send_error(&c, ENOMEM, "attach: out of memory");
        close(fd);
        return;
    }
    size_t room;
    uint8_t *dst = proto_rx_space(&c.rx, &room);
    memcpy(dst, msg + used, (size_t)n - used); /* n - used < BG_MAX_HANDOFF < room */
    proto_rx_commit(&c.rx, (size_t)n - used);
    b->cl[i] = c;
    replay(b, i);
    if (b->exit_sent && b->cl[i].fd >= 0) {
        if (exec_send_exit(&b->cl[i], b->status, b->timed_out, b->exit_ms - b->ch.start_ms) == 0)
            b->delivered = true;
        client_drop(b, i);
    }
}

static void on_exited(struct bg *b)
{
    send_exit_all(b);
    close_fd(&b->ch.in_fd);
    close_fd(&b->ch.out_fd);
    close_fd(&b->ch.err_fd);
    b->pending_len = 0;
    b->exit_sent = true;
    b->exit_ms = now_ms();
    uint8_t meta[32];
    struct proto_buf pb = {meta, 0, sizeof(meta)};
    if (WIFSIGNALED(b->status))
        proto_tlv_put_u64(&pb, TAG_SIGNAL, (uint64_t)WTERMSIG(b->status));
    else
        proto_tlv_put_u64(&pb, TAG_EXIT_CODE, (uint64_t)WEXITSTATUS(b->status));
    memcpy(b->info + b->info_len, pb.data, pb.len); /* info_build left 64 bytes for this */
    b->info_len += pb.len;
    info_write(b);
}

static int loop_timeout(const struct bg *b, uint64_t now)
{
    int64_t t = 60000;
    if (b->deadline_ms && !b->timed_out)
        t = b->deadline_ms > now ? (int64_t)(b->deadline_ms - now) : 0;
    if (b->exited && !b->exit_sent) {
        int64_t idle = (int64_t)(b->last_output_ms + BG_DRAIN_IDLE_MS) - (int64_t)now;
        t = idle < t ? (idle < 0 ? 0 : idle) : t;
    }
    if (b->exit_sent) {
        int64_t left = (int64_t)(b->exit_ms + BG_LINGER_MS) - (int64_t)now;
        t = left < t ? (left < 0 ? 0 : left) : t;
    }
    return (int)t;
}

static void bg_loop(struct bg *b)
{
    for (;;) {
        take_frames(b);
        uint64_t now = now_ms();
        if (b->exited && !b->exit_sent &&
            ((b->ch.out_fd < 0 && b->ch.err_fd < 0) || now >= b->last_output_ms + BG_DRAIN_IDLE_MS))
            on_exited(b);
        if (b->exit_sent && (b->delivered || now >= b->exit_ms + BG_LINGER_MS))
            return;
        struct pollfd fds[5 + BG_MAX_CLIENTS];
        int idx[BG_MAX_CLIENTS];
        int nfds = 0;
        fds[nfds++] = (struct pollfd){.fd = b->lfd, .events = POLLIN};
        int i_in = -1, i_out = -1, i_err = -1, i_pid = -1;
        if (b->pending_len && b->ch.in_fd >= 0) {
            i_in = nfds;
            fds[nfds++] = (struct pollfd){.fd = b->ch.in_fd, .events = POLLOUT};
        }
        if (b->ch.out_fd >= 0) {
            i_out = nfds;
            fds[nfds++] = (struct pollfd){.fd = b->ch.out_fd, .events = POLLIN};
        }
        if (b->ch.err_fd >= 0) {
            i_err = nfds;
            fds[nfds++] = (struct pollfd){.fd = b->ch.err_fd, .events = POLLIN};
        }
        if (!b->exited) {
            i_pid = nfds;
            fds[nfds++] = (struct pollfd){.fd = b->ch.pidfd, .events = POLLIN};
        }
        for (int i = 0; i < BG_MAX_CLIENTS; i++) {
            idx[i] = -1;
            if (b->cl[i].fd >= 0 && !b->pending_len) {
                idx[i] = nfds;
                fds[nfds++] = (struct pollfd){.fd = b->cl[i].fd, .events = POLLIN};
            }
        }
        int n = poll(fds, (nfds_t)nfds, loop_timeout(b, now));
        if (b->deadline_ms && !b->timed_out && !b->exited && now_ms() >= b->deadline_ms) {
            kill(-b->ch.pid, SIGKILL);
            b->timed_out = true;
        }
        if (n <= 0)
            continue;
        if (i_out >= 0 && fds[i_out].revents)
            on_output(b, &b->ch.out_fd, PROTO_STDOUT);
        if (i_err >= 0 && fds[i_err].revents)
            on_output(b, &b->ch.err_fd, PROTO_STDERR);
        if (i_in >= 0 && fds[i_in].revents)
            stdin_write(b);
        for (int i = 0; i < BG_MAX_CLIENTS; i++)
            if (idx[i] >= 0 && fds[idx[i]].revents && b->cl[i].fd >= 0 &&
                conn_fill(&b->cl[i], 0) < 0)
                client_drop(b, i); /* a client going away detaches; stdin stays open */
        if (i_pid >= 0 && fds[i_pid].revents &&
            waitpid(b->ch.pid, &b->status, WNOHANG) == b->ch.pid) {
            b->exited = true;
            b->last_output_ms = now_ms();
        }
        if (fds[0].revents)
            on_handoff(b);
    }
}

static int listen_seqpacket(const char *path)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(a.sun_path))
        return -ENAMETOOLONG;
    strcpy(a.sun_path, path);
    int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -errno;
    unlink(path); /* a record left by a supervisor that was killed */
    if (bind(s, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(s, 16) < 0) {
        int e = errno;
        close(s);
        return -e;
    }
    return s;
}

int bg_serve(struct agent_conn *c, const struct proto_exec_req *req, struct exec_child *ch)
{
    struct bg *b = calloc(1, sizeof(*b));
    int r;
    if (!b) {
        r = -ENOMEM;
        conn_send_error(c, ENOMEM, "exec: out of memory");
        goto err_kill;
    }
    b->opts = c->opts;
    b->ch = *ch;
    b->lfd = -1;
    for (int i = 0; i < BG_MAX_CLIENTS; i++)
        b->cl[i].fd = -1;
    uint32_t pid = (uint32_t)ch->pid;
    if ((r = bg_path(c->opts, pid, ".sock", b->sock_path, sizeof(b->sock_path))) < 0 ||
        (r = bg_path(c->opts, pid, ".info", b->info_path, sizeof(b->info_path))) < 0 ||
        (r = listen_seqpacket(b->sock_path)) < 0) {
        conn_send_error(c, -r, "exec: background control socket in %s: %s", c->opts->run_dir,
                        strerror(-r));
        goto err_kill;
    }
    b->lfd = r;
    info_build(b, req);
    info_write(b);
    if (req->timeout_ms)
        b->deadline_ms = ch->start_ms + req->timeout_ms;
    /* The request's connection is the first client; it now belongs to the supervisor. */
    b->cl[0] = *c;
    c->fd = -1;
    memset(&c->rx, 0, sizeof(c->rx));
    struct timeval st = {BG_SEND_TIMEOUT_S, 0};
    setsockopt(b->cl[0].fd, SOL_SOCKET, SO_SNDTIMEO, &st, sizeof(st));
    uint8_t started[32];
    struct proto_buf pb = {started, 0, sizeof(started)};
    proto_tlv_put_u64(&pb, TAG_PID, (uint64_t)pid);
    client_send(b, 0, PROTO_STARTED, pb.data, pb.len);
    bg_loop(b);
    for (int i = 0; i < BG_MAX_CLIENTS; i++)
        if (b->cl[i].fd >= 0)
            client_drop(b, i);
    unlink(b->sock_path);
    unlink(b->info_path);
    close_fd(&b->lfd);
    close_fd(&b->ch.in_fd);
    close_fd(&b->ch.out_fd);
    close_fd(&b->ch.err_fd);
    close_fd(&b->ch.pidfd);
    ring_free(b);
    free(b);
    return 0;
err_kill:
    kill(-ch->pid, SIGKILL);
    waitpid(ch->pid, NULL, 0);
    close_fd(&ch->in_fd);
    close_fd(&ch->out_fd);
    close_fd(&ch->err_fd);
    close_fd(&ch->pidfd);
    if (b)
        close_fd(&b->lfd);
    free(b);
    return r;
}
