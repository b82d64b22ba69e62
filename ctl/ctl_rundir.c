/* amberctl: runtime-directory helpers: liveness through amber.pid's flock, stale cleanup. */
#include "ctl/amberctl.h"
#include "ctl/netns.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* A directory younger than this without amber.pid is an amber still starting, not stale. */
#define STARTING_GRACE_S 30

enum ctl_liveness ctl_sandbox_probe(const char *dir, int *pid)
{
    char path[600];
    *pid = 0;
    snprintf(path, sizeof(path), "%s/amber.pid", dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        struct stat st;
        if (stat(dir, &st) == 0 && time(NULL) - st.st_mtime < STARTING_GRACE_S)
            return CTL_STARTING;
        return CTL_STALE;
    }
    char buf[32];
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    if (n > 0) {
        buf[n] = 0;
        *pid = atoi(buf);
    }
    /* amber holds LOCK_EX for its whole life; if we can take a shared lock, it is gone. */
    enum ctl_liveness l = CTL_ALIVE;
    if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
        flock(fd, LOCK_UN);
        l = CTL_STALE;
    }
    close(fd);
    return l;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    int r = flag == FTW_DP ? rmdir(path) : unlink(path);
    return r < 0 && errno != ENOENT ? -1 : 0;
}

int ctl_remove_tree(const char *dir)
{
    if (nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) < 0 && errno != ENOENT)
        return -errno;
    return 0;
}

int ctl_sandbox_reap(const char *dir, const char *id, bool quiet)
{
    if (!quiet) {
        char path[600];
        snprintf(path, sizeof(path), "%s/exit.json", dir);
        struct json_object *o = json_object_from_file(path);
        struct json_object *reason = NULL, *status = NULL;
        if (o && json_object_object_get_ex(o, "reason", &reason)) {
            json_object_object_get_ex(o, "status", &status);
            fprintf(stderr, "amberctl: sandbox %s is gone: %s (status %d)\n", id,
                    json_object_get_string(reason), status ? json_object_get_int(status) : -1);
        } else {
            fprintf(stderr, "amberctl: sandbox %s is gone (its amber exited without a record)\n",
                    id);
        }
        json_object_put(o);
    }
    net_down(id); /* its network, if it had one (docs/network.md) */
    return ctl_remove_tree(dir);
}
