/* virtio-vsock connection engine: the per-connection state machine, credit accounting and the
 * connection table, with host socket I/O behind a small ops table (pure, fuzzable). */
#ifndef AMBER_DEVICES_VIRTIO_VSOCK_MUX_H
#define AMBER_DEVICES_VIRTIO_VSOCK_MUX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "devices/virtio/vsock_proto.h"

#define VSOCK_MAX_CONNS       1024
#define VSOCK_HASH_BUCKETS    2048
#define VSOCK_RST_RING        2048
#define VSOCK_BUF_ALLOC_BYTES (256u * 1024) /* credit we advertise per connection */
#define VSOCK_CONNECT_TIMEOUT_MS                                                                   \
    10000                           /* host-initiated: wait this long for the guest's answer;      \
                                     * generous, because a loaded or emulated guest                \
                                     * answers slowly and the client only waits */
#define VSOCK_CLOSE_TIMEOUT_MS 2000 /* after SHUTDOWN(both) to the guest: wait, then RST */
#define VSOCK_EPHEMERAL_FIRST  (1u << 30)

/* Watch bits a connection asks its host fd to be watched for. */
#define VSOCK_WANT_READ  1u
#define VSOCK_WANT_WRITE 2u

/* Pending control packets to the guest (struct vsock_conn.ctl). */
#define VSOCK_CTL_REQUEST  1u
#define VSOCK_CTL_RESPONSE 2u
#define VSOCK_CTL_SHUTDOWN 4u
#define VSOCK_CTL_CREDIT   8u

struct vsock_mux;

enum vsock_conn_state {
    VSOCK_CONN_CONNECTING,  /* host-initiated: REQUEST queued or sent, no RESPONSE yet */
    VSOCK_CONN_ESTABLISHED, /* data may flow (subject to the shutdown flags) */
};

/* One stream between a host Unix socket (fd) and a guest port. */
struct vsock_conn {
    struct vsock_mux *mux;
    uint32_t local_port, peer_port; /* host side / guest side */
    int fd;
    enum vsock_conn_state state;
    bool req_sent; /* host-initiated REQUEST handed to the guest */

    /* Host -> guest: the guest's advertised buffer and what we sent. */
    uint32_t peer_buf_alloc, peer_fwd_cnt, tx_cnt;
    /* Guest -> host: what we advertise, received, forwarded, and last told the guest. */
    uint32_t buf_alloc, rx_cnt, fwd_cnt, fwd_cnt_sent;

    uint32_t peer_shut; /* VSOCK_SHUTDOWN_* flags received from the guest */
    uint32_t shut_sent; /* VSOCK_SHUTDOWN_* flags sent to the guest */
    bool host_readable; /* epoll said readable; cleared when a read hits EAGAIN */
    bool host_eof;      /* read returned 0 */
    bool host_hup;      /* the host end closed completely */
    bool host_wr_shut;  /* we shut down the host socket's write side */
    uint32_t ctl;       /* VSOCK_CTL_* packets waiting for an rx buffer */

    char ok_line[16]; /* "OK <port>\n" for a host-initiated connection, written alone */
    uint8_t ok_len, ok_off;
    uint8_t *buf; /* guest bytes the host socket has not taken yet: ring of buf_alloc */
    uint32_t buf_head, buf_len;

    uint64_t deadline_ms; /* 0 = none; see VSOCK_*_TIMEOUT_MS */
    uint32_t want;        /* VSOCK_WANT_* last reported through io->watch */
    bool watched;         /* owned by the io layer (is the fd in epoll) */

    struct vsock_conn *hnext;       /* hash chain */
    struct vsock_conn *prev, *next; /* all connections */
    struct vsock_conn *rx_prev, *rx_next;
    bool in_rx; /* on the round-robin list of connections with something for the guest */
};

/* Host-side I/O the engine drives; opaque is vsock_mux.opaque. */
struct vsock_io {
    /* Guest-initiated: connect (non-blocking) to the listener for port. Returns fd or -errno. */
    int (*connect)(void *opaque, uint32_t port);
    /* Read / write like read(2)/send(2): bytes, 0 at EOF (read), or -errno (-EAGAIN). */
    ssize_t (*read)(void *opaque, int fd, void *buf, size_t len);
    ssize_t (*write)(void *opaque, int fd, const void *buf, size_t len);
    /* shutdown(fd, SHUT_WR). */
    void (*shutdown_wr)(void *opaque, int fd);
    /* The connection is going away: stop watching c->fd and close it. */
    void (*close)(void *opaque, struct vsock_conn *c);
    /* c->want changed: watch c->fd for those VSOCK_WANT_* bits (0 = not at all). */
    void (*watch)(void *opaque, struct vsock_conn *c);
};

struct vsock_rst {
    uint32_t local_port, peer_port;
};

/* The connection table for one device. */
struct vsock_mux {
    uint64_t guest_cid;
    /* After a restore that gave the guest a new CID: the old one, which the guest still signs
     * its packets with until it handles the transport reset; 0 once it used the new one. */
    uint64_t prev_cid;
    const struct vsock_io *io;
    void *opaque;
    uint64_t now_ms; /* set by the caller before each entry point (monotonic) */

    struct vsock_conn *table[VSOCK_HASH_BUCKETS];
    struct vsock_conn *all;
    unsigned nconns;
    struct vsock_conn *rx_head, *rx_tail;
    struct vsock_rst rst[VSOCK_RST_RING];
    unsigned rst_head, rst_count;
    uint32_t next_port;
    unsigned long nbad; /* malformed packets seen (log rate limiting) */
};

/* Initialise an empty table for guest_cid; io/opaque are used for every host fd. */
void vsock_mux_init(struct vsock_mux *m, uint64_t guest_cid, const struct vsock_io *io,
                    void *opaque);

/*
 * Log the engine's state for a stall report: counts, then one line per connection (the first
 * VSOCK_DUMP_MAX) with its ports, state, credit counters on both sides, buffered bytes, pending
 * control packets and what its host fd is watched for. Info level, "state: vsock ..." lines.
 */
#define VSOCK_DUMP_MAX 32
void vsock_mux_dump(const struct vsock_mux *m);

/* Close every connection (io->close) without telling the guest, and forget queued RSTs. The
 * table stays usable (device reset). */
void vsock_mux_reset(struct vsock_mux *m);

/*
 * Handle one packet from the guest's tx queue: pkt holds the header followed by the payload
 * bytes the chain carried (pkt_len >= VSOCK_HDR_SIZE; callers pass at most
 * VSOCK_HDR_SIZE + VSOCK_MAX_PKT_BYTES). Malformed packets are logged and dropped or answered
 * with RST; nothing the guest sends can make this fail.
 */
void vsock_mux_tx(struct vsock_mux *m, const uint8_t *pkt, size_t pkt_len);

/*
 * Host-initiated connection: a client on fd asked for guest_port. Queues a REQUEST to the
 * guest. On success the connection owns fd and returns 0; on -ENOSPC (table full) the
 * caller still owns fd.
 */
int vsock_mux_connect(struct vsock_mux *m, int fd, uint32_t guest_port);

/* The host fd of c reported events (readable / writable / hung up). May free c. */
void vsock_mux_host_event(struct vsock_mux *m, struct vsock_conn *c, bool readable, bool writable,
                          bool hup);

/* True if vsock_mux_rx may produce a packet (an RST or a connection with pending work). */
bool vsock_mux_has_rx(const struct vsock_mux *m);

/*
 * Produce the next packet for the guest into pkt (header + payload, cap >= VSOCK_HDR_SIZE).
 * Control packets come first, then data round-robin over connections with data and credit;
 * host sockets are read here, never more than the guest's credit. Returns the packet length,
 * or 0 if nothing is ready.
 */
size_t vsock_mux_rx(struct vsock_mux *m, uint8_t *pkt, size_t cap);

/* Act on deadlines <= m->now_ms (connect and close timeouts). */
void vsock_mux_expire(struct vsock_mux *m);

/* The earliest deadline of any connection, or 0 if none. */
uint64_t vsock_mux_next_deadline(const struct vsock_mux *m);

/* Add delta_ms to every deadline (time spent paused does not count). */
void vsock_mux_shift_deadlines(struct vsock_mux *m, uint64_t delta_ms);

/* Find the connection for (local_port, peer_port), or NULL. */
struct vsock_conn *vsock_mux_find(const struct vsock_mux *m, uint32_t local_port,
                                  uint32_t peer_port);

/* Bytes the guest can still take on c: peer_buf_alloc - (tx_cnt - peer_fwd_cnt), >= 0. */
uint32_t vsock_conn_peer_credit(const struct vsock_conn *c);

/* The VSOCK_WANT_* bits c needs on its host fd in its current state. */
uint32_t vsock_conn_want(const struct vsock_conn *c);

#endif
