/* A minimal HTTP/1.1 client over a Unix socket, for amberctl's calls to amber's API. */
#ifndef AMBER_CTL_HTTP_CLIENT_H
#define AMBER_CTL_HTTP_CLIENT_H

#include <stddef.h>

#define HTTPC_MAX_BODY (1024 * 1024)

struct httpc_response {
    int status; /* HTTP status code */
    char *body; /* NUL-terminated body (heap, may be ""), free with httpc_response_free() */
    size_t body_len;
};

/*
 * Send one request (body may be NULL; sent as application/json) to the API socket at
 * sock_path and read the whole response, waiting at most timeout_ms. Returns 0 with *resp
 * filled, or -errno (-ECONNREFUSED/-ENOENT when nothing listens, -ETIMEDOUT, -EPROTO for a
 * response that is not HTTP or too large).
 */
int httpc_request(const char *sock_path, const char *method, const char *path, const char *body,
                  int timeout_ms, struct httpc_response *resp);

void httpc_response_free(struct httpc_response *resp);

#endif
