/* The API's Unix-socket server: listening, per-connection buffers, HTTP framing and timeouts. */

/*
 * Threading: the API runs on the VMM's event loop (the main thread), not on a thread of its
 * own. Requests are handled to completion one at a time as the loop dispatches them, so
 * state-changing requests are serialised without any lock, and a handler can call the back end
 * (which also lives on the loop) directly. The one long handler is pause: it waits for the vCPU
 * barrier, which the back end bounds at 5 s, so the loop stalls at most that long. All socket
 * I/O is non-blocking with bounded per-connection buffers and an idle timeout, so a slow or
 * half-open client costs memory it cannot grow past a cap, and never stalls the loop. The idle
 * timeout restarts with every byte, so it alone would let a client that trickles one byte a
 * second hold a slot for ever (and 256 such clients every slot): a per-request deadline and a
 * per-connection budget of head time bound those, whatever the pace.
 */
#include "api/server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "vmm/clock.h"
#include "vmm/log.h"

#define CONN_MAX           256
#define IN_CAP_MAX         (HTTP_HEAD_MAX + HTTP_BODY_MAX)
#define OUT_SOFT           (64 * 1024)   /* stop handling a client's requests above this */
#define OUT_HARD           (1024 * 1024) /* drop a client that lets this much pile up */
#define TICK_MS            1000
#define METRICS_TICKS      60 /* periodic metrics line every 60 s */
#define IDLE_DEFAULT_MS    30000
#define REQUEST_DEFAULT_MS 10000 /* one request, first byte to last: 64 KiB over a local socket */
#define HEAD_DEFAULT_MS    10000 /* heads of one connection, summed: a client sends each at once */
#define HEAD_GRACE_MS      50    /* of each head, not counted: a split write, a busy loop */

static void conn_close(struct api *api, struct api_conn *cn)
{
    loop_del(api->loop, cn->fd);
    close(cn->fd);
    *cn->prevp = cn->next;
    if (cn->next)
        cn->next->prevp = cn->prevp;
    free(cn->in);
    free(cn->out);
    free(cn);
    api->nconns--;
}

/* Append bytes to the output buffer; -ENOBUFS when the client has let too much pile up. */
static int out_append(struct api_conn *cn, const char *p, size_t n)
{
    if (cn->out_len + n > OUT_HARD)
        return -ENOBUFS;
    if (cn->out_len + n > cn->out_cap) {
        size_t cap = cn->out_cap ? cn->out_cap : 4096;
        while (cap < cn->out_len + n)
            cap *= 2;
        char *b = realloc(cn->out, cap);
        if (!b)
            return -ENOMEM;
        cn->out = b;
        cn->out_cap = cap;
    }
    memcpy(cn->out + cn->out_len, p, n);
    cn->out_len += n;
    return 0;
}

static int queue_response(struct api_conn *cn, const struct api_response *r, bool close)
{
    char head[512];
    int n = http_write_head(head, sizeof(head), r->status, r->body_len, r->headers, close);
    if (n < 0)
        return n;
    int e = out_append(cn, head, (size_t)n);
    if (!e && r->status != 204 && r->body_len)
        e = out_append(cn, r->body, r->body_len);
    return e;
}

/* Write what we can. Returns 0, or -errno when the connection is dead. */
static int flush_out(struct api_conn *cn)
{
    while (cn->out_off < cn->out_len) {
        ssize_t n = send(cn->fd, cn->out + cn->out_off, cn->out_len - cn->out_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return 0;
            return -errno;
        }
        cn->out_off += (size_t)n;
        cn->last_ms = clock_now_ms();
    }
    cn->out_off = cn->out_len = 0;
    return 0;
}

/* The part of one head's receiving time that counts towards a connection's cap. */
static uint64_t head_counted_ms(uint64_t ms)
{
    return ms > HEAD_GRACE_MS ? ms - HEAD_GRACE_MS : 0;
}

/* Parse and answer the complete requests in the input buffer, while output has room. */
static int handle_input(struct api *api, struct api_conn *cn)
{
    while (!cn->closing && cn->out_len - cn->out_off < OUT_SOFT) {
        struct http_request req;
        int used = http_parse(&cn->parser, cn->in, cn->in_len, &req);
        uint64_t now = clock_now_ms();
        if (used == 0) {
            if (cn->parser.head_done && !cn->head_done_ms)
                cn->head_done_ms = now; /* the body is still to come */
            if (cn->parser.head_done && cn->parser.req.expect_continue && !cn->sent_continue) {
                static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
                cn->sent_continue = true;
                return out_append(cn, cont, sizeof(cont) - 1);
            }
            return 0;
        }
        /* A request is complete (or malformed): its head time counts towards the cap. */
        if (cn->req_start_ms)
            cn->head_spent_ms +=
                head_counted_ms((cn->head_done_ms ? cn->head_done_ms : now) - cn->req_start_ms);
        cn->head_done_ms = 0;
        struct api_response r;
        if (used < 0) {
            memset(&r, 0, sizeof(r));
            resp_error(&r, -used, "malformed request (%s)", http_reason(-used));
            cn->closing = true;
        } else {
            api_core_route(&api->core, &req, &r);
            memmove(cn->in, cn->in + used, cn->in_len - (size_t)used);
            cn->in_len -= (size_t)used;
            cn->req_start_ms = cn->in_len ? now : 0; /* a pipelined request has begun */
            cn->sent_continue = false;
            if (!req.keep_alive)
                cn->closing = true;
        }
        int e = queue_response(cn, &r, cn->closing);
        api_response_free(&r);
        if (e)
            return e;
    }
    return 0;
}

/* Read what is available into the input buffer (bounded). Returns 0, or -errno / -EPIPE on EOF. */
static int read_input(struct api_conn *cn)
{
    for (;;) {
        if (cn->in_len == cn->in_cap) {
            if (cn->in_cap >= IN_CAP_MAX)
                return 0; /* full: handle_input must drain it first */
            size_t cap = cn->in_cap ? cn->in_cap * 2 : 4096;
            if (cap > IN_CAP_MAX)
                cap = IN_CAP_MAX;
            char *b = realloc(cn->in, cap);
            if (!b)
                return -ENOMEM;
            cn->in = b;
            cn->in_cap = cap;
        }
        ssize_t n = recv(cn->fd, cn->in + cn->in_len, cn->in_cap - cn->in_len, MSG_DONTWAIT);
        if (n == 0)
            return -EPIPE;
        if (n < 0)
            return errno == EAGAIN || errno == EINTR ? 0 : -errno;
        cn->in_len += (size_t)n;
        cn->last_ms = clock_now_ms();
        if (!cn->req_start_ms)
            cn->req_start_ms = cn->last_ms;
    }
}

static void conn_event(void *opaque, uint32_t events)
{
    struct api_conn *cn = opaque;
    struct api *api = cn->api;
    int e = 0;
    if (events & EPOLLERR) {
        conn_close(api, cn);
        return;
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLRDHUP)) {
        if (!cn->peer_closed && !cn->closing) {
            e = read_input(cn);
            if (e == -EPIPE) {
                cn->peer_closed = true; /* still answer what it sent */
                e = 0;
            }
        }
    }
    if (!e)
        e = handle_input(api, cn);
    if (!e)
        e = flush_out(cn);
    /* Handling may have been held back by a full output buffer: try again once it drained. */
    if (!e && cn->out_len == 0 && cn->in_len && !cn->closing)
        e = handle_input(api, cn);
    if (!e)
        e = flush_out(cn);
    bool drained = cn->out_len == 0;
    if (e || (drained && (cn->closing || cn->peer_closed))) {
        conn_close(api, cn);
        return;
    }
    /* Stop reading while output is pending or the input buffer is full; watch for writability. */
    uint32_t want = cn->peer_closed ? 0 : EPOLLRDHUP; /* level-triggered: don't spin on it */
    if (!cn->closing && !cn->peer_closed && cn->out_len - cn->out_off < OUT_SOFT &&
        cn->in_len < IN_CAP_MAX)
        want |= EPOLLIN;
    if (!drained)
        want |= EPOLLOUT;
    if (want != cn->events) {
        cn->events = want;
        loop_mod(api->loop, cn->fd, want);
    }
}

void api_accept_event(void *opaque, uint32_t events)
{
    struct api *api = opaque;
    for (;;) {
        int fd = accept4(api->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR)
                log_warn("api: accept: %s", strerror(errno));
            return;
        }
        if (api->nconns >= CONN_MAX) {
            log_warn("api: too many connections (%d), refusing one", CONN_MAX);
            close(fd);
            continue;
        }
        struct api_conn *cn = calloc(1, sizeof(*cn));
        if (!cn) {
            close(fd);
            continue;
        }
        cn->fd = fd;
        cn->api = api;
        cn->last_ms = clock_now_ms();
        cn->events = EPOLLIN | EPOLLRDHUP;
        if (loop_add(api->loop, fd, cn->events, conn_event, cn)) {
            close(fd);
            free(cn);
            continue;
        }
        cn->next = api->conns;
        if (cn->next)
            cn->next->prevp = &cn->next;
        cn->prevp = &api->conns;
        api->conns = cn;
        api->nconns++;
    }
}

static void tick_event(void *opaque, uint32_t events)
{
    struct api *api = opaque;
    uint64_t exp;
    if (read(api->timer_fd, &exp, sizeof(exp)) < 0 && errno != EAGAIN)
        return;
    uint64_t now = clock_now_ms();
    api_core_check_deadline(&api->core, now);
    struct api_conn *cn = api->conns;
    while (cn) {
        struct api_conn *next = cn->next;
        const char *why = api_conn_overdue(api, cn, now);
        if (why && strcmp(why, "idle") != 0 && !cn->closing) {
            /* Best effort: tell the client why, without waiting for it to read. */
            struct api_response r = {0};
            resp_error(&r, 408, "%s exceeded: the request took too long to arrive", why);
            if (!queue_response(cn, &r, true))
                flush_out(cn);
            api_response_free(&r);
            log_warn("api: closing a client: %s exceeded", why);
        }
        if (why)
            conn_close(api, cn);
        cn = next;
    }
    if (++api->ticks >= METRICS_TICKS) {
        api->ticks = 0;
        api_core_flush_metrics(&api->core);
    }
}

const char *api_conn_overdue(const struct api *api, const struct api_conn *cn, uint64_t now_ms)
{
    if (now_ms - cn->last_ms >= api->idle_ms)
        return "idle";
    if (!cn->req_start_ms)
        return NULL;
    if (now_ms - cn->req_start_ms >= api->request_ms)
        return "request deadline";
    uint64_t head = cn->head_spent_ms;
    if (!cn->parser.head_done)
        head += head_counted_ms(now_ms - cn->req_start_ms); /* the head still arriving */
    else if (cn->head_done_ms)
        head += head_counted_ms(cn->head_done_ms - cn->req_start_ms);
    return head >= api->head_ms ? "header time" : NULL;
}

void api_set_idle_timeout(struct api *api, unsigned ms)
{
    api->idle_ms = ms;
}

void api_set_request_limits(struct api *api, unsigned request_ms, unsigned head_ms)
{
    api->request_ms = request_ms;
    api->head_ms = head_ms;
}

void api_set_started(struct api *api)
{
    api_core_event(&api->core, VM_EV_START);
}

void api_set_stopped(struct api *api)
{
    api_core_event(&api->core, VM_EV_STOP);
}

int api_flush_metrics(struct api *api)
{
    return api_core_flush_metrics(&api->core);
}

struct api *api_create(struct loop *loop, const char *sock_path, struct vm_config *cfg,
                       const struct api_backend *be, char *err, size_t errlen)
{
    struct api *api = calloc(1, sizeof(*api));
    if (!api) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    api->loop = loop;
    api->listen_fd = -1;
    api->idle_ms = IDLE_DEFAULT_MS;
    api->request_ms = REQUEST_DEFAULT_MS;
    api->head_ms = HEAD_DEFAULT_MS;
    api_core_init(&api->core, cfg, be);
    if (sock_path && api_listen(api, sock_path, err, errlen))
        goto err_free;
    api->timer_fd = loop_add_timer(loop, TICK_MS, TICK_MS, tick_event, api);
    if (api->timer_fd < 0) {
        snprintf(err, errlen, "cannot create the API timer: %s", strerror(-api->timer_fd));
        goto err_listen;
    }
    if (api_core_open_sinks(&api->core, true, true, err, errlen))
        goto err_timer;
    return api;

err_timer:
    loop_del(loop, api->timer_fd);
    close(api->timer_fd);
err_listen:
    api_unlisten(api);
err_free:
    api_core_fini(&api->core);
    free(api);
    return NULL;
}

void api_destroy(struct api *api)
{
    if (!api)
        return;
    while (api->conns)
        conn_close(api, api->conns);
    loop_del(api->loop, api->timer_fd);
    close(api->timer_fd);
    api_unlisten(api);
    api_core_fini(&api->core);
    free(api);
}
