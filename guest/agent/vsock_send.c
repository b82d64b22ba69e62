/* amber-agent vsock-send: a guest-initiated vsock client (stdin to CID:PORT, replies to stdout). */
#include "guest/agent/agent.h"

#include <errno.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define VSOCK_SEND_BUF (64 * 1024)

/* Write all of buf to fd. Returns 0 or -errno. */
static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static int parse_u32(const char *s, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || !*s || *end || v > UINT32_MAX)
        return -EINVAL;
    *out = (uint32_t)v;
    return 0;
}

/*
 * Pump stdin to the socket and the socket to stdout at the same time, so that a peer that
 * answers while we still send cannot deadlock us. Half-closes the socket at stdin's EOF.
 */
static int pump(int sock)
{
    char *buf = malloc(VSOCK_SEND_BUF);
    if (!buf)
        return -ENOMEM;
    bool in_open = true, sock_open = true;
    int ret = 0;
    while (sock_open) {
        struct pollfd p[2] = {{.fd = in_open ? STDIN_FILENO : -1, .events = POLLIN},
                              {.fd = sock, .events = POLLIN}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            ret = -errno;
            break;
        }
        if (p[0].revents) {
            ssize_t n = read(STDIN_FILENO, buf, VSOCK_SEND_BUF);
            if (n > 0) {
                ret = write_all(sock, buf, (size_t)n);
                if (ret)
                    break;
            } else if (n == 0 || errno != EINTR) {
                in_open = false;
                shutdown(sock, SHUT_WR);
            }
        }
        if (p[1].revents) {
            ssize_t n = read(sock, buf, VSOCK_SEND_BUF);
            if (n > 0) {
                ret = write_all(STDOUT_FILENO, buf, (size_t)n);
                if (ret)
                    break;
            } else if (n == 0) {
                sock_open = false;
            } else if (errno != EINTR) {
                ret = -errno;
                break;
            }
        }
    }
    free(buf);
    return ret;
}

int vsock_send_main(int argc, char **argv)
{
    uint32_t port, cid = VMADDR_CID_HOST;
    if (argc < 2 || argc > 3 || parse_u32(argv[1], &port) ||
        (argc == 3 && parse_u32(argv[2], &cid))) {
        fprintf(stderr,
                "usage: amber-agent vsock-send PORT [CID]   (CID defaults to 2, the host)\n");
        return 2;
    }
    int sock = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (sock < 0) {
        fprintf(stderr, "vsock-send: socket: %s\n", strerror(errno));
        return 1;
    }
    struct sockaddr_vm addr = {.svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port};
    if (connect(sock, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        fprintf(stderr, "vsock-send: connect to %u:%u: %s\n", cid, port, strerror(errno));
        close(sock);
        return 1;
    }
    int ret = pump(sock);
    close(sock);
    if (ret) {
        fprintf(stderr, "vsock-send: %s\n", strerror(-ret));
        return 1;
    }
    return 0;
}
