/* amberctl's persistent store (the SDK's store.py layout) and restores into new sandboxes. */
#include "ctl/ctl_store.h"

#include "ctl/amberctl.h"
#include "ctl/http_client.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define COPY_BLOCK (1 << 20)

int store_root(char *buf, size_t len)
{
    const char *v = getenv("AMBER_STATE_DIR"), *xdg = getenv("XDG_STATE_HOME");
    const char *home = getenv("HOME");
    int n;
    if (v && v[0] == '/')
        n = snprintf(buf, len, "%s", v);
    else if (geteuid() == 0)
        n = snprintf(buf, len, "/var/lib/amber");
    else if (xdg && xdg[0] == '/')
        n = snprintf(buf, len, "%s/amber", xdg);
    else
        n = snprintf(buf, len, "%s/.local/state/amber", home ? home : "/");
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static int mkdirs(const char *path)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    return mkdir(tmp, 0700) < 0 && errno != EEXIST ? -errno : 0;
}

int store_path(char *buf, size_t len, const char *sub)
{
    char root[PATH_MAX - 200];
    if (store_root(root, sizeof(root)) < 0)
        return -ENAMETOOLONG;
    int n = snprintf(buf, len, "%s%s%s", root, sub[0] ? "/" : "", sub);
    if (n < 0 || (size_t)n >= len)
        return -ENAMETOOLONG;
    return mkdirs(buf);
}

bool store_is_hibernated(const char *id)
{
    char root[PATH_MAX - 200], p[PATH_MAX];
    if (store_root(root, sizeof(root)) < 0)
        return false;
    snprintf(p, sizeof(p), "%s/%s/" STORE_MARK, root, id);
    return access(p, F_OK) == 0;
}

int store_lock(void)
{
    char p[PATH_MAX];
    int r = store_path(p, sizeof(p) - 8, "");
    if (r < 0)
        return r;
    strcat(p, "/.lock");
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    if (flock(fd, LOCK_EX) < 0) {
        r = -errno;
        close(fd);
        return r;
    }
    return fd;
}

static int write_all(int fd, const char *buf, size_t len, off_t off)
{
    while (len > 0) {
        ssize_t n = pwrite(fd, buf, len, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        buf += n;
        len -= (size_t)n;
        off += n;
    }
    return 0;
}

/* Copy src's data ranges to dst, leaving holes and all-zero blocks as holes. */
static int sparse_copy(int in, int out, off_t size)
{
    static char buf[COPY_BLOCK], zero[COPY_BLOCK];
    off_t off = 0;
    while (off < size) {
        off_t start = lseek(in, off, SEEK_DATA);
        if (start < 0)
            break; /* ENXIO: only a hole is left */
        off_t end = lseek(in, start, SEEK_HOLE);
        if (end < 0)
            end = size;
        for (off_t pos = start; pos < end;) {
            size_t want = (size_t)(end - pos < COPY_BLOCK ? end - pos : COPY_BLOCK);
            ssize_t n = pread(in, buf, want, pos);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                return n < 0 ? -errno : -EIO;
            if (memcmp(buf, zero, (size_t)n) != 0) {
                int r = write_all(out, buf, (size_t)n, pos);
                if (r < 0)
                    return r;
            }
            pos += n;
        }
        off = end;
    }
    return ftruncate(out, size) < 0 ? -errno : 0;
}

int store_clone_file(const char *src, const char *dst, const char **kind)
{
    int in = open(src, O_RDONLY | O_CLOEXEC), r = 0;
    if (in < 0)
        return -errno;
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out < 0) {
        r = -errno;
        close(in);
        return r;
    }
    struct stat st;
    if (ioctl(out, FICLONE, in) == 0) {
        *kind = "reflink";
    } else if (fstat(in, &st) < 0) {
        r = -errno;
    } else {
        *kind = "sparse";
        r = sparse_copy(in, out, st.st_size);
    }
    if (!r && close(out) < 0)
        r = -errno;
    else if (r)
        close(out);
    close(in);
    if (r)
        unlink(dst);
    return r;
}

struct json_object *store_json_read(const char *path)
{
    struct json_object *o = json_object_from_file(path);
    if (o && !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

int store_json_write(const char *path, struct json_object *o, bool sync)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600), r = 0;
    if (fd < 0)
        return -errno;
    r = write_all(fd, s, strlen(s), 0);
    if (!r && write_all(fd, "\n", 1, (off_t)strlen(s)) < 0)
        r = -EIO;
    if (!r && sync && fsync(fd) < 0)
        r = -errno;
    if (close(fd) < 0 && !r)
        r = -errno;
    if (!r && rename(tmp, path) < 0)
        r = -errno;
    if (r) {
        unlink(tmp);
        return r;
    }
    if (sync) {
        char dir[PATH_MAX];
        snprintf(dir, sizeof(dir), "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash)
            *slash = '\0';
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    }
    return 0;
}

const char *store_jstr(struct json_object *o, const char *key, const char *def)
{
    struct json_object *v;
    if (o && json_object_object_get_ex(o, key, &v) && v)
        return json_object_get_string(v);
    return def;
}

int store_api(const char *api, const char *method, const char *path, const char *body,
              int timeout_ms, struct json_object **out, char *err, size_t errlen)
{
    struct httpc_response resp;
    int r = httpc_request(api, method, path, body, timeout_ms, &resp);
    if (out)
        *out = NULL;
    if (r < 0) {
        snprintf(err, errlen, "%s %s: %s", method, path, strerror(-r));
        return r;
    }
    struct json_object *o = resp.body_len ? json_tokener_parse(resp.body) : NULL;
    if (resp.status >= 300)
        snprintf(err, errlen, "%s %s: %d %s", method, path, resp.status,
                 store_jstr(o, "fault_message", resp.body ? resp.body : ""));
    if (out && resp.status < 300)
        *out = o;
    else
        json_object_put(o);
    r = resp.status;
    httpc_response_free(&resp);
    return r;
}

int store_snapshot(const char *api, const char *dir, bool sync, bool *was_running, char *err,
                   size_t errlen)
{
    struct json_object *o;
    int st = store_api(api, "GET", "/", NULL, 10000, &o, err, errlen);
    if (st != 200)
        return st < 0 ? st : -EIO;
    *was_running = strcmp(store_jstr(o, "state", ""), "Running") == 0;
    json_object_put(o);
    if (*was_running &&
        (st = store_api(api, "POST", "/pause", NULL, 10000, NULL, err, errlen)) != 200)
        return st < 0 ? st : -EIO;
    struct json_object *b = json_object_new_object();
    char snap[PATH_MAX], mem[PATH_MAX];
    snprintf(snap, sizeof(snap), "%s/" STORE_STATE_FILE, dir);
    snprintf(mem, sizeof(mem), "%s/" STORE_MEM_FILE, dir);
    json_object_object_add(b, "snapshot_path", json_object_new_string(snap));
    json_object_object_add(b, "mem_file_path", json_object_new_string(mem));
    json_object_object_add(b, "snapshot_type", json_object_new_string("Full"));
    if (sync)
        json_object_object_add(b, "fsync", json_object_new_boolean(1));
    st = store_api(api, "PUT", "/snapshot/create", json_object_to_json_string(b), 600000, NULL, err,
                   errlen);
    json_object_put(b);
    if (st == 204 || st == 200)
        return 0;
    unlink(snap);
    unlink(mem);
    return st < 0 ? st : strstr(err, "No space left") ? -ENOSPC : -EIO;
}

uint32_t store_new_cid(void)
{
    uint32_t cid = 3;
    while (getrandom(&cid, sizeof(cid), 0) == (ssize_t)sizeof(cid) &&
           (cid < 3 || cid == UINT32_MAX))
        ;
    return cid < 3 || cid == UINT32_MAX ? 3 : cid;
}

void ctl_list_hibernated(struct json_object *arr)
{
    char root[PATH_MAX], run[400];
    if (store_root(root, sizeof(root)) < 0 || ctl_runtime_root(run, sizeof(run)) < 0)
        return;
    DIR *d = opendir(root);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        char live[600], sdir[PATH_MAX];
        struct stat st;
        if (!ctl_id_valid(de->d_name) || !store_is_hibernated(de->d_name))
            continue;
        snprintf(live, sizeof(live), "%s/%s", run, de->d_name);
        if (stat(live, &st) == 0)
            continue; /* a live amber wins */
        snprintf(sdir, sizeof(sdir), "%s/%s", root, de->d_name);
        struct json_object *o = json_object_new_object();
        json_object_object_add(o, "id", json_object_new_string(de->d_name));
        json_object_object_add(o, "state", json_object_new_string("Hibernated"));
        json_object_object_add(o, "pid", json_object_new_int(0));
        json_object_object_add(o, "dir", json_object_new_string(sdir));
        json_object_array_add(arr, o);
    }
    if (d)
        closedir(d);
}
