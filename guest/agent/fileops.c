/* amber-agent: file-system requests: stat, list_dir (to a depth), remove, rename, mkdir. */
#include "guest/agent/agent.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static uint64_t file_type(mode_t m)
{
    if (S_ISREG(m))
        return PROTO_FT_FILE;
    if (S_ISDIR(m))
        return PROTO_FT_DIR;
    if (S_ISLNK(m))
        return PROTO_FT_SYMLINK;
    return PROTO_FT_OTHER;
}

/* Append TYPE, SIZE, MODE, MTIME_NS for st. Returns 0 or -ENOSPC. */
static int put_stat(struct proto_buf *b, const struct stat *st)
{
    uint64_t mtime_ns = (uint64_t)st->st_mtim.tv_sec * 1000000000u + (uint64_t)st->st_mtim.tv_nsec;
    if (proto_tlv_put_u64(b, TAG_TYPE, file_type(st->st_mode)) < 0 ||
        proto_tlv_put_u64(b, TAG_SIZE, (uint64_t)st->st_size) < 0 ||
        proto_tlv_put_u64(b, TAG_MODE, st->st_mode & 07777) < 0 ||
        proto_tlv_put_u64(b, TAG_MTIME_NS, mtime_ns) < 0)
        return -ENOSPC;
    return 0;
}

static int fs_error(struct agent_conn *c, const char *what, const char *path)
{
    int e = errno;
    return conn_send_error(c, e, "%s %s: %s", what, path, strerror(e));
}

static int serve_stat(struct agent_conn *c, const struct proto_fs_req *req)
{
    struct stat st;
    if (stat(req->path, &st) < 0) /* follows a symlink, as open() would */
        return fs_error(c, "stat", req->path);
    uint8_t buf[128];
    struct proto_buf b = {buf, 0, sizeof(buf)};
    put_stat(&b, &st);
    return conn_send(c, PROTO_RESULT, b.data, b.len);
}

struct walk {
    struct agent_conn *c;
    uint32_t listed;
    uint8_t entry[PROTO_MAX_STR + 128];
};

/* One directory level: an ENTRY per child (symlinks are listed, never followed), then descend
 * into subdirectories while depth allows. path is the directory's path (length < PATH_MAX). */
static int walk_dir(struct walk *w, int fd, char *path, size_t len, uint32_t depth)
{
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return 0; /* unreadable below the top: skipped */
    }
    struct dirent *e;
    int r = 0;
    while (r == 0 && w->listed < PROTO_MAX_ENTRIES && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        size_t n = strlen(e->d_name);
        bool root = len == 1; /* "/" */
        if (len + !root + n >= PATH_MAX || len + !root + n > PROTO_MAX_STR)
            continue; /* too long to name in a TLV */
        if (!root)
            path[len] = '/';
        memcpy(path + len + !root, e->d_name, n + 1);
        size_t sub_len = len + !root + n;
        struct stat st;
        if (fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
            struct proto_buf b = {w->entry, 0, sizeof(w->entry)};
            proto_tlv_put_str(&b, TAG_PATH, path);
            put_stat(&b, &st);
            r = conn_send(w->c, PROTO_ENTRY, b.data, b.len);
            w->listed++;
            if (r == 0 && depth > 1 && S_ISDIR(st.st_mode)) {
                int sub =
                    openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sub >= 0)
                    r = walk_dir(w, sub, path, sub_len, depth - 1);
            }
        }
        path[len] = '\0';
    }
    closedir(d);
    return r;
}

static int serve_list_dir(struct agent_conn *c, const struct proto_fs_req *req)
{
    int fd = open(req->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return fs_error(c, "list", req->path);
    struct walk *w = malloc(sizeof(*w));
    char *path = malloc(PATH_MAX);
    int r;
    if (!w || !path) {
        close(fd);
        r = conn_send_error(c, ENOMEM, "list: out of memory");
        goto out;
    }
    w->c = c;
    w->listed = 0;
    size_t len = strlen(req->path);
    while (len > 1 && req->path[len - 1] == '/')
        len--; /* "/tmp/" lists as "/tmp" */
    if (len >= PATH_MAX) {
        close(fd);
        r = conn_send_error(c, ENAMETOOLONG, "list: path too long");
        goto out;
    }
    memcpy(path, req->path, len);
    path[len] = '\0';
    r = walk_dir(w, fd, path, len, req->depth);
    if (r == 0)
        r = conn_send(c, PROTO_EOF, NULL, 0);
out:
    free(path);
    free(w);
    return r;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    int r = flag == FTW_DP ? rmdir(path) : unlink(path);
    return r < 0 && errno != ENOENT ? -1 : 0;
}

static int serve_remove(struct agent_conn *c, const struct proto_fs_req *req)
{
    struct stat st;
    if (lstat(req->path, &st) < 0)
        return fs_error(c, "remove", req->path);
    if (strcmp(req->path, "/") == 0)
        return conn_send_error(c, EPERM, "remove: refusing to remove /");
    /* A directory goes with everything under it; symlinks are removed, never followed. */
    int r = S_ISDIR(st.st_mode) ? nftw(req->path, remove_one, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT)
                                : unlink(req->path);
    if (r < 0)
        return fs_error(c, "remove", req->path);
    return conn_send(c, PROTO_RESULT, NULL, 0);
}

static int serve_rename(struct agent_conn *c, const struct proto_fs_req *req)
{
    if (rename(req->path, req->new_path) < 0)
        return conn_send_error(c, errno, "rename %s to %s: %s", req->path, req->new_path,
                               strerror(errno));
    return conn_send(c, PROTO_RESULT, NULL, 0);
}

/* mkdir -p: every missing parent too, with req->mode. */
static int serve_mkdir(struct agent_conn *c, const struct proto_fs_req *req)
{
    struct stat st;
    uint8_t buf[32];
    struct proto_buf b = {buf, 0, sizeof(buf)};
    if (stat(req->path, &st) == 0) {
        if (!S_ISDIR(st.st_mode))
            return conn_send_error(c, EEXIST, "mkdir %s: exists and is not a directory", req->path);
        proto_tlv_put_u64(&b, TAG_EXISTS, 1);
        return conn_send(c, PROTO_RESULT, b.data, b.len);
    }
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s", req->path) >= (int)sizeof(path))
        return conn_send_error(c, ENAMETOOLONG, "mkdir: path too long");
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(path, req->mode) < 0 && errno != EEXIST)
            return fs_error(c, "mkdir", path);
        if (saved == '\0')
            break;
        *p = saved;
    }
    if (chmod(req->path, req->mode) < 0) /* the umask narrowed it */
        return fs_error(c, "chmod", req->path);
    proto_tlv_put_u64(&b, TAG_EXISTS, 0);
    return conn_send(c, PROTO_RESULT, b.data, b.len);
}

int fileops_serve(struct agent_conn *c, const struct proto_frame *f)
{
    struct proto_fs_req req;
    int r = proto_fs_req_decode(f->type, f->payload, f->len, &req);
    if (r < 0)
        return conn_send_error(c, -r, "file: bad request: %s", strerror(-r));
    switch (f->type) {
    case PROTO_STAT:
        r = serve_stat(c, &req);
        break;
    case PROTO_LIST_DIR:
        r = serve_list_dir(c, &req);
        break;
    case PROTO_REMOVE:
        r = serve_remove(c, &req);
        break;
    case PROTO_RENAME:
        r = serve_rename(c, &req);
        break;
    default:
        r = serve_mkdir(c, &req);
        break;
    }
    proto_fs_req_free(&req);
    return r;
}
