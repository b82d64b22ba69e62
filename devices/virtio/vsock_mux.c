/* virtio-vsock connection engine: table, state machine, credit, and packet production. */
#include "devices/virtio/vsock_mux.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/log.h"

static unsigned hash_ports(uint32_t local, uint32_t peer)
{
    uint32_t h = local * 0x9E3779B1u ^ (peer + 0x7F4A7C15u) * 0x85EBCA77u;
    return (h ^ (h >> 15)) & (VSOCK_HASH_BUCKETS - 1);
}

void vsock_mux_init(struct vsock_mux *m, uint64_t guest_cid, const struct vsock_io *io,
                    void *opaque)
{
    memset(m, 0, sizeof(*m));
    m->guest_cid = guest_cid;
    m->io = io;
    m->opaque = opaque;
    m->next_port = VSOCK_EPHEMERAL_FIRST;
}

struct vsock_conn *vsock_mux_find(const struct vsock_mux *m, uint32_t local_port,
                                  uint32_t peer_port)
{
    struct vsock_conn *c = m->table[hash_ports(local_port, peer_port)];
    while (c && !(c->local_port == local_port && c->peer_port == peer_port))
        c = c->hnext;
    return c;
}

uint32_t vsock_conn_peer_credit(const struct vsock_conn *c)
{
    uint32_t in_flight = c->tx_cnt - c->peer_fwd_cnt;
    return in_flight >= c->peer_buf_alloc ? 0 : c->peer_buf_alloc - in_flight;
}

/* Host bytes may go to the guest now (given an rx buffer). */
static bool conn_can_send_data(const struct vsock_conn *c)
{
    return c->state == VSOCK_CONN_ESTABLISHED && !c->host_eof &&
           !(c->peer_shut & VSOCK_SHUTDOWN_RCV) && vsock_conn_peer_credit(c) > 0;
}

static bool conn_write_pending(const struct vsock_conn *c)
{
    return c->ok_off < c->ok_len || c->buf_len > 0;
}

uint32_t vsock_conn_want(const struct vsock_conn *c)
{
    uint32_t w = 0;
    if (conn_can_send_data(c) && !c->host_readable)
        w |= VSOCK_WANT_READ;
    if (c->state == VSOCK_CONN_ESTABLISHED && conn_write_pending(c))
        w |= VSOCK_WANT_WRITE;
    return w;
}

static bool conn_has_rx(const struct vsock_conn *c)
{
    return c->ctl != 0 || (c->host_readable && conn_can_send_data(c));
}

static void rx_unlink(struct vsock_mux *m, struct vsock_conn *c)
{
    if (!c->in_rx)
        return;
    if (c->rx_prev)
        c->rx_prev->rx_next = c->rx_next;
    else
        m->rx_head = c->rx_next;
    if (c->rx_next)
        c->rx_next->rx_prev = c->rx_prev;
    else
        m->rx_tail = c->rx_prev;
    c->rx_prev = c->rx_next = NULL;
    c->in_rx = false;
}

static void rx_append(struct vsock_mux *m, struct vsock_conn *c)
{
    if (c->in_rx)
        return;
    c->rx_next = NULL;
    c->rx_prev = m->rx_tail;
    if (m->rx_tail)
        m->rx_tail->rx_next = c;
    else
        m->rx_head = c;
    m->rx_tail = c;
    c->in_rx = true;
}

/* Queue an RST for (local, peer). Answers to unknown packets (reserved = false) may use only
 * half the ring, so a flood of junk cannot crowd out the RSTs that end real connections. */
static void rst_push(struct vsock_mux *m, uint32_t local, uint32_t peer, bool reserved)
{
    unsigned limit = reserved ? VSOCK_RST_RING : VSOCK_RST_RING / 2;
    if (m->rst_count >= limit) {
        log_warn_rl("vsock: rx backlog full, dropping RST for %u->%u", local, peer);
        return;
    }
    unsigned i = (m->rst_head + m->rst_count) % VSOCK_RST_RING;
    m->rst[i] = (struct vsock_rst){.local_port = local, .peer_port = peer};
    m->rst_count++;
}

/* Free c: optionally tell the guest with an RST, close the host fd, forget it. */
static void conn_kill(struct vsock_mux *m, struct vsock_conn *c, bool send_rst)
{
    if (send_rst && !(c->state == VSOCK_CONN_CONNECTING && !c->req_sent))
        rst_push(m, c->local_port, c->peer_port, true);
    struct vsock_conn **pp = &m->table[hash_ports(c->local_port, c->peer_port)];
    while (*pp && *pp != c)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = c->hnext;
    if (c->prev)
        c->prev->next = c->next;
    else
        m->all = c->next;
    if (c->next)
        c->next->prev = c->prev;
    rx_unlink(m, c);
    m->nconns--;
    m->io->close(m->opaque, c);
    free(c->buf);
    free(c);
}

static struct vsock_conn *conn_new(struct vsock_mux *m, uint32_t local, uint32_t peer, int fd)
{
    struct vsock_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->mux = m;
    c->local_port = local;
    c->peer_port = peer;
    c->fd = fd;
    c->buf_alloc = VSOCK_BUF_ALLOC_BYTES;
    unsigned b = hash_ports(local, peer);
    c->hnext = m->table[b];
    m->table[b] = c;
    c->next = m->all;
    if (m->all)
        m->all->prev = c;
    m->all = c;
    m->nconns++;
    return c;
}

/* Write what the host socket takes: the OK line alone first, then buffered guest bytes.
 * Returns 0, or -errno if the host end is gone. */
static int conn_flush(struct vsock_mux *m, struct vsock_conn *c)
{
    while (c->ok_off < c->ok_len) {
        ssize_t n = m->io->write(m->opaque, c->fd, c->ok_line + c->ok_off, c->ok_len - c->ok_off);
        if (n == -EAGAIN || n == 0)
            return 0;
        if (n < 0)
            return (int)n;
        c->ok_off = (uint8_t)(c->ok_off + n);
    }
    while (c->buf_len > 0) {
        uint32_t chunk = c->buf_alloc - c->buf_head;
        if (chunk > c->buf_len)
            chunk = c->buf_len;
        ssize_t n = m->io->write(m->opaque, c->fd, c->buf + c->buf_head, chunk);
        if (n == -EAGAIN || n == 0)
            return 0;
        if (n < 0)
            return (int)n;
        if ((size_t)n > chunk)
            n = chunk;
        c->buf_head = (c->buf_head + (uint32_t)n) % c->buf_alloc;
        c->buf_len -= (uint32_t)n;
        c->fwd_cnt += (uint32_t)n;
    }
    free(c->buf); /* drained: idle connections hold no buffer */
    c->buf = NULL;
    c->buf_head = 0;
    return 0;
}

/* Guest payload for the host: write through if nothing is queued, buffer the rest.
 * Returns 0 or -errno (credit violated, out of memory, host gone). */
static int conn_recv(struct vsock_mux *m, struct vsock_conn *c, const uint8_t *data, uint32_t len)
{
    if (c->buf_len + len > c->buf_alloc) {
        log_warn_rl("vsock: guest port %u overran its credit (%u + %u > %u)", c->peer_port,
                    c->buf_len, len, c->buf_alloc);
        return -ENOBUFS;
    }
    c->rx_cnt += len;
    uint32_t done = 0;
    if (!conn_write_pending(c)) {
        ssize_t n = m->io->write(m->opaque, c->fd, data, len);
        if (n < 0 && n != -EAGAIN)
            return (int)n;
        if (n > 0)
            done = (size_t)n > len ? len : (uint32_t)n;
        c->fwd_cnt += done;
    }
    if (done == len)
        return 0;
    if (!c->buf) {
        c->buf = malloc(c->buf_alloc);
        if (!c->buf)
            return -ENOMEM;
        c->buf_head = 0;
    }
    uint32_t tail = (c->buf_head + c->buf_len) % c->buf_alloc;
    uint32_t rest = len - done;
    uint32_t first = c->buf_alloc - tail < rest ? c->buf_alloc - tail : rest;
    memcpy(c->buf + tail, data + done, first);
    memcpy(c->buf, data + done + first, rest - first);
    c->buf_len += rest;
    return 0;
}

/*
 * Re-evaluate c after anything changed: finish shutdowns whose data is flushed, decide on a
 * credit update, keep the rx list and the fd watch in step. May free c; returns false then.
 */
static bool conn_update(struct vsock_mux *m, struct vsock_conn *c)
{
    if (c->state == VSOCK_CONN_ESTABLISHED) {
        bool flushed = !conn_write_pending(c);
        if ((c->peer_shut & VSOCK_SHUTDOWN_BOTH) == VSOCK_SHUTDOWN_BOTH && flushed) {
            conn_kill(m, c, true); /* both directions done: RST completes the close */
            return false;
        }
        if ((c->peer_shut & VSOCK_SHUTDOWN_SEND) && flushed && !c->host_wr_shut) {
            m->io->shutdown_wr(m->opaque, c->fd);
            c->host_wr_shut = true;
        }
        /* The guest sees buf_alloc - (rx_cnt - fwd_cnt_sent) free. Once that drops below one
         * full packet while we have forwarded more, it may be stalled: tell it. */
        uint32_t used = c->rx_cnt - c->fwd_cnt_sent;
        uint32_t seen_free = used >= c->buf_alloc ? 0 : c->buf_alloc - used;
        if (seen_free < VSOCK_MAX_PKT_BYTES && c->fwd_cnt != c->fwd_cnt_sent &&
            !(c->peer_shut & VSOCK_SHUTDOWN_SEND))
            c->ctl |= VSOCK_CTL_CREDIT;
    }
    if (conn_has_rx(c))
        rx_append(m, c);
    else
        rx_unlink(m, c);
    uint32_t want = vsock_conn_want(c);
    if (want != c->want) {
        c->want = want;
        m->io->watch(m->opaque, c);
    }
    return true;
}

static void log_bad(struct vsock_mux *m, const char *why, const struct vsock_hdr *h)
{
    m->nbad++;
    if (m->nbad <= 8 || m->nbad % 1024 == 0)
        log_warn_rl("vsock: bad guest packet (%s): op %u %u->%u len %u [%lu seen]", why, h->op,
                    h->src_port, h->dst_port, h->len, m->nbad);
}

static void guest_connect(struct vsock_mux *m, const struct vsock_hdr *h)
{
    if (m->nconns >= VSOCK_MAX_CONNS) {
        log_warn_rl("vsock: %u connections open, refusing guest port %u", m->nconns, h->src_port);
        rst_push(m, h->dst_port, h->src_port, true);
        return;
    }
    int fd = m->io->connect(m->opaque, h->dst_port);
    if (fd < 0) {
        rst_push(m, h->dst_port, h->src_port, true);
        return;
    }
    struct vsock_conn *c = conn_new(m, h->dst_port, h->src_port, fd);
    if (!c) {
        struct vsock_conn tmp = {.fd = fd};
        m->io->close(m->opaque, &tmp);
        rst_push(m, h->dst_port, h->src_port, true);
        return;
    }
    c->state = VSOCK_CONN_ESTABLISHED;
    c->peer_buf_alloc = h->buf_alloc;
    c->peer_fwd_cnt = h->fwd_cnt;
    c->ctl = VSOCK_CTL_RESPONSE;
    conn_update(m, c);
}

void vsock_mux_tx(struct vsock_mux *m, const uint8_t *pkt, size_t pkt_len)
{
    struct vsock_hdr h;
    const char *why;
    if (pkt_len < VSOCK_HDR_SIZE)
        return;
    uint64_t cid = m->guest_cid;
    if (m->prev_cid) {
        uint64_t src = 0;
        for (int i = 7; i >= 0; i--) /* src_cid, little endian */
            src = src << 8 | pkt[i];
        if (src == m->prev_cid)
            cid = m->prev_cid; /* the guest has not read its new CID yet */
        else if (src == m->guest_cid)
            m->prev_cid = 0; /* it has: from now on only the new one */
    }
    enum vsock_verdict v = vsock_hdr_parse(pkt, pkt_len - VSOCK_HDR_SIZE, cid, &h, &why);
    if (v != VSOCK_PKT_OK) {
        log_bad(m, why, &h);
        if (v == VSOCK_PKT_RST)
            rst_push(m, h.dst_port, h.src_port, false);
        return;
    }
    struct vsock_conn *c = vsock_mux_find(m, h.dst_port, h.src_port);
    if (!c) {
        if (h.op == VSOCK_OP_REQUEST)
            guest_connect(m, &h);
        else if (h.op != VSOCK_OP_RST)
            rst_push(m, h.dst_port, h.src_port, false);
        return;
    }
    c->peer_buf_alloc = h.buf_alloc; /* every header carries the guest's credit */
    c->peer_fwd_cnt = h.fwd_cnt;
    bool connecting = c->state == VSOCK_CONN_CONNECTING;
    switch (h.op) {
    case VSOCK_OP_RESPONSE:
        if (!connecting || !c->req_sent) {
            log_bad(m, "unexpected RESPONSE", &h);
            conn_kill(m, c, true);
            return;
        }
        c->state = VSOCK_CONN_ESTABLISHED;
        c->deadline_ms = 0;
        c->ok_len = (uint8_t)vsock_ok_format(c->local_port, c->ok_line, sizeof(c->ok_line));
        if (conn_flush(m, c) < 0) {
            conn_kill(m, c, true);
            return;
        }
        break;
    case VSOCK_OP_RST:
        conn_kill(m, c, false);
        return;
    case VSOCK_OP_SHUTDOWN:
        if (connecting) {
            conn_kill(m, c, true);
            return;
        }
        c->peer_shut |= h.flags & VSOCK_SHUTDOWN_BOTH;
        break;
    case VSOCK_OP_RW:
        if (connecting || (c->peer_shut & VSOCK_SHUTDOWN_SEND) ||
            conn_recv(m, c, pkt + VSOCK_HDR_SIZE, h.len) < 0) {
            conn_kill(m, c, true);
            return;
        }
        break;
    case VSOCK_OP_CREDIT_REQUEST:
        if (!connecting)
            c->ctl |= VSOCK_CTL_CREDIT;
        break;
    case VSOCK_OP_CREDIT_UPDATE:
        break;
    default: /* a second REQUEST on a live connection */
        log_bad(m, "REQUEST for an open connection", &h);
        conn_kill(m, c, true);
        return;
    }
    conn_update(m, c);
}

int vsock_mux_connect(struct vsock_mux *m, int fd, uint32_t guest_port)
{
    if (m->nconns >= VSOCK_MAX_CONNS)
        return -ENOSPC;
    uint32_t port;
    do {
        port = m->next_port++;
        if (m->next_port == 0)
            m->next_port = VSOCK_EPHEMERAL_FIRST;
    } while (vsock_mux_find(m, port, guest_port));
    struct vsock_conn *c = conn_new(m, port, guest_port, fd);
    if (!c)
        return -ENOMEM;
    c->state = VSOCK_CONN_CONNECTING;
    c->ctl = VSOCK_CTL_REQUEST;
    c->deadline_ms = m->now_ms + VSOCK_CONNECT_TIMEOUT_MS;
    conn_update(m, c);
    return 0;
}

void vsock_mux_host_event(struct vsock_mux *m, struct vsock_conn *c, bool readable, bool writable,
                          bool hup)
{
    if (hup)
        c->host_hup = true;
    if ((writable || hup) && conn_write_pending(c)) {
        if (conn_flush(m, c) < 0) {
            conn_kill(m, c, true);
            return;
        }
    }
    if (readable || hup)
        c->host_readable = true;
    conn_update(m, c);
}

bool vsock_mux_has_rx(const struct vsock_mux *m)
{
    return m->rst_count > 0 || m->rx_head != NULL;
}

static void hdr_for(const struct vsock_mux *m, const struct vsock_conn *c, struct vsock_hdr *h,
                    uint16_t op)
{
    *h = (struct vsock_hdr){
        .src_cid = VSOCK_HOST_CID,
        .dst_cid = m->guest_cid,
        .src_port = c->local_port,
        .dst_port = c->peer_port,
        .type = VSOCK_TYPE_STREAM,
        .op = op,
        .buf_alloc = c->buf_alloc,
        .fwd_cnt = c->fwd_cnt,
    };
}

/* Build c's next packet into pkt. Returns its length, 0 if c had nothing after all, or -1 if
 * c was freed (an RST is queued). */
static long conn_produce(struct vsock_mux *m, struct vsock_conn *c, uint8_t *pkt, size_t cap)
{
    struct vsock_hdr h;
    if (c->ctl & VSOCK_CTL_REQUEST) {
        c->ctl &= ~VSOCK_CTL_REQUEST;
        c->req_sent = true;
        hdr_for(m, c, &h, VSOCK_OP_REQUEST);
        goto emit;
    }
    if (c->ctl & VSOCK_CTL_RESPONSE) {
        c->ctl &= ~VSOCK_CTL_RESPONSE;
        hdr_for(m, c, &h, VSOCK_OP_RESPONSE);
        goto emit;
    }
    if (c->host_readable && conn_can_send_data(c)) {
        size_t want = vsock_conn_peer_credit(c);
        if (want > cap - VSOCK_HDR_SIZE)
            want = cap - VSOCK_HDR_SIZE;
        if (want > VSOCK_MAX_PKT_BYTES)
            want = VSOCK_MAX_PKT_BYTES;
        if (want > 0) {
            ssize_t n = m->io->read(m->opaque, c->fd, pkt + VSOCK_HDR_SIZE, want);
            if (n > 0) {
                if ((size_t)n > want)
                    n = (ssize_t)want;
                hdr_for(m, c, &h, VSOCK_OP_RW);
                h.len = (uint32_t)n;
                c->tx_cnt += (uint32_t)n;
                goto emit;
            }
            if (n == 0) {
                c->host_eof = true;
                c->ctl |= VSOCK_CTL_SHUTDOWN;
            } else if (n == -EAGAIN) {
                c->host_readable = false;
            } else {
                conn_kill(m, c, true);
                return -1;
            }
        }
    }
    if (c->ctl & VSOCK_CTL_SHUTDOWN) {
        c->ctl &= ~VSOCK_CTL_SHUTDOWN;
        hdr_for(m, c, &h, VSOCK_OP_SHUTDOWN);
        /* EOF alone is a half-close; a host end that hung up will not read either. */
        h.flags = VSOCK_SHUTDOWN_SEND | (c->host_hup ? VSOCK_SHUTDOWN_RCV : 0);
        c->shut_sent |= h.flags;
        if (c->shut_sent == VSOCK_SHUTDOWN_BOTH && !c->deadline_ms)
            c->deadline_ms = m->now_ms + VSOCK_CLOSE_TIMEOUT_MS;
        goto emit;
    }
    if (c->ctl & VSOCK_CTL_CREDIT) {
        hdr_for(m, c, &h, VSOCK_OP_CREDIT_UPDATE);
        goto emit;
    }
    return 0;
emit:
    c->ctl &= ~VSOCK_CTL_CREDIT; /* every header carries buf_alloc and fwd_cnt */
    c->fwd_cnt_sent = c->fwd_cnt;
    vsock_hdr_encode(&h, pkt);
    return (long)(VSOCK_HDR_SIZE + h.len);
}

size_t vsock_mux_rx(struct vsock_mux *m, uint8_t *pkt, size_t cap)
{
    if (cap < VSOCK_HDR_SIZE)
        return 0;
    /* A connection that yields nothing goes back on the list only if it still has work
     * (e.g. data but a header-only buffer): one pass over the list is enough. */
    unsigned idle_budget = m->nconns + 1;
    for (;;) {
        if (m->rst_count > 0) {
            struct vsock_rst r = m->rst[m->rst_head];
            m->rst_head = (m->rst_head + 1) % VSOCK_RST_RING;
            m->rst_count--;
            struct vsock_hdr h = {
                .src_cid = VSOCK_HOST_CID,
                .dst_cid = m->guest_cid,
                .src_port = r.local_port,
                .dst_port = r.peer_port,
                .type = VSOCK_TYPE_STREAM,
                .op = VSOCK_OP_RST,
            };
            vsock_hdr_encode(&h, pkt);
            return VSOCK_HDR_SIZE;
        }
        struct vsock_conn *c = m->rx_head;
        if (!c)
            return 0;
        rx_unlink(m, c);
        long n = conn_produce(m, c, pkt, cap);
        if (n < 0)
            continue;
        conn_update(m, c); /* back on the tail if it has more: round robin */
        if (n > 0)
            return (size_t)n;
        if (--idle_budget == 0)
            return 0;
    }
}

void vsock_mux_expire(struct vsock_mux *m)
{
    struct vsock_conn *c = m->all;
    while (c) {
        struct vsock_conn *next = c->next;
        if (c->deadline_ms && c->deadline_ms <= m->now_ms) {
            if (c->state == VSOCK_CONN_CONNECTING)
                log_info_rl("vsock: guest port %u did not answer, closing the host client",
                            c->peer_port);
            conn_kill(m, c, true);
        }
        c = next;
    }
}

uint64_t vsock_mux_next_deadline(const struct vsock_mux *m)
{
    uint64_t best = 0;
    for (const struct vsock_conn *c = m->all; c; c = c->next)
        if (c->deadline_ms && (!best || c->deadline_ms < best))
            best = c->deadline_ms;
    return best;
}

void vsock_mux_shift_deadlines(struct vsock_mux *m, uint64_t delta_ms)
{
    for (struct vsock_conn *c = m->all; c; c = c->next)
        if (c->deadline_ms)
            c->deadline_ms += delta_ms;
}

void vsock_mux_dump(const struct vsock_mux *m)
{
    unsigned rx_len = 0;
    for (const struct vsock_conn *c = m->rx_head; c; c = c->rx_next)
        rx_len++;
    log_info("state: vsock: %u connections, %u on the rx list, %u RSTs queued", m->nconns, rx_len,
             m->rst_count);
    unsigned n = 0;
    for (const struct vsock_conn *c = m->all; c && n < VSOCK_DUMP_MAX; c = c->next, n++)
        log_info("state: vsock conn host %u guest %u fd %d state %d: to guest tx %u peer_fwd %u "
                 "peer_buf %u credit %u; from guest rx %u fwd %u fwd_sent %u buffered %u; "
                 "ctl %#x peer_shut %#x readable %d eof %d want %#x watched %d in_rx %d",
                 c->local_port, c->peer_port, c->fd, (int)c->state, c->tx_cnt, c->peer_fwd_cnt,
                 c->peer_buf_alloc, vsock_conn_peer_credit(c), c->rx_cnt, c->fwd_cnt,
                 c->fwd_cnt_sent, c->buf_len, c->ctl, c->peer_shut, c->host_readable, c->host_eof,
                 c->want, c->watched, c->in_rx);
    if (m->nconns > n)
        log_info("state: vsock: %u more connections not shown", m->nconns - n);
}

void vsock_mux_reset(struct vsock_mux *m)
{
    while (m->all)
        conn_kill(m, m->all, false);
    m->rst_head = m->rst_count = 0;
}
