/* The API's listening socket: created under a temporary name, then renamed into place. */
#include "api/server.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "vmm/log.h"

/* Is there a live server at path? 1 yes, 0 no (stale or absent), -EEXIST if not a socket. */
static int probe_existing(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return 0;
    if (!S_ISSOCK(st.st_mode))
        return -EEXIST;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    int live = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return live;
}

int api_listen(struct api *api, const char *path, char *err, size_t errlen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    char tmp[sizeof(sa.sun_path)];
    if (!path[0] || strlen(path) >= sizeof(sa.sun_path)) {
        snprintf(err, errlen, "API socket path '%s' is empty or too long (max %zu)", path,
                 sizeof(sa.sun_path) - 1);
        return -ENAMETOOLONG;
    }
    int n = snprintf(tmp, sizeof(tmp), "%s.%d.tmp", path, (int)getpid());
    if (n < 0 || (size_t)n >= sizeof(tmp)) /* fall back to a shorter suffix */
        n = snprintf(tmp, sizeof(tmp), "%s~", path);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        snprintf(err, errlen, "API socket path '%s' is too long for a temporary name", path);
        return -ENAMETOOLONG;
    }
    int live = probe_existing(path);
    if (live) {
        snprintf(err, errlen,
                 live > 0 ? "API socket '%s' is in use by a running process"
                          : "'%s' exists and is not a socket",
                 path);
        return live > 0 ? -EADDRINUSE : -EEXIST;
    }

    int err_no;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        err_no = -errno;
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return err_no;
    }
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", tmp);
    unlink(tmp);
    const char *step = "bind";
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        goto err_close;
    step = "chmod";
    if (chmod(tmp, 0600) < 0)
        goto err_unlink;
    step = "listen";
    if (listen(fd, 128) < 0)
        goto err_unlink;
    struct stat st;
    step = "stat";
    if (stat(tmp, &st) < 0)
        goto err_unlink;
    step = "rename"; /* atomically replaces a stale socket; clients see a listening socket */
    if (rename(tmp, path) < 0)
        goto err_unlink;
    api->listen_fd = fd;
    api->sock_dev = st.st_dev;
    api->sock_ino = st.st_ino;
    snprintf(api->sock_path, sizeof(api->sock_path), "%s", path);
    int e = loop_add(api->loop, fd, EPOLLIN, api_accept_event, api);
    if (e) {
        snprintf(err, errlen, "cannot watch the API socket: %s", strerror(-e));
        api_unlisten(api);
        return e;
    }
    log_info("api: listening on %s", path);
    return 0;

err_unlink:
    err_no = -errno;
    unlink(tmp);
    goto err_msg;
err_close:
    err_no = -errno;
err_msg:
    snprintf(err, errlen, "API socket '%s': %s: %s", path, step, strerror(-err_no));
    close(fd);
    return err_no;
}

void api_unlisten(struct api *api)
{
    if (api->listen_fd < 0)
        return;
    loop_del(api->loop, api->listen_fd);
    close(api->listen_fd);
    api->listen_fd = -1;
    struct stat st;
    if (lstat(api->sock_path, &st) == 0 && st.st_dev == api->sock_dev && st.st_ino == api->sock_ino)
        unlink(api->sock_path);
}
