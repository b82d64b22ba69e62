/* amber-agent: one connection's request dispatch, ping and file ops (frame I/O: conn.c). */
#include "guest/agent/agent.h"
#include "guest/agent/logring.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static uint64_t clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int serve_ping(struct agent_conn *c)
{
    uint8_t buf[128];
    struct proto_buf b = {buf, 0, sizeof(buf)};
    proto_tlv_put_u64(&b, TAG_PROTO_VERSION, PROTO_VERSION);
    proto_tlv_put_str(&b, TAG_AGENT_VERSION, AGENT_VERSION);
    proto_tlv_put_u64(&b, TAG_UPTIME_MS, clock_ms(CLOCK_BOOTTIME));
    return conn_send(c, PROTO_RESULT, b.data, b.len);
}

static int serve_read_file(struct agent_conn *c, const struct proto_path_req *req)
{
    int fd = open(req->path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return conn_send_error(c, errno, "open %s: %s", req->path, strerror(errno));
    struct stat st;
    int r;
    if (fstat(fd, &st) < 0) {
        r = conn_send_error(c, errno, "stat %s: %s", req->path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        r = conn_send_error(c, S_ISDIR(st.st_mode) ? EISDIR : EINVAL, "%s: not a regular file",
                            req->path);
        goto out;
    }
    uint8_t meta[64];
    struct proto_buf b = {meta, 0, sizeof(meta)};
    proto_tlv_put_u64(&b, TAG_MODE, st.st_mode & 07777);
    proto_tlv_put_u64(&b, TAG_SIZE, (uint64_t)st.st_size);
    if ((r = conn_send(c, PROTO_RESULT, b.data, b.len)) < 0)
        goto out;
    uint8_t *chunk = malloc(PROTO_DATA_CHUNK);
    if (!chunk) {
        r = conn_send_error(c, ENOMEM, "out of memory");
        goto out;
    }
    for (;;) {
        ssize_t n = read(fd, chunk, PROTO_DATA_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = conn_send_error(c, errno, "read %s: %s", req->path, strerror(errno));
            break;
        }
        if (n == 0) {
            r = conn_send(c, PROTO_EOF, NULL, 0);
            break;
        }
        if ((r = conn_send(c, PROTO_DATA, chunk, (size_t)n)) < 0)
            break;
    }
    free(chunk);
out:
    close(fd);
    return r;
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/*
 * Where write_file puts its data. A regular file (or a new one) is replaced whole: the data goes
 * to a temporary file in the same directory, which is renamed over the target once complete, so
 * a transfer that fails midway leaves the old file as it was. Anything else (a FIFO, a device,
 * a /proc or /sys knob) is written in place. Fills tmp ("" when in place) and target.
 */
static int open_for_write(const char *path, uint32_t mode, char *tmp, char *target)
{
    struct stat st;
    bool exists = stat(path, &st) == 0;
    tmp[0] = '\0';
    if (exists && !S_ISREG(st.st_mode))
        return open(path, O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOCTTY);
    /* Through a symlink, replace the file it names, not the link. */
    if (!exists || !realpath(path, target))
        snprintf(target, PATH_MAX, "%s", path);
    const char *slash = strrchr(target, '/');
    size_t dir_len = slash ? (size_t)(slash - target) + 1 : 0;
    if (dir_len + sizeof(".amber-write.XXXXXX") > PATH_MAX) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(tmp, target, dir_len);
    strcpy(tmp + dir_len, ".amber-write.XXXXXX");
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        tmp[0] = '\0';
        return -1;
    }
    /* The umask narrowed the mode at creation; a replaced file keeps its owner. */
    if (fchmod(fd, mode) < 0 || (exists && fchown(fd, st.st_uid, st.st_gid) < 0)) {
        int err = errno;
        close(fd);
        unlink(tmp);
        tmp[0] = '\0';
        errno = err;
        return -1;
    }
    return fd;
}

/* Make a rename into dir durable (best effort: the data itself is already fsynced). */
static void sync_parent(const char *target)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", target);
    char *slash = strrchr(dir, '/');
    if (!slash)
        return;
    slash[slash == dir ? 1 : 0] = '\0';
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
}

static int serve_write_file(struct agent_conn *c, const struct proto_path_req *req)
{
    char tmp[PATH_MAX], target[PATH_MAX];
    int fd = open_for_write(req->path, req->mode, tmp, target);
    if (fd < 0)
        return conn_send_error(c, errno, "open %s: %s", req->path, strerror(errno));
    uint64_t total = 0;
    int r;
    for (;;) {
        struct proto_frame f;
        r = conn_next_frame(c, &f, c->opts->idle_timeout_ms);
        if (r < 0) {
            conn_send_error(c, -r, "write_file: reading data: %s", strerror(-r));
            goto out;
        }
        if (f.type == PROTO_EOF)
            break;
        if (f.type != PROTO_DATA) {
            r = conn_send_error(c, EPROTO, "write_file: unexpected frame type 0x%02x", f.type);
            goto out;
        }
        r = write_all(fd, f.payload, f.len);
        if (r < 0) {
            conn_send_error(c, -r, "write %s: %s", req->path, strerror(-r));
            goto out;
        }
        total += f.len;
    }
    if (fsync(fd) < 0 && tmp[0]) { /* in place, a knob or FIFO may not fsync: no matter */
        r = conn_send_error(c, errno, "fsync %s: %s", req->path, strerror(errno));
        goto out;
    }
    if (tmp[0]) {
        if (rename(tmp, target) < 0) {
            r = conn_send_error(c, errno, "rename into %s: %s", target, strerror(errno));
            goto out;
        }
        tmp[0] = '\0';
        sync_parent(target);
    }
    uint8_t meta[64];
    struct proto_buf b = {meta, 0, sizeof(meta)};
    proto_tlv_put_u64(&b, TAG_SIZE, total);
    proto_tlv_put_u64(&b, TAG_MODE, req->mode);
    r = conn_send(c, PROTO_RESULT, b.data, b.len);
out:
    close(fd);
    if (tmp[0])
        unlink(tmp); /* failed midway: the target was never touched */
    return r;
}

static int serve_shutdown(struct agent_conn *c, const struct proto_frame *f, int *shutdown)
{
    struct proto_tlv_iter it;
    uint16_t tag;
    const uint8_t *val;
    uint32_t n;
    uint64_t action = PROTO_POWEROFF;
    int r;
    proto_tlv_iter_init(&it, f->payload, f->len);
    while ((r = proto_tlv_next(&it, &tag, &val, &n)) > 0)
        if (tag == TAG_ACTION && (r = proto_tlv_u64(val, n, &action)) < 0)
            break;
    if (r < 0 || action > PROTO_REBOOT)
        return conn_send_error(c, EINVAL, "shutdown: bad request");
    r = conn_send(c, PROTO_RESULT, NULL, 0);
    *shutdown = (int)action;
    return r;
}

int serve_conn(struct agent_conn *c, int *shutdown)
{
    struct proto_frame f;
    int r = conn_next_frame(c, &f, c->opts->idle_timeout_ms);
    if (r == -EMSGSIZE || r == -EBADMSG)
        return conn_send_error(c, -r, "malformed frame: %s", strerror(-r));
    if (r == -ECONNRESET && c->rx.len > c->rx.start)
        return conn_send_error(c, EBADMSG, "truncated frame");
    if (r < 0)
        return r;
    c->id = f.id;
    agent_trace("connection %d: request type %#x, %u bytes", c->fd, f.type, (unsigned)f.len);
    switch (f.type) {
    case PROTO_PING:
        return serve_ping(c);
    case PROTO_EXEC: {
        struct proto_exec_req req;
        r = proto_exec_req_decode(f.payload, f.len, &req);
        if (r < 0)
            return conn_send_error(c, -r, "exec: bad request: %s", strerror(-r));
        r = exec_serve(c, &req);
        proto_exec_req_free(&req);
        return r;
    }
    case PROTO_PTY: {
        struct proto_exec_req req;
        r = proto_pty_req_decode(f.payload, f.len, &req);
        if (r < 0)
            return conn_send_error(c, -r, "pty: bad request: %s", strerror(-r));
        r = exec_serve(c, &req);
        proto_exec_req_free(&req);
        return r;
    }
    case PROTO_RESIZE: { /* a background pty's size, by pid (in a PTY session it is a frame) */
        struct proto_pid_req req;
        uint16_t cols, rows;
        r = proto_pid_req_decode(f.payload, f.len, &req);
        if (r == 0)
            r = proto_winsize_decode(f.payload, f.len, &cols, &rows);
        if (r < 0)
            return conn_send_error(c, -r, "resize: bad request: %s", strerror(-r));
        return bg_forward(c, &f, req.pid);
    }
    case PROTO_READ_FILE:
    case PROTO_WRITE_FILE: {
        struct proto_path_req req;
        r = proto_path_req_decode(f.payload, f.len, &req);
        if (r < 0)
            return conn_send_error(c, -r, "file: bad request: %s", strerror(-r));
        r = f.type == PROTO_READ_FILE ? serve_read_file(c, &req) : serve_write_file(c, &req);
        proto_path_req_free(&req);
        return r;
    }
    case PROTO_SHUTDOWN:
        return serve_shutdown(c, &f, shutdown);
    case PROTO_ATTACH:
    case PROTO_KILL: {
        struct proto_pid_req req;
        r = proto_pid_req_decode(f.payload, f.len, &req);
        if (r < 0)
            return conn_send_error(c, -r, "%s: bad request: %s",
                                   f.type == PROTO_KILL ? "kill" : "attach", strerror(-r));
        return bg_forward(c, &f, req.pid);
    }
    case PROTO_LIST_PROCS:
        return bg_list(c);
    case PROTO_STAT:
    case PROTO_LIST_DIR:
    case PROTO_REMOVE:
    case PROTO_RENAME:
    case PROTO_MKDIR:
        return fileops_serve(c, &f);
    case PROTO_WATCH:
        return watch_serve(c, &f);
    default:
        return conn_send_error(c, EPROTO, "frame type 0x%02x is not a request", f.type);
    }
}
