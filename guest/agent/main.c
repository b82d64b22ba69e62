/* amber-agent: the guest's command server (and PID 1): listens, forks a handler per connection. */
#include "guest/agent/agent.h"
#include "guest/agent/logring.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define READY_LINE "amber-guest: ready\n"

static void usage(FILE *f)
{
    fprintf(f, "usage: amber-agent [--port N] [--listen vsock:PORT|unix:PATH] [--no-init]\n"
               "  --port N          vsock port (default 1024, or amber.agent_port=N on the\n"
               "                    kernel command line)\n"
               "  --listen ADDR     vsock:PORT, or unix:PATH to serve the same protocol on a\n"
               "                    Unix socket (host testing; shutdown then ends the agent)\n"
               "  --no-init         never act as PID 1 (no mounts, no power-off)\n");
}

static int listen_vsock(uint32_t port)
{
    struct sockaddr_vm addr = {.svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = port};
    int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(fd, 128) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

static int listen_unix(const char *path)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(addr.sun_path))
        return -ENAMETOOLONG;
    strcpy(addr.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    unlink(path);
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || chmod(path, 0600) < 0 ||
        listen(fd, 128) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

/* The vsock transport may still be probing when we start: retry for a while. */
static int listen_vsock_retry(uint32_t port)
{
    struct timespec step = {0, 100 * 1000 * 1000};
    int fd = -EAGAIN;
    for (int i = 0; i < 300; i++) {
        fd = listen_vsock(port);
        if (fd >= 0)
            return fd;
        if (i == 10)
            agent_log("vsock port %u not ready yet (%s), retrying", port, strerror(-fd));
        nanosleep(&step, NULL);
    }
    return fd;
}

static void announce_ready(const struct agent_opts *o)
{
    struct stat out_st, con_st;
    bool stdout_is_console = false;
    if (!o->unix_path) {
        int con = open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC);
        if (con >= 0) {
            if (fstat(con, &con_st) == 0 && fstat(STDOUT_FILENO, &out_st) == 0)
                stdout_is_console = out_st.st_rdev == con_st.st_rdev && S_ISCHR(out_st.st_mode) &&
                                    S_ISCHR(con_st.st_mode);
            if (write(con, READY_LINE, strlen(READY_LINE)) < 0) {
                /* the console is best effort */
            }
            close(con);
        }
    }
    if (!stdout_is_console && write(STDOUT_FILENO, READY_LINE, strlen(READY_LINE)) < 0) {
        /* stdout may be closed under a service manager */
    }
}

/* Runs in the forked handler; returns the handler's exit status. */
static int handle_conn(int fd, const struct agent_opts *o)
{
    struct agent_conn c = {.fd = fd, .opts = o};
    int shutdown_action = -1;
    if (proto_rx_init(&c.rx) < 0)
        return 1;
    agent_trace("connection %d: serving", fd);
    int r = serve_conn(&c, &shutdown_action);
    agent_trace("connection %d: done (%s)", fd, r < 0 ? strerror(-r) : "ok");
    /* A request cut short (the peer reset, a write failed) ends up on the console, where the
     * host's logs keep it: without it a stream the agent dropped leaves no trace in the guest.
     * A peer that leaves without a request (-ECONNRESET) or an idle one is the normal end. */
    if (r < 0 && r != -ECONNRESET && r != -ETIMEDOUT)
        agent_log("connection %d ended by an error: %s", fd, strerror(-r));
    proto_rx_free(&c.rx);
    close(fd);
    if (shutdown_action >= 0) {
        if (o->init) /* busybox's convention: SIGTERM reboots, SIGUSR2 powers off */
            kill(getppid(), shutdown_action == PROTO_REBOOT ? SIGTERM : SIGUSR2);
        else if (o->test_mode)
            kill(getppid(), SIGTERM);
        else
            execlp(shutdown_action == PROTO_REBOOT ? "reboot" : "poweroff", "poweroff",
                   (char *)NULL);
    }
    return r < 0 ? 1 : 0;
}

static void spawn_handler(int lfd, int sfd, int cfd, const struct agent_opts *o)
{
    pid_t pid = fork();
    if (pid < 0) {
        agent_log("fork: %s", strerror(errno));
        return;
    }
    if (pid == 0) {
        close(lfd);
        close(sfd);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        _exit(handle_conn(cfd, o));
    }
}

/* Returns -1 to keep serving, or the process exit status / power action to take. */
static int on_signal(int sfd, const struct agent_opts *o, int *power)
{
    struct signalfd_siginfo si;
    while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        switch (si.ssi_signo) {
        case SIGCHLD:
            while (waitpid(-1, NULL, WNOHANG) > 0) {
            }
            break;
        case SIGINT:  /* Ctrl-Alt-Del, once RB_DISABLE_CAD is set */
        case SIGUSR1: /* busybox halt */
        case SIGUSR2: /* busybox poweroff */
            *power = PROTO_POWEROFF;
            return 0;
        case SIGTERM: /* busybox reboot; a service stop when not PID 1 */
            *power = o->init ? PROTO_REBOOT : -1;
            return 0;
        default:
            break;
        }
    }
    return -1;
}

int main(int argc, char **argv)
{
    struct agent_opts o = {.port = 0, .idle_timeout_ms = 60000};
    bool no_init = false;
    if (argc >= 2 && strcmp(argv[1], "vsock-send") == 0) /* hidden test helper */
        return vsock_send_main(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "reseed") == 0) /* used on a restored clone */
        return reseed_main(argc - 1, argv + 1);
    static const struct option longopts[] = {
        {"port", required_argument, NULL, 'p'},
        {"listen", required_argument, NULL, 'l'},
        {"no-init", no_argument, NULL, 'n'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "p:l:nh", longopts, NULL)) != -1) {
        switch (ch) {
        case 'p':
            o.port = (uint32_t)strtoul(optarg, NULL, 10);
            break;
        case 'l':
            if (strncmp(optarg, "unix:", 5) == 0 && optarg[5]) {
                o.unix_path = optarg + 5;
            } else if (strncmp(optarg, "vsock:", 6) == 0) {
                o.port = (uint32_t)strtoul(optarg + 6, NULL, 10);
            } else {
                usage(stderr);
                return 2;
            }
            break;
        case 'n':
            no_init = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    o.init = getpid() == 1 && !no_init;
    agent_logring(); /* shared with every process forked from here on */
    o.test_mode = o.unix_path != NULL;
    if (o.init) {
        init_mounts();
        init_load_modules();
        if (reboot(RB_DISABLE_CAD) < 0)
            agent_log("disable Ctrl-Alt-Del: %s", strerror(errno));
        if (!getenv("PATH"))
            setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 1);
    } else if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) /* reap our commands' orphans ourselves */
        agent_log("PR_SET_CHILD_SUBREAPER: %s", strerror(errno));
    if (!o.port)
        o.port = agent_cmdline_port(PROTO_DEFAULT_PORT);
    /* Background commands' control sockets: tmpfs in a guest, beside the socket in tests. */
    int dn = o.unix_path ? snprintf(o.run_dir, sizeof(o.run_dir), "%s.d", o.unix_path)
                         : snprintf(o.run_dir, sizeof(o.run_dir), "/run/amber-agent");
    if (dn < 0 || (size_t)dn >= sizeof(o.run_dir))
        agent_log("%s.d: path too long: background commands are unavailable", o.unix_path);
    else if (mkdir(o.run_dir, 0700) < 0 && errno != EEXIST)
        agent_log("mkdir %s: %s", o.run_dir, strerror(errno));

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGUSR1);
    sigaddset(&mask, SIGUSR2);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    int lfd = o.unix_path ? listen_unix(o.unix_path) : listen_vsock_retry(o.port);
    if (sfd < 0 || lfd < 0) {
        agent_log("cannot listen on %s%s: %s", o.unix_path ? "unix:" : "vsock port ",
                  o.unix_path ? o.unix_path : "", strerror(lfd < 0 ? -lfd : errno));
        if (o.init) { /* PID 1 must not exit: keep reaping until told to power off */
            int power = -1;
            for (;;) {
                struct pollfd p = {.fd = sfd, .events = POLLIN};
                poll(&p, 1, -1);
                if (on_signal(sfd, &o, &power) == 0 && power >= 0)
                    init_power(power);
            }
        }
        return 1;
    }
    logring_serve_start(&o);
    announce_ready(&o);

    int power = -1, status = -1;
    while (status < 0) {
        struct pollfd fds[2] = {{.fd = lfd, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
        if (poll(fds, 2, -1) < 0) {
            if (errno != EINTR)
                agent_log("poll: %s", strerror(errno));
            continue;
        }
        if (fds[1].revents)
            status = on_signal(sfd, &o, &power);
        if (status < 0 && fds[0].revents) {
            int cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
            if (cfd >= 0) {
                spawn_handler(lfd, sfd, cfd, &o);
                close(cfd);
            } else if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED) {
                agent_log("accept: %s", strerror(errno));
            }
        }
    }
    close(lfd);
    if (o.unix_path)
        unlink(o.unix_path);
    if (o.init) {
        for (;;)
            init_power(power >= 0 ? power : PROTO_POWEROFF);
    }
    return status;
}
