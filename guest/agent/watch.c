/* amber-agent: WATCH: a directory's inotify events (create, write, remove, rename, chmod) streamed
 * as ENTRY frames until the client sends EOF or goes away; subdirectories too when RECURSIVE. */
#include "guest/agent/agent.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#define WATCH_MASK                                                                                 \
    (IN_CREATE | IN_MODIFY | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_ATTRIB |                 \
     IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW | IN_EXCL_UNLINK)
#define WATCH_BUF (64u * 1024u)

struct wdir {
    int wd;
    char *path;
};

struct watch {
    struct agent_conn *c;
    int ifd;
    bool recursive;
    struct wdir *dirs; /* PROTO_MAX_WATCH_DIRS at most; path NULL: a free slot */
    size_t ndirs;
    int root_wd;
    /* The last event sent, to fold a burst of writes to one file into one event. */
    int last_wd, last_event;
    char last_name[NAME_MAX + 1];
};

static struct wdir *dir_of(struct watch *w, int wd)
{
    for (size_t i = 0; i < w->ndirs; i++)
        if (w->dirs[i].path && w->dirs[i].wd == wd)
            return &w->dirs[i];
    return NULL;
}

/* Watch path (a directory, not followed if a symlink) and, when recursive, the directories below
 * it. Returns the watch descriptor of path, or -errno. Past PROTO_MAX_WATCH_DIRS directories
 * are left unwatched. */
static int add_tree(struct watch *w, const char *path, uint32_t depth)
{
    int wd = inotify_add_watch(w->ifd, path, WATCH_MASK);
    if (wd < 0)
        return -errno;
    struct wdir *known = dir_of(w, wd);
    char *copy = strdup(path);
    if (!copy)
        return -ENOMEM;
    if (known) { /* the same directory under a new name (moved within the tree) */
        free(known->path);
        known->path = copy;
    } else {
        size_t i = 0;
        while (i < w->ndirs && w->dirs[i].path) /* reuse the slot of a directory gone */
            i++;
        if (i == PROTO_MAX_WATCH_DIRS) {
            free(copy);
            inotify_rm_watch(w->ifd, wd);
            return wd;
        }
        w->dirs[i] = (struct wdir){wd, copy};
        if (i == w->ndirs)
            w->ndirs++;
    }
    if (!w->recursive || depth >= PROTO_MAX_WATCH_DEPTH)
        return wd;
    DIR *d = opendir(path);
    if (!d)
        return wd;
    struct dirent *e;
    char sub[PATH_MAX];
    while ((e = readdir(d))) {
        if (e->d_type != DT_DIR || !strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        int n = snprintf(sub, sizeof(sub), "%s/%s", strcmp(path, "/") ? path : "", e->d_name);
        if (n > 0 && (size_t)n < sizeof(sub) && (size_t)n <= PROTO_MAX_STR)
            add_tree(w, sub, depth + 1); /* a subdirectory that cannot be watched is skipped */
    }
    closedir(d);
    return wd;
}

static int send_event(struct watch *w, int event, const char *dir, const char *name, bool is_dir)
{
    char path[PATH_MAX];
    int n = name && name[0]
                ? snprintf(path, sizeof(path), "%s/%s", strcmp(dir, "/") ? dir : "", name)
                : snprintf(path, sizeof(path), "%s", dir);
    if (n < 0 || (size_t)n >= sizeof(path) || (size_t)n > PROTO_MAX_STR)
        return 0; /* too long to name in a TLV: dropped */
    uint8_t buf[PROTO_MAX_STR + 64];
    struct proto_buf b = {buf, 0, sizeof(buf)};
    proto_tlv_put_u64(&b, TAG_EVENT, (uint64_t)event);
    proto_tlv_put_str(&b, TAG_PATH, path);
    proto_tlv_put_u64(&b, TAG_TYPE, is_dir ? PROTO_FT_DIR : PROTO_FT_OTHER);
    return conn_send(w->c, PROTO_ENTRY, b.data, b.len);
}

/* One inotify event. Returns 0, 1 when the watched directory itself went away, or -errno. */
static int on_event(struct watch *w, const struct inotify_event *ev)
{
    if (ev->mask & IN_Q_OVERFLOW)
        return send_event(w, PROTO_WATCH_OVERFLOW, "/", NULL, false) < 0 ? -EPIPE : 0;
    struct wdir *d = dir_of(w, ev->wd);
    if (!d)
        return 0;
    bool is_dir = ev->mask & IN_ISDIR;
    const char *name = ev->len ? ev->name : "";
    if (ev->mask & IN_IGNORED) { /* the directory is gone: forget it */
        bool root = ev->wd == w->root_wd;
        free(d->path);
        d->path = NULL;
        return root ? 1 : 0;
    }
    if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF)) {
        if (ev->wd != w->root_wd)
            return 0; /* its parent reports it */
        int r = send_event(w, ev->mask & IN_DELETE_SELF ? PROTO_WATCH_REMOVE : PROTO_WATCH_RENAME,
                           d->path, NULL, true);
        return r < 0 ? r : 1;
    }
    int event = ev->mask & IN_CREATE       ? PROTO_WATCH_CREATE
                : ev->mask & IN_MOVED_TO   ? PROTO_WATCH_CREATE
                : ev->mask & IN_MODIFY     ? PROTO_WATCH_WRITE
                : ev->mask & IN_DELETE     ? PROTO_WATCH_REMOVE
                : ev->mask & IN_MOVED_FROM ? PROTO_WATCH_RENAME
                : ev->mask & IN_ATTRIB     ? PROTO_WATCH_CHMOD
                                           : 0;
    if (!event)
        return 0;
    if (event == PROTO_WATCH_WRITE && w->last_event == PROTO_WATCH_WRITE && w->last_wd == ev->wd &&
        !strcmp(w->last_name, name))
        return 0; /* the same file written again: one event per burst */
    w->last_event = event;
    w->last_wd = ev->wd;
    snprintf(w->last_name, sizeof(w->last_name), "%s", name);
    if (w->recursive && is_dir && (event == PROTO_WATCH_CREATE)) {
        char sub[PATH_MAX];
        int n = snprintf(sub, sizeof(sub), "%s/%s", strcmp(d->path, "/") ? d->path : "", name);
        if (n > 0 && (size_t)n < sizeof(sub) && (size_t)n <= PROTO_MAX_STR)
            add_tree(w, sub, 1);
        d = dir_of(w, ev->wd); /* add_tree may have moved nothing, but look again anyway */
        if (!d)
            return 0;
    }
    return send_event(w, event, d->path, name, is_dir);
}

/* A frame from the client: EOF ends the watch (returns 1); anything else is an error. */
static int on_client(struct watch *w)
{
    int r = conn_fill(w->c, 0);
    if (r == -ECONNRESET)
        return -ECONNRESET;
    if (r < 0 && r != -ETIMEDOUT)
        return r;
    struct proto_frame f;
    while ((r = proto_rx_next(&w->c->rx, &f)) != 0) {
        if (r < 0)
            return conn_send_error(w->c, -r, "watch: malformed frame: %s", strerror(-r)), r;
        if (f.type != PROTO_EOF)
            return conn_send_error(w->c, EPROTO, "watch: unexpected frame type 0x%02x", f.type),
                   -EPROTO;
        return 1;
    }
    return 0;
}

static int watch_loop(struct watch *w)
{
    uint8_t *buf = malloc(WATCH_BUF);
    if (!buf)
        return conn_send_error(w->c, ENOMEM, "watch: out of memory");
    int r = 0;
    while (r == 0) {
        struct pollfd fds[2] = {{.fd = w->ifd, .events = POLLIN},
                                {.fd = w->c->fd, .events = POLLIN}};
        if (poll(fds, 2, -1) < 0) {
            r = errno == EINTR ? 0 : -errno;
            continue;
        }
        if (fds[1].revents && (r = on_client(w)) != 0)
            break;
        if (!fds[0].revents)
            continue;
        ssize_t n = read(w->ifd, buf, WATCH_BUF);
        if (n < 0) {
            r = errno == EINTR || errno == EAGAIN ? 0 : -errno;
            continue;
        }
        for (ssize_t off = 0; r == 0 && off + (ssize_t)sizeof(struct inotify_event) <= n;) {
            const struct inotify_event *ev = (const void *)(buf + off);
            r = on_event(w, ev);
            off += (ssize_t)(sizeof(*ev) + ev->len);
        }
    }
    free(buf);
    if (r == 1) /* the client's EOF, or the directory went away: end cleanly */
        return conn_send(w->c, PROTO_EOF, NULL, 0);
    return r == -ECONNRESET ? 0 : r;
}

int watch_serve(struct agent_conn *c, const struct proto_frame *f)
{
    struct proto_fs_req req;
    int r = proto_fs_req_decode(PROTO_WATCH, f->payload, f->len, &req);
    if (r < 0)
        return conn_send_error(c, -r, "watch: bad request: %s", strerror(-r));
    uint64_t rec = 0;
    struct watch w = {.c = c, .ifd = -1, .root_wd = -1, .last_wd = -1};
    if (proto_tlv_find_u64(f->payload, f->len, TAG_RECURSIVE, &rec) && rec > 1) {
        r = conn_send_error(c, EINVAL, "watch: RECURSIVE must be 0 or 1");
        goto out;
    }
    w.recursive = rec == 1;
    struct stat st;
    if (lstat(req.path, &st) < 0) {
        r = conn_send_error(c, errno, "watch %s: %s", req.path, strerror(errno));
        goto out;
    }
    if (!S_ISDIR(st.st_mode)) {
        r = conn_send_error(c, ENOTDIR, "watch %s: not a directory", req.path);
        goto out;
    }
    w.dirs = calloc(PROTO_MAX_WATCH_DIRS, sizeof(*w.dirs));
    w.ifd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    if (!w.dirs || w.ifd < 0) {
        r = conn_send_error(c, w.dirs ? errno : ENOMEM, "watch: inotify: %s",
                            strerror(w.dirs ? errno : ENOMEM));
        goto out;
    }
    w.root_wd = add_tree(&w, req.path, 1);
    if (w.root_wd < 0) {
        r = conn_send_error(c, -w.root_wd, "watch %s: %s", req.path, strerror(-w.root_wd));
        goto out;
    }
    uint8_t meta[32];
    struct proto_buf b = {meta, 0, sizeof(meta)};
    proto_tlv_put_u64(&b, TAG_SIZE, w.ndirs); /* directories watched */
    if ((r = conn_send(c, PROTO_RESULT, b.data, b.len)) == 0)
        r = watch_loop(&w);
out:
    if (w.ifd >= 0)
        close(w.ifd);
    for (size_t i = 0; w.dirs && i < w.ndirs; i++)
        free(w.dirs[i].path);
    free(w.dirs);
    proto_fs_req_free(&req);
    return r;
}
