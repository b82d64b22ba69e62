/* Unit tests for vsock's pure parts: the wire format, the CONNECT parser and the connection
 * engine (vsock_mux) over fake host I/O. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "devices/virtio/vsock_mux.h"
#include "devices/virtio/vsock_proto.h"
#include "vmm/log.h"

#define GUEST_CID 3

/* ---- wire format ---- */

static void mkhdr(uint8_t *raw, uint64_t src_cid, uint64_t dst_cid, uint32_t sport, uint32_t dport,
                  uint16_t op, uint32_t len)
{
    struct vsock_hdr h = {.src_cid = src_cid,
                          .dst_cid = dst_cid,
                          .src_port = sport,
                          .dst_port = dport,
                          .len = len,
                          .type = VSOCK_TYPE_STREAM,
                          .op = op,
                          .buf_alloc = 65536};
    vsock_hdr_encode(&h, raw);
}

static void test_hdr_roundtrip(void **state)
{
    struct vsock_hdr in = {3, 2, 0x11223344, 0x55667788, 10, 1, 5, 3, 0xaabbccdd, 0x01020304};
    uint8_t raw[VSOCK_HDR_SIZE];
    vsock_hdr_encode(&in, raw);
    assert_int_equal(raw[0], 3);     /* little endian src_cid */
    assert_int_equal(raw[16], 0x44); /* src_port low byte */
    assert_int_equal(raw[30], 5);    /* op */
    assert_int_equal(raw[43], 0x01); /* fwd_cnt high byte */
    struct vsock_hdr out;
    const char *why;
    assert_int_equal(vsock_hdr_parse(raw, 10, 3, &out, &why), VSOCK_PKT_OK);
    assert_true(in.src_cid == out.src_cid && in.dst_cid == out.dst_cid &&
                in.src_port == out.src_port && in.dst_port == out.dst_port && in.len == out.len &&
                in.type == out.type && in.op == out.op && in.flags == out.flags &&
                in.buf_alloc == out.buf_alloc && in.fwd_cnt == out.fwd_cnt);
}

static void test_hdr_hostile(void **state)
{
    uint8_t raw[VSOCK_HDR_SIZE];
    struct vsock_hdr h;
    const char *why;
    mkhdr(raw, 4, 2, 1, 2, VSOCK_OP_REQUEST, 0); /* spoofed source cid */
    assert_int_equal(vsock_hdr_parse(raw, 0, GUEST_CID, &h, &why), VSOCK_PKT_DROP);
    assert_non_null(why);
    mkhdr(raw, 3, 7, 1, 2, VSOCK_OP_REQUEST, 0); /* to another guest */
    assert_int_equal(vsock_hdr_parse(raw, 0, GUEST_CID, &h, &why), VSOCK_PKT_DROP);
    mkhdr(raw, 3, 2, 1, 2, 0, 0); /* op 0 */
    assert_int_equal(vsock_hdr_parse(raw, 0, GUEST_CID, &h, &why), VSOCK_PKT_RST);
    mkhdr(raw, 3, 2, 1, 2, 8, 0); /* op past the last */
    assert_int_equal(vsock_hdr_parse(raw, 0, GUEST_CID, &h, &why), VSOCK_PKT_RST);
    mkhdr(raw, 3, 2, 1, 2, VSOCK_OP_RW, 100); /* len beyond the chain */
    assert_int_equal(vsock_hdr_parse(raw, 99, GUEST_CID, &h, &why), VSOCK_PKT_RST);
    mkhdr(raw, 3, 2, 1, 2, VSOCK_OP_RW, VSOCK_MAX_PKT_BYTES + 1); /* too large */
    assert_int_equal(vsock_hdr_parse(raw, UINT32_MAX, GUEST_CID, &h, &why), VSOCK_PKT_RST);
    mkhdr(raw, 3, 2, 1, 2, VSOCK_OP_RW, 0xffffffff);
    assert_int_equal(vsock_hdr_parse(raw, UINT32_MAX, GUEST_CID, &h, &why), VSOCK_PKT_RST);
    mkhdr(raw, 3, 2, 1, 2, VSOCK_OP_RW, 0); /* empty RW */
    assert_int_equal(vsock_hdr_parse(raw, 10, GUEST_CID, &h, &why), VSOCK_PKT_RST);
    mkhdr(raw, 3, 2, 1, 2, VSOCK_OP_RW, VSOCK_MAX_PKT_BYTES);
    assert_int_equal(vsock_hdr_parse(raw, VSOCK_MAX_PKT_BYTES, GUEST_CID, &h, &why), VSOCK_PKT_OK);
    raw[28] = 2; /* SEQPACKET */
    assert_int_equal(vsock_hdr_parse(raw, VSOCK_MAX_PKT_BYTES, GUEST_CID, &h, &why), VSOCK_PKT_RST);
    mkhdr(raw, 3, 2, 1, 2, VSOCK_OP_RST, 0);
    raw[28] = 9; /* a malformed RST is never answered with an RST */
    assert_int_equal(vsock_hdr_parse(raw, 0, GUEST_CID, &h, &why), VSOCK_PKT_DROP);
    mkhdr(raw, 3, 2, 1, 2, VSOCK_OP_SHUTDOWN, 500); /* len ignored outside RW */
    assert_int_equal(vsock_hdr_parse(raw, 0, GUEST_CID, &h, &why), VSOCK_PKT_OK);
}

static int cparse(const char *s, uint32_t *port)
{
    return vsock_connect_parse(s, strlen(s), port);
}

static void test_connect_parse(void **state)
{
    uint32_t port = 0;
    assert_int_equal(cparse("CONNECT 1024\n", &port), 0);
    assert_int_equal(port, 1024);
    assert_int_equal(cparse("CONNECT 0\n", &port), 0);
    assert_int_equal(port, 0);
    assert_int_equal(cparse("CONNECT 4294967295\n", &port), 0);
    assert_int_equal(port, UINT32_MAX);
    assert_int_equal(cparse("CONNECT 1024", &port), -EAGAIN); /* no newline yet */
    assert_int_equal(cparse("CONN", &port), -EAGAIN);
    assert_int_equal(cparse("", &port), -EAGAIN);
    assert_int_equal(cparse("CONNECT 4294967296\n", &port), -EINVAL); /* > u32 */
    assert_int_equal(cparse("CONNECT 99999999999\n", &port), -EINVAL);
    assert_int_equal(cparse("CONNECT abc\n", &port), -EINVAL);
    assert_int_equal(cparse("CONNECT 12a\n", &port), -EINVAL);
    assert_int_equal(cparse("CONNECT -1\n", &port), -EINVAL);
    assert_int_equal(cparse("CONNECT +1\n", &port), -EINVAL);
    assert_int_equal(cparse("CONNECT \n", &port), -EINVAL);
    assert_int_equal(cparse("CONNECT  1\n", &port), -EINVAL);
    assert_int_equal(cparse("CONNECT 1 \n", &port), -EINVAL);
    assert_int_equal(cparse("CONNECT 1\r\n", &port), -EINVAL);
    assert_int_equal(cparse("connect 1\n", &port), -EINVAL);
    assert_int_equal(cparse("CONNECT 1\nxyz", &port), -EINVAL); /* garbage after the line */
    assert_int_equal(cparse("\n", &port), -EINVAL);
    char longline[VSOCK_CONNECT_MAX + 8];
    memset(longline, '1', sizeof(longline));
    memcpy(longline, "CONNECT ", 8);
    assert_int_equal(vsock_connect_parse(longline, VSOCK_CONNECT_MAX, &port), -EINVAL);
    char nul[] = "CONNECT 1\0\n";
    assert_int_equal(vsock_connect_parse(nul, sizeof(nul) - 1, &port), -EINVAL);
    char ok[16];
    assert_int_equal(vsock_ok_format(1073741824, ok, sizeof(ok)), 14);
    assert_string_equal(ok, "OK 1073741824\n");
}

/* ---- the engine over fake I/O ---- */

struct fake {
    struct vsock_mux m;
    int connect_result;      /* fd (>= 100) or -errno for the next guest connect */
    uint32_t connected_port; /* last port asked for */
    size_t write_room;       /* bytes the host socket takes before EAGAIN */
    int write_err;           /* if non-zero, writes fail with it */
    uint8_t written[1 << 20];
    size_t nwritten;
    unsigned nwrites;
    size_t first_write_len;
    const uint8_t *rdata; /* bytes the host has for us; then rd_end (0 = EOF, -EAGAIN) */
    size_t rlen;
    int rd_end;
    int open_fds; /* connect results minus closes */
    int closes, shut_wr;
    uint32_t want[256];
};

static int f_connect(void *o, uint32_t port)
{
    struct fake *f = o;
    f->connected_port = port;
    if (f->connect_result >= 0)
        f->open_fds++;
    return f->connect_result;
}

static ssize_t f_read(void *o, int fd, void *buf, size_t len)
{
    struct fake *f = o;
    if (f->rlen == 0)
        return f->rd_end;
    size_t n = len < f->rlen ? len : f->rlen;
    memcpy(buf, f->rdata, n);
    f->rdata += n;
    f->rlen -= n;
    return (ssize_t)n;
}

static ssize_t f_write(void *o, int fd, const void *buf, size_t len)
{
    struct fake *f = o;
    if (f->write_err)
        return -f->write_err;
    if (f->write_room == 0)
        return -EAGAIN;
    size_t n = len < f->write_room ? len : f->write_room;
    assert_true(f->nwritten + n <= sizeof(f->written));
    memcpy(f->written + f->nwritten, buf, n);
    if (f->nwrites++ == 0)
        f->first_write_len = n;
    f->nwritten += n;
    f->write_room -= n;
    return (ssize_t)n;
}

static void f_shutdown(void *o, int fd)
{
    ((struct fake *)o)->shut_wr++;
}

static void f_close(void *o, struct vsock_conn *c)
{
    struct fake *f = o;
    f->closes++;
    f->open_fds--;
}

static void f_watch(void *o, struct vsock_conn *c)
{
    struct fake *f = o;
    f->want[c->fd & 255] = c->want;
}

static const struct vsock_io fake_io = {f_connect, f_read, f_write, f_shutdown, f_close, f_watch};

static int fake_setup(void **state)
{
    struct fake *f = calloc(1, sizeof(*f));
    vsock_mux_init(&f->m, GUEST_CID, &fake_io, f);
    f->connect_result = 100;
    f->write_room = SIZE_MAX;
    f->rd_end = -EAGAIN;
    *state = f;
    return 0;
}

static int fake_teardown(void **state)
{
    struct fake *f = *state;
    vsock_mux_reset(&f->m);
    assert_int_equal(f->open_fds, 0); /* every fd closed */
    free(f);
    return 0;
}

/* Send a guest packet to the engine. */
static void g_send(struct fake *f, uint32_t gport, uint32_t hport, uint16_t op, uint32_t flags,
                   uint32_t buf_alloc, uint32_t fwd_cnt, const void *data, uint32_t len)
{
    static uint8_t pkt[VSOCK_HDR_SIZE + VSOCK_MAX_PKT_BYTES];
    struct vsock_hdr h = {GUEST_CID,         2,  gport, hport,     len,
                          VSOCK_TYPE_STREAM, op, flags, buf_alloc, fwd_cnt};
    vsock_hdr_encode(&h, pkt);
    if (len)
        memcpy(pkt + VSOCK_HDR_SIZE, data, len);
    vsock_mux_tx(&f->m, pkt, VSOCK_HDR_SIZE + len);
}

/* Take the engine's next packet for the guest; returns false if none. */
static bool g_recv(struct fake *f, struct vsock_hdr *h, uint8_t *payload, size_t cap)
{
    static uint8_t pkt[VSOCK_HDR_SIZE + VSOCK_MAX_PKT_BYTES];
    size_t n = vsock_mux_rx(&f->m, pkt, VSOCK_HDR_SIZE + cap);
    if (n == 0)
        return false;
    const char *why;
    /* parse as the guest would: swap roles by using the host cid as "guest" */
    struct vsock_hdr tmp;
    (void)vsock_hdr_parse(pkt, n - VSOCK_HDR_SIZE, VSOCK_HOST_CID, &tmp, &why);
    *h = tmp;
    assert_int_equal(h->src_cid, 2);
    assert_int_equal(h->dst_cid, GUEST_CID);
    assert_int_equal(n, VSOCK_HDR_SIZE + h->len);
    if (payload && h->len)
        memcpy(payload, pkt + VSOCK_HDR_SIZE, h->len);
    return true;
}

static void test_mux_guest_connect(void **state)
{
    struct fake *f = *state;
    struct vsock_hdr h;
    g_send(f, 5000, 1024, VSOCK_OP_REQUEST, 0, 65536, 0, NULL, 0);
    assert_int_equal(f->connected_port, 1024);
    assert_true(g_recv(f, &h, NULL, 0));
    assert_int_equal(h.op, VSOCK_OP_RESPONSE);
    assert_int_equal(h.src_port, 1024);
    assert_int_equal(h.dst_port, 5000);
    assert_int_equal(h.buf_alloc, VSOCK_BUF_ALLOC_BYTES);
    assert_false(g_recv(f, &h, NULL, 0));
    assert_int_equal(f->want[100], VSOCK_WANT_READ);

    f->connect_result = -ECONNREFUSED; /* nothing listening on the host */
    g_send(f, 5001, 1025, VSOCK_OP_REQUEST, 0, 65536, 0, NULL, 0);
    assert_true(g_recv(f, &h, NULL, 0));
    assert_int_equal(h.op, VSOCK_OP_RST);
    assert_int_equal(h.dst_port, 5001);
    assert_int_equal(f->m.nconns, 1);

    /* A packet for no connection gets an RST; an RST for none gets nothing. */
    g_send(f, 6000, 7, VSOCK_OP_RW, 0, 65536, 0, "x", 1);
    assert_true(g_recv(f, &h, NULL, 0));
    assert_int_equal(h.op, VSOCK_OP_RST);
    g_send(f, 6000, 7, VSOCK_OP_RST, 0, 0, 0, NULL, 0);
    assert_false(g_recv(f, &h, NULL, 0));

    /* The guest resets the connection: fd closed, state gone. */
    g_send(f, 5000, 1024, VSOCK_OP_RST, 0, 0, 0, NULL, 0);
    assert_int_equal(f->m.nconns, 0);
    assert_int_equal(f->open_fds, 0);
}

/* Restored with a new CID: the guest answers from its old one until it reads the new one;
 * after its first packet from the new CID, the old one is dropped again. */
static void test_mux_prev_cid_after_restore(void **state)
{
    struct fake *f = *state;
    static uint8_t pkt[VSOCK_HDR_SIZE];
    struct vsock_hdr h;
    f->m.prev_cid = 9; /* the fixture's guest is GUEST_CID */
    f->open_fds++;
    assert_int_equal(vsock_mux_connect(&f->m, 101, 1024), 0);
    assert_true(g_recv(f, &h, NULL, 0));
    struct vsock_hdr r = {9, 2,     1024, h.src_port, 0, VSOCK_TYPE_STREAM, VSOCK_OP_RESPONSE,
                          0, 65536, 0};
    vsock_hdr_encode(&r, pkt);
    vsock_mux_tx(&f->m, pkt, sizeof(pkt));
    assert_int_equal(f->nwritten, 14); /* "OK ...": the old CID's answer was taken */
    g_send(f, 1024, h.src_port, VSOCK_OP_CREDIT_UPDATE, 0, 65536, 0, NULL, 0); /* new CID */
    assert_int_equal(f->m.prev_cid, 0);
    while (g_recv(f, &h, NULL, 0)) /* whatever the host had queued */
        ;
    r.op = VSOCK_OP_RW;
    r.len = 0;
    r.src_port = 5000; /* no connection: would earn an RST if the CID were taken */
    vsock_hdr_encode(&r, pkt);
    vsock_mux_tx(&f->m, pkt, sizeof(pkt));
    assert_false(g_recv(f, &h, NULL, 0));
}

static void test_mux_host_connect(void **state)
{
    struct fake *f = *state;
    struct vsock_hdr h;
    f->open_fds++; /* the host client's fd */
    assert_int_equal(vsock_mux_connect(&f->m, 101, 1024), 0);
    assert_true(g_recv(f, &h, NULL, 0));
    assert_int_equal(h.op, VSOCK_OP_REQUEST);
    assert_int_equal(h.dst_port, 1024);
    assert_int_equal(h.src_port, VSOCK_EPHEMERAL_FIRST);
    assert_int_equal(f->want[101], 0); /* nothing read before the guest answers */

    f->rdata = (const uint8_t *)"early";
    f->rlen = 5;
    g_send(f, 1024, h.src_port, VSOCK_OP_RESPONSE, 0, 65536, 0, NULL, 0);
    assert_int_equal(f->nwritten, 14);
    assert_memory_equal(f->written, "OK 1073741824\n", 14);
    /* guest bytes go in a later write than the OK line */
    g_send(f, 1024, h.src_port, VSOCK_OP_RW, 0, 65536, 0, "hello", 5);
    assert_int_equal(f->first_write_len, 14);
    assert_memory_equal(f->written + 14, "hello", 5);
    assert_int_equal(f->want[101], VSOCK_WANT_READ);
    vsock_mux_host_event(&f->m, vsock_mux_find(&f->m, VSOCK_EPHEMERAL_FIRST, 1024), true, false,
                         false);
    uint8_t buf[64];
    assert_true(g_recv(f, &h, buf, sizeof(buf)));
    assert_int_equal(h.op, VSOCK_OP_RW);
    assert_int_equal(h.len, 5);
    assert_memory_equal(buf, "early", 5);
    assert_int_equal(h.fwd_cnt, 5); /* we forwarded "hello" */

    /* A second client gets the next port; the guest refuses it: the client is closed. */
    f->open_fds++;
    assert_int_equal(vsock_mux_connect(&f->m, 102, 1024), 0);
    assert_true(g_recv(f, &h, NULL, 0));
    assert_int_equal(h.src_port, VSOCK_EPHEMERAL_FIRST + 1);
    int closes = f->closes;
    g_send(f, 1024, h.src_port, VSOCK_OP_RST, 0, 0, 0, NULL, 0);
    assert_int_equal(f->closes, closes + 1);
    assert_int_equal(f->m.nconns, 1);
}

static void test_mux_connect_timeout(void **state)
{
    struct fake *f = *state;
    struct vsock_hdr h;
    f->open_fds += 2;
    f->m.now_ms = 1000;
    assert_int_equal(vsock_mux_connect(&f->m, 101, 1024), 0); /* never delivered */
    assert_int_equal(vsock_mux_next_deadline(&f->m), 1000 + VSOCK_CONNECT_TIMEOUT_MS);
    f->m.now_ms = 1000 + VSOCK_CONNECT_TIMEOUT_MS;
    vsock_mux_expire(&f->m);
    assert_int_equal(f->m.nconns, 0);
    assert_false(g_recv(f, &h, NULL, 0)); /* the REQUEST never left: no RST either */

    assert_int_equal(vsock_mux_connect(&f->m, 102, 1024), 0);
    assert_true(g_recv(f, &h, NULL, 0));   /* REQUEST delivered, guest silent */
    vsock_mux_shift_deadlines(&f->m, 500); /* a pause does not count */
    f->m.now_ms += VSOCK_CONNECT_TIMEOUT_MS;
    vsock_mux_expire(&f->m);
    assert_int_equal(f->m.nconns, 1);
    f->m.now_ms += 500;
    vsock_mux_expire(&f->m);
    assert_int_equal(f->m.nconns, 0);
    assert_true(g_recv(f, &h, NULL, 0));
    assert_int_equal(h.op, VSOCK_OP_RST);
}

/* An established guest-initiated connection 5000 -> 1024 on fake fd 100. */
static struct vsock_conn *establish(struct fake *f, uint32_t guest_buf)
{
    struct vsock_hdr h;
    g_send(f, 5000, 1024, VSOCK_OP_REQUEST, 0, guest_buf, 0, NULL, 0);
    assert_true(g_recv(f, &h, NULL, 0));
    assert_int_equal(h.op, VSOCK_OP_RESPONSE);
    return vsock_mux_find(&f->m, 1024, 5000);
}

static void test_mux_credit_host_to_guest(void **state)
{
    struct fake *f = *state;
    static uint8_t data[100000], buf[VSOCK_MAX_PKT_BYTES];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 7);
    struct vsock_conn *c = establish(f, 10000);
    f->rdata = data;
    f->rlen = sizeof(data);
    vsock_mux_host_event(&f->m, c, true, false, false);
    struct vsock_hdr h;
    size_t got = 0;
    while (g_recv(f, &h, buf, 4096)) {
        assert_int_equal(h.op, VSOCK_OP_RW);
        assert_memory_equal(buf, data + got, h.len);
        got += h.len;
    }
    assert_int_equal(got, 10000); /* exactly the guest's credit, never more */
    assert_int_equal(vsock_conn_peer_credit(c), 0);
    assert_int_equal(f->want[100], 0); /* no credit: the socket is not watched */

    /* The guest consumed 6000 bytes and says so. */
    g_send(f, 5000, 1024, VSOCK_OP_CREDIT_UPDATE, 0, 10000, 6000, NULL, 0);
    while (g_recv(f, &h, buf, sizeof(buf))) {
        assert_memory_equal(buf, data + got, h.len);
        got += h.len;
    }
    assert_int_equal(got, 16000);
    /* A bigger buffer, all consumed: the rest flows, then the host's EAGAIN stops it. */
    g_send(f, 5000, 1024, VSOCK_OP_CREDIT_UPDATE, 0, 1 << 20, 16000, NULL, 0);
    while (g_recv(f, &h, buf, sizeof(buf))) {
        assert_true(h.len <= VSOCK_MAX_PKT_BYTES);
        assert_memory_equal(buf, data + got, h.len);
        got += h.len;
    }
    assert_int_equal(got, sizeof(data));
    assert_int_equal(f->want[100], VSOCK_WANT_READ);
    /* The guest lowering its buffer below what is in flight is not an underflow. */
    g_send(f, 5000, 1024, VSOCK_OP_CREDIT_UPDATE, 0, 10, 16000, NULL, 0);
    assert_int_equal(vsock_conn_peer_credit(c), 0);
}

static void test_mux_credit_guest_to_host(void **state)
{
    struct fake *f = *state;
    static uint8_t data[VSOCK_BUF_ALLOC_BYTES + 1];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 13 + 1);
    struct vsock_conn *c = establish(f, 65536);
    struct vsock_hdr h;

    /* The host takes 1000 bytes, then blocks: the rest is buffered, fwd_cnt counts 1000. */
    f->write_room = 1000;
    uint32_t sent = 0;
    while (sent < VSOCK_BUF_ALLOC_BYTES) {
        g_send(f, 5000, 1024, VSOCK_OP_RW, 0, 65536, 0, data + sent, 32768);
        sent += 32768;
    }
    assert_int_equal(c->fwd_cnt, 1000);
    assert_int_equal(c->buf_len, VSOCK_BUF_ALLOC_BYTES - 1000);
    assert_int_equal(f->want[100], VSOCK_WANT_READ | VSOCK_WANT_WRITE);
    /* The guest saw 256 KiB free, used it all: it is owed a credit update. */
    assert_true(g_recv(f, &h, NULL, 0));
    assert_int_equal(h.op, VSOCK_OP_CREDIT_UPDATE);
    assert_int_equal(h.fwd_cnt, 1000);
    assert_false(g_recv(f, &h, NULL, 0));

    /* The host drains: everything arrives in order, fwd_cnt follows. */
    f->write_room = SIZE_MAX;
    vsock_mux_host_event(&f->m, c, false, true, false);
    assert_int_equal(f->nwritten, VSOCK_BUF_ALLOC_BYTES);
    assert_memory_equal(f->written, data, VSOCK_BUF_ALLOC_BYTES);
    assert_int_equal(c->fwd_cnt, VSOCK_BUF_ALLOC_BYTES);
    assert_null(c->buf); /* idle connections hold no buffer */
    assert_int_equal(f->want[100], VSOCK_WANT_READ);
    assert_true(g_recv(f, &h, NULL, 0));
    assert_int_equal(h.op, VSOCK_OP_CREDIT_UPDATE);
    assert_int_equal(h.fwd_cnt, VSOCK_BUF_ALLOC_BYTES);

    /* Credit request: answered even with nothing new. */
    g_send(f, 5000, 1024, VSOCK_OP_CREDIT_REQUEST, 0, 65536, 0, NULL, 0);
    assert_true(g_recv(f, &h, NULL, 0));
    assert_int_equal(h.op, VSOCK_OP_CREDIT_UPDATE);
    assert_int_equal(h.buf_alloc, VSOCK_BUF_ALLOC_BYTES);

    /* Overrunning the credit is a protocol error: RST, fd closed. */
    f->write_room = 0;
    for (int i = 0; i < 4; i++)
        g_send(f, 5000, 1024, VSOCK_OP_RW, 0, 65536, 0, data, 65536);
    assert_non_null(vsock_mux_find(&f->m, 1024, 5000));
    g_send(f, 5000, 1024, VSOCK_OP_RW, 0, 65536, 0, data, 1);
    assert_null(vsock_mux_find(&f->m, 1024, 5000));
    assert_true(g_recv(f, &h, NULL, 0));
    assert_int_equal(h.op, VSOCK_OP_RST);
}

static void test_mux_shutdown(void **state)
{
    struct fake *f = *state;
    struct vsock_hdr h;
    struct vsock_conn *c = establish(f, 65536);

    /* Guest half-close: after the pending bytes reach the host, the host write side shuts. */
    f->write_room = 3;
    g_send(f, 5000, 1024, VSOCK_OP_RW, 0, 65536, 0, "abcdef", 6);
    g_send(f, 5000, 1024, VSOCK_OP_SHUTDOWN, VSOCK_SHUTDOWN_SEND, 65536, 0, NULL, 0);
    assert_int_equal(f->shut_wr, 0);
    f->write_room = SIZE_MAX;
    vsock_mux_host_event(&f->m, c, false, true, false);
    assert_int_equal(f->shut_wr, 1);
    assert_memory_equal(f->written, "abcdef", 6);
    /* A second connection for later. */
    struct vsock_conn *c2;
    f->connect_result = 101;
    g_send(f, 5001, 1025, VSOCK_OP_REQUEST, 0, 65536, 0, NULL, 0);
    assert_true(g_recv(f, &h, NULL, 0));
    assert_int_equal(h.op, VSOCK_OP_RESPONSE);

    /* Host EOF: SHUTDOWN(SEND) only (half-close); the host can still receive. */
    f->rd_end = 0;
    vsock_mux_host_event(&f->m, c, true, false, false);
    assert_false(g_recv(f, &h, NULL, 0)); /* a header-only buffer cannot take data or EOF */
    assert_true(g_recv(f, &h, NULL, 64));
    assert_int_equal(h.op, VSOCK_OP_SHUTDOWN);
    assert_int_equal(h.flags, VSOCK_SHUTDOWN_SEND);
    assert_false(g_recv(f, &h, NULL, 0));
    assert_int_equal(f->want[100], 0); /* nothing to read or write */
    /* Guest closes fully: RST, fd closed. */
    g_send(f, 5000, 1024, VSOCK_OP_SHUTDOWN, VSOCK_SHUTDOWN_BOTH, 65536, 0, NULL, 0);
    assert_null(vsock_mux_find(&f->m, 1024, 5000));
    assert_true(g_recv(f, &h, NULL, 0));
    assert_int_equal(h.op, VSOCK_OP_RST);
    assert_int_equal(h.dst_port, 5000);

    /* Host hangs up completely: SHUTDOWN(both), then RST after the close timeout. */
    f->connect_result = 102;
    g_send(f, 5002, 1026, VSOCK_OP_REQUEST, 0, 65536, 0, NULL, 0);
    assert_true(g_recv(f, &h, NULL, 0));
    assert_int_equal(h.op, VSOCK_OP_RESPONSE);
    c2 = vsock_mux_find(&f->m, 1026, 5002);
    assert_non_null(c2);
    vsock_mux_host_event(&f->m, c2, true, false, true);
    assert_true(g_recv(f, &h, NULL, 64));
    assert_int_equal(h.op, VSOCK_OP_SHUTDOWN);
    assert_int_equal(h.flags, VSOCK_SHUTDOWN_BOTH);
    f->m.now_ms += VSOCK_CLOSE_TIMEOUT_MS;
    vsock_mux_expire(&f->m);
    assert_null(vsock_mux_find(&f->m, 1026, 5002));
    assert_true(g_recv(f, &h, NULL, 0));
    assert_int_equal(h.op, VSOCK_OP_RST);

    /* Guest full shutdown with bytes still pending: flushed first, then RST. */
    c2 = vsock_mux_find(&f->m, 1025, 5001);
    f->write_room = 0;
    g_send(f, 5001, 1025, VSOCK_OP_RW, 0, 65536, 0, "zz", 2);
    g_send(f, 5001, 1025, VSOCK_OP_SHUTDOWN, VSOCK_SHUTDOWN_BOTH, 65536, 0, NULL, 0);
    assert_non_null(vsock_mux_find(&f->m, 1025, 5001));
    size_t before = f->nwritten;
    f->write_room = SIZE_MAX;
    vsock_mux_host_event(&f->m, c2, false, true, false);
    assert_int_equal(f->nwritten, before + 2);
    assert_null(vsock_mux_find(&f->m, 1025, 5001));
    assert_true(g_recv(f, &h, NULL, 0));
    assert_int_equal(h.op, VSOCK_OP_RST);
}

static void test_mux_protocol_errors(void **state)
{
    struct fake *f = *state;
    struct vsock_hdr h;
    establish(f, 65536);
    /* A second REQUEST for a live connection kills it. */
    g_send(f, 5000, 1024, VSOCK_OP_REQUEST, 0, 65536, 0, NULL, 0);
    assert_int_equal(f->m.nconns, 0);
    assert_true(g_recv(f, &h, NULL, 0));
    assert_int_equal(h.op, VSOCK_OP_RST);
    /* RESPONSE on a guest-initiated connection. */
    establish(f, 65536);
    g_send(f, 5000, 1024, VSOCK_OP_RESPONSE, 0, 65536, 0, NULL, 0);
    assert_int_equal(f->m.nconns, 0);
    assert_true(g_recv(f, &h, NULL, 0));
    assert_int_equal(h.op, VSOCK_OP_RST);
    /* Host write error: RST to the guest. */
    establish(f, 65536);
    f->write_err = EPIPE;
    g_send(f, 5000, 1024, VSOCK_OP_RW, 0, 65536, 0, "x", 1);
    assert_int_equal(f->m.nconns, 0);
    assert_true(g_recv(f, &h, NULL, 0));
    assert_int_equal(h.op, VSOCK_OP_RST);
    /* Table full: the 1025th request is refused. */
    f->write_err = 0;
    for (uint32_t i = 0; i < VSOCK_MAX_CONNS + 1; i++) {
        f->connect_result = 100 + (int)i;
        g_send(f, 10000 + i, 1024, VSOCK_OP_REQUEST, 0, 65536, 0, NULL, 0);
    }
    assert_int_equal(f->m.nconns, VSOCK_MAX_CONNS);
    assert_int_equal(f->open_fds, VSOCK_MAX_CONNS);
    assert_int_equal(vsock_mux_connect(&f->m, 7, 1), -ENOSPC);
}

/* Round robin: two connections with data alternate. */
static void test_mux_round_robin(void **state)
{
    struct fake *f = *state;
    struct vsock_hdr h;
    static uint8_t data[1 << 16];
    struct vsock_conn *a = establish(f, 1 << 20);
    f->connect_result = 101;
    g_send(f, 5001, 1024, VSOCK_OP_REQUEST, 0, 1 << 20, 0, NULL, 0);
    assert_true(g_recv(f, &h, NULL, 0));
    struct vsock_conn *b = vsock_mux_find(&f->m, 1024, 5001);
    f->rdata = data;
    f->rlen = sizeof(data);
    vsock_mux_host_event(&f->m, a, true, false, false);
    vsock_mux_host_event(&f->m, b, true, false, false);
    uint32_t last = 0;
    for (int i = 0; i < 6; i++) {
        assert_true(g_recv(f, &h, NULL, 1024));
        assert_int_equal(h.op, VSOCK_OP_RW);
        assert_int_not_equal(h.dst_port, last);
        last = h.dst_port;
    }
}

int main(void)
{
#define F(fn) cmocka_unit_test_setup_teardown(fn, fake_setup, fake_teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hdr_roundtrip),
        cmocka_unit_test(test_hdr_hostile),
        cmocka_unit_test(test_connect_parse),
        F(test_mux_guest_connect),
        F(test_mux_host_connect),
        F(test_mux_prev_cid_after_restore),
        F(test_mux_connect_timeout),
        F(test_mux_credit_host_to_guest),
        F(test_mux_credit_guest_to_host),
        F(test_mux_shutdown),
        F(test_mux_protocol_errors),
        F(test_mux_round_robin),
    };
    log_set_level(LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
