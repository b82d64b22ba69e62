/* Internals of the API server shared by server.c and listen.c (not for other modules). */
#ifndef AMBER_API_SERVER_H
#define AMBER_API_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "api/api.h"
#include "api/core.h"
#include "api/http.h"

struct api_conn {
    int fd;
    struct api *api;
    struct api_conn *next, **prevp;
    char *in; /* received, not yet handled */
    size_t in_len, in_cap;
    char *out; /* responses not yet sent: out[out_off..out_len) */
    size_t out_len, out_off, out_cap;
    struct http_parser parser;
    uint64_t last_ms; /* last progress, for the idle timeout */
    uint32_t events;  /* what we ask epoll for */
    bool closing;     /* close once out is drained */
    bool peer_closed; /* the client shut down its side */
    bool sent_continue;
};

struct api {
    struct loop *loop;
    struct api_core core;
    int listen_fd;
    int timer_fd;
    char sock_path[108];
    dev_t sock_dev; /* what we created, so that shutdown unlinks only our own file */
    ino_t sock_ino;
    struct api_conn *conns;
    int nconns;
    unsigned idle_ms;
    unsigned ticks;
};

/*
 * Create the listening socket at path: bind a temporary name in the same directory, chmod 0600,
 * listen, and rename() it into place, so the socket answers as soon as path exists. A stale
 * socket (connect refused) is replaced; a live one gives -EADDRINUSE; a non-socket -EEXIST.
 * Adds the listener to api->loop. Returns 0 or -errno with err set.
 */
int api_listen(struct api *api, const char *path, char *err, size_t errlen);

/* The listening socket's loop callback: accept every pending client (server.c). */
void api_accept_event(void *opaque, uint32_t events);

/* Stop listening and unlink the socket if it is still the one we created. */
void api_unlisten(struct api *api);

#endif
