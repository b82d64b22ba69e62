/* amber-agent: the connection-handler side of background commands: their control-socket paths,
 * handing ATTACH and KILL over to a supervisor (bg.c), and LIST_PROCS. */
#include "guest/agent/agent.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define BG_MAX_LISTED 4096

/* "<run_dir>/<pid><suffix>" into out[size]. Returns 0 or -ENAMETOOLONG. */
int bg_path(const struct agent_opts *o, uint32_t pid, const char *suffix, char *out, size_t size)
{
    int n = snprintf(out, size, "%s/%u%s", o->run_dir, pid, suffix);
    return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

int bg_sock_connect(const char *path)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(a.sun_path))
        return -ENAMETOOLONG;
    strcpy(a.sun_path, path);
    int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -errno;
    if (connect(s, (struct sockaddr *)&a, sizeof(a)) < 0) {
        int e = errno;
        close(s);
        return -e;
    }
    return s;
}

int bg_forward(struct agent_conn *c, const struct proto_frame *f, uint32_t pid)
{
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    size_t rest = c->rx.len - c->rx.start;
    if (PROTO_HDR_LEN + f->len + rest > BG_MAX_HANDOFF)
        return conn_send_error(c, E2BIG, "attach: too much data sent before the answer");
    int s = bg_path(c->opts, pid, ".sock", path, sizeof(path));
    if (s >= 0)
        s = bg_sock_connect(path);
    if (s < 0)
        return conn_send_error(c, ESRCH, "no background command with pid %u", pid);
    static uint8_t msg[BG_MAX_HANDOFF];
    proto_frame_header(msg, f->type, f->id, f->len);
    memcpy(msg + PROTO_HDR_LEN, f->payload, f->len);
    memcpy(msg + PROTO_HDR_LEN + f->len, c->rx.buf + c->rx.start, rest);
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } cm;
    memset(&cm, 0, sizeof(cm));
    struct iovec iov = {msg, PROTO_HDR_LEN + f->len + rest};
    struct msghdr mh = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf, .msg_controllen = sizeof(cm.buf)};
    struct cmsghdr *h = CMSG_FIRSTHDR(&mh);
    h->cmsg_level = SOL_SOCKET;
    h->cmsg_type = SCM_RIGHTS;
    h->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(h), &c->fd, sizeof(int));
    ssize_t n;
    do
        n = sendmsg(s, &mh, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    close(s);
    if (n < 0)
        return conn_send_error(c, ESRCH, "no background command with pid %u", pid);
    return 0;
}

static bool info_name(const char *name, uint32_t *pid)
{
    char *end;
    if (name[0] < '1' || name[0] > '9')
        return false;
    unsigned long v = strtoul(name, &end, 10);
    if (strcmp(end, ".info") != 0 || v > (1u << 22))
        return false;
    *pid = (uint32_t)v;
    return true;
}

int bg_list(struct agent_conn *c)
{
    DIR *d = opendir(c->opts->run_dir);
    uint8_t *buf = malloc(BG_INFO_MAX);
    int r = 0, listed = 0;
    if (!buf) {
        r = conn_send_error(c, ENOMEM, "list: out of memory");
        goto out;
    }
    struct dirent *e;
    while (d && listed < BG_MAX_LISTED && (e = readdir(d))) {
        uint32_t pid;
        char sock[sizeof(((struct sockaddr_un *)0)->sun_path)], info[PATH_MAX];
        if (!info_name(e->d_name, &pid) || bg_path(c->opts, pid, ".sock", sock, sizeof(sock)) < 0 ||
            bg_path(c->opts, pid, ".info", info, sizeof(info)) < 0)
            continue;
        int s = bg_sock_connect(sock);
        if (s < 0) { /* its supervisor was killed: forget it */
            unlink(info);
            unlink(sock);
            continue;
        }
        close(s);
        int fd = open(info, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
            continue;
        ssize_t n = read(fd, buf, BG_INFO_MAX);
        close(fd);
        if (n <= 0)
            continue;
        if ((r = conn_send(c, PROTO_ENTRY, buf, (size_t)n)) < 0)
            goto out;
        listed++;
    }
    r = conn_send(c, PROTO_EOF, NULL, 0);
out:
    if (d)
        closedir(d);
    free(buf);
    return r;
}
