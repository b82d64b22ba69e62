/* The agent's log port: a small process that hands the host a dump of the agent's log ring. */
#include "guest/agent/agent.h"
#include "guest/agent/logring.h"

#include <errno.h>
#include <linux/vm_sockets.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* A host that connects and stops reading must not keep the server from the next client. */
#define LOGRING_SEND_TIMEOUT_S 5

static int listen_on(const struct agent_opts *o)
{
    int fd;
    if (o->unix_path) {
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        int n = snprintf(a.sun_path, sizeof(a.sun_path), "%s.log", o->unix_path);
        if (n < 0 || (size_t)n >= sizeof(a.sun_path))
            return -ENAMETOOLONG;
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -errno;
        unlink(a.sun_path);
        if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 && chmod(a.sun_path, 0600) == 0 &&
            listen(fd, 8) == 0)
            return fd;
    } else {
        struct sockaddr_vm a = {
            .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = o->port + 1};
        fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -errno;
        if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(fd, 8) == 0)
            return fd;
    }
    int e = errno;
    close(fd);
    return -e;
}

static void send_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        p += n;
        len -= (size_t)n;
    }
}

static void serve_forever(int lfd, struct logring *r)
{
    static char dump[LOGRING_DUMP_MAX];
    struct timeval tv = {.tv_sec = LOGRING_SEND_TIMEOUT_S};
    for (;;) {
        int cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno != EINTR && errno != ECONNABORTED && errno != EAGAIN) {
                struct timespec pause_a_bit = {0, 100 * 1000 * 1000};
                nanosleep(&pause_a_bit, NULL);
            }
            continue;
        }
        setsockopt(cfd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        agent_trace("log port: a client reads the ring");
        size_t n = logring_dump(r, dump, sizeof(dump));
        send_all(cfd, dump, n);
        close(cfd);
    }
}

int logring_serve_start(const struct agent_opts *o)
{
    struct logring *r = agent_logring();
    if (!r)
        return -ENOMEM;
    int lfd = listen_on(o);
    if (lfd < 0) {
        agent_log("log port: cannot listen (%s): the log ring is not served", strerror(-lfd));
        return lfd;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(lfd);
        agent_log("log port: fork: %s", strerror(e));
        return -e;
    }
    if (pid == 0) {
        /* Leave with the agent (it only exits on its own in host testing). */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(0);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_IGN);
        serve_forever(lfd, r);
        _exit(0);
    }
    close(lfd);
    if (o->unix_path)
        agent_trace("log port: serving the ring on %s.log (pid %d)", o->unix_path, (int)pid);
    else
        agent_trace("log port: serving the ring on vsock port %u (pid %d)", o->port + 1, (int)pid);
    return pid;
}
