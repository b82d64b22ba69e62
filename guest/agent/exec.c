/* amber-agent: the exec operation: spawn in a new session, pump stdio as frames, report exit. */
#include "guest/agent/agent.h"
#include "guest/agent/user.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
/* After the command exits, output still arriving from its background children is forwarded
 * until the pipes close or stay quiet this long, so `cmd &` cannot hold exec open forever. */
#define DRAIN_IDLE_MS 100

/* Why the child failed before exec; sent over a close-on-exec pipe. */
struct spawn_err {
    int stage; /* 0 user, 1 cwd */
    int err;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void child_fail(int errfd, int stage)
{
    struct spawn_err e = {stage, errno};
    if (write(errfd, &e, sizeof(e)) < 0) {
        /* the parent sees EOF and reports a plain exit */
    }
    _exit(126);
}

/* Runs in the forked child: never returns. */
static void child_exec(const struct proto_exec_req *req, const struct user_info *u, int in_fd,
                       int out_fd, int err_fd, int errpipe)
{
    setsid();
    if (req->pty)
        pty_child_setup(in_fd);
    dup2(in_fd, 0);
    dup2(out_fd, 1);
    dup2(err_fd, 2);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);

    if (!getenv("PATH"))
        setenv("PATH", DEFAULT_PATH, 1);
    if (u) {
        setenv("HOME", u->home, 1);
        setenv("USER", u->name, 1);
        setenv("LOGNAME", u->name, 1);
    }
    for (size_t i = 0; i < req->envc; i++)
        putenv(req->env[i]);
    if (u && req->pty && fchown(in_fd, u->uid, u->gid) < 0) /* its terminal is the user's */
        child_fail(errpipe, 0);
    if (u) {
        if (setgroups(1, &u->gid) < 0 || setgid(u->gid) < 0 || setuid(u->uid) < 0)
            child_fail(errpipe, 0);
    }
    if (req->cwd && chdir(req->cwd) < 0)
        child_fail(errpipe, 1);
    if (!req->cwd && u && chdir(u->home) < 0 && chdir("/") < 0) /* e.g. nobody's /nonexistent */
        child_fail(errpipe, 1);
    if (req->shell)
        execl("/bin/sh", "sh", "-c", req->shell, (char *)NULL);
    else
        execvp(req->argv[0], req->argv);
    int e = errno;
    dprintf(2, "amber-agent: %s: %s\n", req->shell ? "/bin/sh" : req->argv[0], strerror(e));
    _exit(e == ENOENT ? 127 : 126);
}

struct pump {
    struct agent_conn *c;
    pid_t pid;
    int pidfd;
    int in_fd, out_fd, err_fd; /* -1 once closed */
    bool pty;                  /* out_fd is a pty master: RESIZE frames apply to it */
    const uint8_t *pending;    /* stdin bytes of the current DATA frame not yet written */
    size_t pending_len;
    bool conn_done; /* stdin EOF seen (frame or half-close) */
    bool exited;
    int status;
    uint64_t deadline_ms; /* 0 = none */
    bool timed_out;
    uint64_t last_output_ms;
    uint8_t *buf;
};

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* Forward one read from a child's output pipe. Returns 0, or -errno if the connection broke. */
static int pump_output(struct pump *p, int *fd, uint8_t type)
{
    ssize_t n = read(*fd, p->buf, PROTO_DATA_CHUNK);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return 0;
    if (n <= 0) {
        close_fd(fd);
        return 0;
    }
    p->last_output_ms = now_ms();
    return conn_send(p->c, type, p->buf, (size_t)n);
}

static void pump_stdin_write(struct pump *p)
{
    while (p->pending_len) {
        ssize_t n = write(p->in_fd, p->pending, p->pending_len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n < 0) { /* EPIPE: the command closed its stdin; drop the rest */
            close_fd(&p->in_fd);
            p->pending_len = 0;
            return;
        }
        p->pending += n;
        p->pending_len -= (size_t)n;
    }
}

/* Take buffered frames from the client while no stdin is pending. Returns 0 or -errno. */
static int pump_frames(struct pump *p)
{
    struct proto_frame f;
    while (!p->conn_done && p->pending_len == 0) {
        int r = proto_rx_next(&p->c->rx, &f);
        if (r == 0)
            return 0;
        if (r < 0) {
            conn_send_error(p->c, -r, "malformed frame: %s", strerror(-r));
            return r;
        }
        if (f.type == PROTO_EOF) {
            p->conn_done = true;
        } else if (f.type == PROTO_DATA) {
            if (p->in_fd >= 0) {
                p->pending = f.payload;
                p->pending_len = f.len;
                pump_stdin_write(p);
            }
        } else if (f.type == PROTO_RESIZE && p->pty) {
            if ((r = pty_resize(p->out_fd, f.payload, f.len)) < 0) {
                conn_send_error(p->c, -r, "pty: bad resize: %s", strerror(-r));
                return r;
            }
        } else {
            conn_send_error(p->c, EPROTO, "exec: unexpected frame type 0x%02x", f.type);
            return -EPROTO;
        }
    }
    if (p->conn_done && p->pending_len == 0)
        close_fd(&p->in_fd);
    return 0;
}

static int pump_poll_timeout(const struct pump *p)
{
    uint64_t now = now_ms();
    int64_t t = -1;
    if (p->deadline_ms && !p->timed_out)
        t = p->deadline_ms > now ? (int64_t)(p->deadline_ms - now) : 0;
    if (p->exited) {
        int64_t idle = (int64_t)(p->last_output_ms + DRAIN_IDLE_MS) - (int64_t)now;
        if (idle < 0)
            idle = 0;
        if (t < 0 || idle < t)
            t = idle;
    }
    return t > 60000 ? 60000 : (int)t;
}

static int pump_run(struct pump *p)
{
    for (;;) {
        int r = pump_frames(p);
        if (r < 0)
            return r;
        if (p->exited &&
            ((p->out_fd < 0 && p->err_fd < 0) || now_ms() >= p->last_output_ms + DRAIN_IDLE_MS))
            return 0;
        struct pollfd fds[5];
        int nfds = 0, i_conn = -1, i_in = -1, i_out = -1, i_err = -1, i_pid = -1;
        if (!p->conn_done && p->pending_len == 0) {
            i_conn = nfds;
            fds[nfds++] = (struct pollfd){.fd = p->c->fd, .events = POLLIN};
        }
        if (p->in_fd >= 0 && p->pending_len) {
            i_in = nfds;
            fds[nfds++] = (struct pollfd){.fd = p->in_fd, .events = POLLOUT};
        }
        if (p->out_fd >= 0) {
            i_out = nfds;
            fds[nfds++] = (struct pollfd){.fd = p->out_fd, .events = POLLIN};
        }
        if (p->err_fd >= 0) {
            i_err = nfds;
            fds[nfds++] = (struct pollfd){.fd = p->err_fd, .events = POLLIN};
        }
        if (!p->exited) {
            i_pid = nfds;
            fds[nfds++] = (struct pollfd){.fd = p->pidfd, .events = POLLIN};
        }
        int n = poll(fds, (nfds_t)nfds, pump_poll_timeout(p));
        if (n < 0 && errno != EINTR)
            return -errno;
        if (p->deadline_ms && !p->timed_out && now_ms() >= p->deadline_ms) {
            /* setsid() made the command a group leader: this reaches its children too. */
            kill(-p->pid, SIGKILL);
            p->timed_out = true;
        }
        if (n <= 0)
            continue;
        if (i_out >= 0 && fds[i_out].revents && (r = pump_output(p, &p->out_fd, PROTO_STDOUT)))
            return r;
        if (i_err >= 0 && fds[i_err].revents && (r = pump_output(p, &p->err_fd, PROTO_STDERR)))
            return r;
        if (i_in >= 0 && fds[i_in].revents)
            pump_stdin_write(p);
        if (i_conn >= 0 && fds[i_conn].revents) {
            r = conn_fill(p->c, 0);
            if (r == -ECONNRESET) {
                p->conn_done = true; /* a half-close is an implicit stdin EOF */
            } else if (r < 0 && r != -ETIMEDOUT) {
                return r;
            }
        }
        if (i_pid >= 0 && fds[i_pid].revents) {
            if (waitpid(p->pid, &p->status, WNOHANG) == p->pid) {
                p->exited = true;
                p->last_output_ms = now_ms();
                close_fd(&p->in_fd);
                p->pending_len = 0;
            }
        }
    }
}

static int report_spawn_error(struct agent_conn *c, const struct spawn_err *e,
                              const struct proto_exec_req *req)
{
    if (e->stage == 0)
        return conn_send_error(c, e->err, "exec: switching to user %s: %s", req->user,
                               strerror(e->err));
    return conn_send_error(c, e->err, "exec: chdir %s: %s", req->cwd ? req->cwd : "(home)",
                           strerror(e->err));
}

int exec_spawn(struct agent_conn *c, const struct proto_exec_req *req, struct exec_child *out)
{
    struct user_info user, *u = NULL;
    int r;
    *out = (struct exec_child){.pid = -1, .pidfd = -1, .in_fd = -1, .out_fd = -1, .err_fd = -1};
    if (req->user) {
        r = user_resolve("/etc/passwd", req->user, &user);
        if (r < 0) {
            conn_send_error(c, -r, "exec: unknown user %s", req->user);
            return r;
        }
        u = &user;
    }
    int in[2] = {-1, -1}, outp[2] = {-1, -1}, err[2] = {-1, -1}, ep[2] = {-1, -1};
    if (req->pty) { /* the slave is the command's stdin, stdout and stderr */
        int fds[3];
        if ((r = pty_open(req->cols, req->rows, fds)) < 0) {
            conn_send_error(c, -r, "pty: openpty: %s", strerror(-r));
            goto out;
        }
        in[0] = fds[0];
        in[1] = fds[1];
        outp[0] = fds[2];
    } else if (pipe2(in, O_CLOEXEC) < 0 || pipe2(outp, O_CLOEXEC) < 0 ||
               pipe2(err, O_CLOEXEC) < 0) {
        r = -errno;
        conn_send_error(c, -r, "exec: pipe: %s", strerror(-r));
        goto out;
    }
    if (pipe2(ep, O_CLOEXEC) < 0) {
        r = -errno;
        conn_send_error(c, -r, "exec: pipe: %s", strerror(-r));
        goto out;
    }
    out->start_ms = now_ms();
    pid_t pid = fork();
    if (pid < 0) {
        r = -errno;
        conn_send_error(c, -r, "exec: fork: %s", strerror(-r));
        goto out;
    }
    if (pid == 0) {
        close(c->fd);
        child_exec(req, u, in[0], req->pty ? in[0] : outp[1], req->pty ? in[0] : err[1], ep[1]);
    }
    close_fd(&in[0]);
    close_fd(&outp[1]);
    close_fd(&err[1]);
    close_fd(&ep[1]);
    struct spawn_err se;
    ssize_t n;
    do
        n = read(ep[0], &se, sizeof(se));
    while (n < 0 && errno == EINTR);
    if (n == (ssize_t)sizeof(se)) {
        waitpid(pid, NULL, 0);
        report_spawn_error(c, &se, req);
        r = -se.err;
        goto out;
    }
    out->pidfd = pidfd_open(pid, 0);
    if (out->pidfd < 0) {
        r = -errno;
        kill(-pid, SIGKILL);
        waitpid(pid, NULL, 0);
        conn_send_error(c, -r, "exec: pidfd_open: %s", strerror(-r));
        goto out;
    }
    out->pid = pid;
    out->in_fd = in[1];
    out->out_fd = outp[0];
    out->err_fd = err[0];
    out->pty = req->pty;
    in[1] = outp[0] = err[0] = -1;
    fcntl(out->in_fd, F_SETFL, O_NONBLOCK);
    fcntl(out->out_fd, F_SETFL, O_NONBLOCK);
    if (out->err_fd >= 0)
        fcntl(out->err_fd, F_SETFL, O_NONBLOCK);
    r = 0;
out:
    close_fd(&in[0]);
    close_fd(&in[1]);
    close_fd(&outp[0]);
    close_fd(&outp[1]);
    close_fd(&err[0]);
    close_fd(&err[1]);
    close_fd(&ep[0]);
    close_fd(&ep[1]);
    return r;
}

int exec_send_exit(struct agent_conn *c, int status, bool timed_out, uint64_t duration_ms)
{
    uint8_t buf[128];
    struct proto_buf b = {buf, 0, sizeof(buf)};
    if (WIFSIGNALED(status))
        proto_tlv_put_u64(&b, TAG_SIGNAL, (uint64_t)WTERMSIG(status));
    else
        proto_tlv_put_u64(&b, TAG_EXIT_CODE, (uint64_t)WEXITSTATUS(status));
    proto_tlv_put_u64(&b, TAG_DURATION_MS, duration_ms);
    proto_tlv_put_u64(&b, TAG_TIMED_OUT, timed_out);
    return conn_send(c, PROTO_EXIT, b.data, b.len);
}

int exec_serve(struct agent_conn *c, const struct proto_exec_req *req)
{
    struct exec_child ch;
    int r = exec_spawn(c, req, &ch);
    if (r < 0)
        return r;
    if (req->background)
        return bg_serve(c, req, &ch);
    struct pump p = {.c = c,
                     .pid = ch.pid,
                     .pidfd = ch.pidfd,
                     .in_fd = ch.in_fd,
                     .out_fd = ch.out_fd,
                     .err_fd = ch.err_fd,
                     .pty = ch.pty};
    p.buf = malloc(PROTO_DATA_CHUNK);
    if (!p.buf) {
        kill(-p.pid, SIGKILL);
        waitpid(p.pid, NULL, 0);
        r = conn_send_error(c, ENOMEM, "exec: out of memory");
        goto out;
    }
    if (req->timeout_ms)
        p.deadline_ms = ch.start_ms + req->timeout_ms;

    uint8_t started[32];
    struct proto_buf b = {started, 0, sizeof(started)};
    proto_tlv_put_u64(&b, TAG_PID, (uint64_t)p.pid);
    r = conn_send(c, PROTO_STARTED, b.data, b.len);
    if (r == 0)
        r = pump_run(&p);
    if (r < 0 || !p.exited) {
        /* The client is gone or broke the protocol: the command must not outlive it. */
        kill(-p.pid, SIGKILL);
        if (!p.exited)
            waitpid(p.pid, NULL, 0);
    } else {
        r = exec_send_exit(c, p.status, p.timed_out, now_ms() - ch.start_ms);
    }
out:
    close_fd(&p.in_fd);
    close_fd(&p.out_fd);
    close_fd(&p.err_fd);
    close_fd(&p.pidfd);
    free(p.buf);
    return r;
}
