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
    /* A trickling client resets last_ms with every byte: these clocks do not reset. */
    uint64_t req_start_ms;  /* first byte of the request being received; 0 = between requests */
    uint64_t head_done_ms;  /* when that request's head completed; 0 = not yet */
    uint64_t head_spent_ms; /* head time of this connection's earlier requests */
    uint32_t events;        /* what we ask epoll for */
    bool closing;           /* close once out is drained */
    bool peer_closed;       /* the client shut down its side */
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
    unsigned idle_ms;    /* silence allowed between requests */
    unsigned request_ms; /* first byte to complete request, per request */
    unsigned head_ms;    /* time spent receiving heads, summed over a connection */
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

/*
 * Whether cn has overstayed at now_ms: NULL if not, else which bound ran out ("idle",
 * "request deadline" or "header time"). Pure: reads cn's clocks and api's limits only.
 */
const char *api_conn_overdue(const struct api *api, const struct api_conn *cn, uint64_t now_ms);

/* Stop listening and unlink the socket if it is still the one we created. */
void api_unlisten(struct api *api);

#endif
