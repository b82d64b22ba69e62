/* A minimal HTTP/1.1 client over a Unix socket: one request per connection, Content-Length. */
#include "ctl/http_client.h"
#include "ctl/agent_client_priv.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "vmm/clock.h"

/* Status line and Content-Length (or -1) of a complete header block. */
static int parse_head(const char *buf, int *status, long *content_length)
{
    if (sscanf(buf, "HTTP/1.%*d %d", status) != 1 || *status < 100 || *status > 599)
        return -EPROTO;
    *content_length = -1;
    for (const char *line = strstr(buf, "\r\n"); line; line = strstr(line + 2, "\r\n")) {
        if (!strncasecmp(line + 2, "Content-Length:", 15)) {
            char *end;
            long v = strtol(line + 17, &end, 10);
            if (v < 0 || v > HTTPC_MAX_BODY)
                return -EPROTO;
            *content_length = v;
        }
        if (line[2] == '\r')
            break;
    }
    return 0;
}

int httpc_request(const char *sock_path, const char *method, const char *path, const char *body,
                  int timeout_ms, struct httpc_response *resp)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memset(resp, 0, sizeof(*resp));
    if (strlen(sock_path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int r;
    char *buf = NULL;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        r = -errno;
        goto out;
    }
    char head[512];
    size_t blen = body ? strlen(body) : 0;
    int hn = snprintf(head, sizeof(head),
                      "%s %s HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n"
                      "Connection: close\r\n%sContent-Length: %zu\r\n\r\n",
                      method, path, body ? "Content-Type: application/json\r\n" : "", blen);
    if (hn < 0 || (size_t)hn >= sizeof(head)) {
        r = -ENAMETOOLONG;
        goto out;
    }
    if ((r = ac_write_all(fd, head, (size_t)hn)) < 0 ||
        (blen && (r = ac_write_all(fd, body, blen)) < 0))
        goto out;

    size_t cap = 64 * 1024 + HTTPC_MAX_BODY, len = 0;
    buf = malloc(cap + 1);
    if (!buf) {
        r = -ENOMEM;
        goto out;
    }
    long long deadline = (long long)clock_now_ms() + timeout_ms;
    char *body_start = NULL;
    long clen = -1;
    for (;;) {
        if (body_start && clen >= 0 && (size_t)(buf + len - body_start) >= (size_t)clen)
            break;
        long long left = deadline - (long long)clock_now_ms();
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, (int)left) == 0) {
            r = -ETIMEDOUT;
            goto out;
        }
        if (len == cap) {
            r = -EPROTO;
            goto out;
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        buf[len] = 0;
        if (!body_start) {
            char *end = strstr(buf, "\r\n\r\n");
            if (end) {
                body_start = end + 4;
                if ((r = parse_head(buf, &resp->status, &clen)) < 0)
                    goto out;
            }
        }
    }
    if (!body_start) {
        r = -EPROTO;
        goto out;
    }
    size_t have = (size_t)(buf + len - body_start);
    if (clen >= 0 && have > (size_t)clen)
        have = (size_t)clen;
    resp->body = malloc(have + 1);
    if (!resp->body) {
        r = -ENOMEM;
        goto out;
    }
    memcpy(resp->body, body_start, have);
    resp->body[have] = 0;
    resp->body_len = have;
    r = 0;
out:
    free(buf);
    close(fd);
    return r;
}

void httpc_response_free(struct httpc_response *resp)
{
    free(resp->body);
    resp->body = NULL;
}
