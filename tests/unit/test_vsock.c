/* Unit tests for virtio-vsock: wire format, CONNECT parser, the connection engine over fake
 * I/O, then the device end to end over fake guest memory and real Unix sockets. */
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

#include "devices/virtio/vsock.h"
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

/* ---- the device end to end: a fake guest driver over fake guest memory ---- */

#include "tests/unit/virtio_test_ring.h"

#define RAM_BYTES  (64ULL << 20)
#define QSZ        128
#define RX_BUF(i)  (0x100000ULL + (uint64_t)(i)*0x2000)
#define RX_BUF_LEN (VSOCK_HDR_SIZE + 4096)
#define TX_BUF(i)  (0x400000ULL + (uint64_t)(i)*0x11000)
#define GUEST_BUF  (64u * 1024) /* the fake guest socket's buf_alloc */

/* The guest side: the driver's rings and one guest socket's state. */
struct gd {
    struct guest_mem mem;
    struct loop loop;
    struct virtio_dev d;
    struct test_ring rx, tx, ev;
    uint16_t rx_seen;
    char dir[64], path[108];

    uint32_t gport, hport; /* the socket the model tracks */
    unsigned nops[8];      /* packets seen per op, for that socket */
    uint32_t req_src, req_dst;
    uint32_t shut_flags;
    bool hold; /* guest application not reading: fwd_cnt stands still */
    uint32_t rx_total, fwd_cnt, fwd_sent;
    uint32_t peer_buf_alloc, peer_fwd_cnt, tx_cnt;
    uint8_t *rx_data; /* received stream (for checks), rx_cap bytes */
    size_t rx_cap;
};

static void gw32(struct gd *g, uint64_t off, uint32_t v)
{
    virtio_mmio_io(&g->d, off, (uint8_t *)&v, 4, true);
}

static void ring_at(struct gd *g, struct test_ring *r, uint64_t base)
{
    *r = (struct test_ring){
        .mem = &g->mem, .size = QSZ, .desc = base, .avail = base + 0x1000, .used = base + 0x2000};
    memset(mem_ptr(&g->mem, base, 0x3000), 0, 0x3000);
}

static void queue_up(struct gd *g, unsigned q, struct test_ring *r)
{
    gw32(g, VIRTIO_MMIO_QUEUE_SEL, q);
    gw32(g, VIRTIO_MMIO_QUEUE_NUM, QSZ);
    gw32(g, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)r->desc);
    gw32(g, VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)r->avail);
    gw32(g, VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)r->used);
    gw32(g, VIRTIO_MMIO_QUEUE_READY, 1);
}

static void post_rx(struct gd *g, uint16_t i)
{
    tr_desc(&g->rx, i, RX_BUF(i), RX_BUF_LEN, VIRTQ_DESC_F_WRITE, 0);
    tr_publish(&g->rx, i);
}

static void gd_send(struct gd *g, uint16_t op, uint32_t flags, const void *data, uint32_t len);

/* One packet from the device to the guest socket model. */
static void gd_handle(struct gd *g, const uint8_t *pkt, uint32_t n)
{
    struct vsock_hdr h;
    const char *why;
    assert_true(n >= VSOCK_HDR_SIZE);
    (void)vsock_hdr_parse(pkt, n - VSOCK_HDR_SIZE, VSOCK_HOST_CID, &h, &why);
    assert_int_equal(h.src_cid, 2);
    assert_int_equal(h.dst_cid, GUEST_CID);
    assert_int_equal(n, VSOCK_HDR_SIZE + h.len);
    if (h.op == VSOCK_OP_REQUEST) {
        g->req_src = h.src_port;
        g->req_dst = h.dst_port;
    }
    if (h.dst_port != g->gport || h.src_port != g->hport) {
        if (h.op < 8)
            g->nops[0]++; /* someone else's */
        return;
    }
    g->nops[h.op < 8 ? h.op : 0]++;
    g->peer_buf_alloc = h.buf_alloc;
    g->peer_fwd_cnt = h.fwd_cnt;
    if (h.op == VSOCK_OP_SHUTDOWN)
        g->shut_flags |= h.flags;
    if (h.op != VSOCK_OP_RW)
        return;
    /* The device must never exceed the credit we advertised. */
    assert_true(g->rx_total - g->fwd_cnt + h.len <= GUEST_BUF);
    if (g->rx_data) {
        assert_true(g->rx_total + h.len <= g->rx_cap);
        memcpy(g->rx_data + g->rx_total, pkt + VSOCK_HDR_SIZE, h.len);
    }
    g->rx_total += h.len;
    if (!g->hold)
        g->fwd_cnt = g->rx_total;
    if (g->fwd_cnt - g->fwd_sent >= GUEST_BUF / 4)
        gd_send(g, VSOCK_OP_CREDIT_UPDATE, 0, NULL, 0);
}

/* Consume the used rx ring, hand each packet to the model and give the buffer back. */
static bool gd_poll_rx(struct gd *g)
{
    bool any = false;
    while (g->rx_seen != tr_used_idx(&g->rx)) {
        uint16_t id = (uint16_t)tr_used_id(&g->rx, g->rx_seen);
        uint32_t len = tr_used_len(&g->rx, g->rx_seen);
        g->rx_seen++;
        assert_true(id < QSZ && len <= RX_BUF_LEN);
        gd_handle(g, mem_ptr(&g->mem, RX_BUF(id), RX_BUF_LEN), len);
        post_rx(g, id);
        any = true;
    }
    if (any)
        gw32(g, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    return any;
}

/* Run the device until nothing happens for a moment. A timer the device armed may still be
 * pending afterwards: waits for host-visible effects go through host_read, not pump alone. */
static void pump(struct gd *g)
{
    int idle = 0;
    for (unsigned rounds = 0; idle < 2; rounds++) {
        if (rounds > 1000000)
            fail_msg("the device never went idle: a watch or timer keeps firing");
        int n = loop_run_once(&g->loop, 0);
        bool any = gd_poll_rx(g);
        idle = (n > 0 || any) ? 0 : idle + 1;
    }
}

static void gd_send_to(struct gd *g, uint32_t sport, uint32_t dport, uint16_t op, uint32_t flags,
                       const void *data, uint32_t len)
{
    uint16_t slot = g->tx.avail_idx % QSZ;
    uint8_t *buf = mem_ptr(&g->mem, TX_BUF(slot), VSOCK_HDR_SIZE + VSOCK_MAX_PKT_BYTES);
    struct vsock_hdr h = {GUEST_CID,         2,  sport, dport,     len,
                          VSOCK_TYPE_STREAM, op, flags, GUEST_BUF, g->fwd_cnt};
    vsock_hdr_encode(&h, buf);
    if (len)
        memcpy(buf + VSOCK_HDR_SIZE, data, len);
    if (sport == g->gport && dport == g->hport)
        g->fwd_sent = g->fwd_cnt;
    tr_desc(&g->tx, slot, TX_BUF(slot), VSOCK_HDR_SIZE + len, 0, 0);
    tr_publish(&g->tx, slot);
    gw32(g, VIRTIO_MMIO_QUEUE_NOTIFY, 1);
    for (int i = 0; i < 1000 && tr_used_idx(&g->tx) != g->tx.avail_idx; i++)
        loop_run_once(&g->loop, 10);
    assert_int_equal(tr_used_idx(&g->tx), g->tx.avail_idx);
}

static void gd_send(struct gd *g, uint16_t op, uint32_t flags, const void *data, uint32_t len)
{
    if (op == VSOCK_OP_RW)
        g->tx_cnt += len;
    gd_send_to(g, g->gport, g->hport, op, flags, data, len);
}

static uint32_t gd_credit(const struct gd *g)
{
    uint32_t used = g->tx_cnt - g->peer_fwd_cnt;
    return used >= g->peer_buf_alloc ? 0 : g->peer_buf_alloc - used;
}

static void gd_track(struct gd *g, uint32_t gport, uint32_t hport)
{
    g->gport = gport;
    g->hport = hport;
    memset(g->nops, 0, sizeof(g->nops));
    g->shut_flags = 0;
    g->rx_total = g->fwd_cnt = g->fwd_sent = 0;
    g->peer_buf_alloc = g->peer_fwd_cnt = g->tx_cnt = 0;
}

static int gd_setup(void **state)
{
    struct gd *g = calloc(1, sizeof(*g));
    log_set_level(LOG_ERROR);
    if (!g || mem_init(&g->mem, RAM_BYTES) || loop_init(&g->loop))
        return -1;
    strcpy(g->dir, "/tmp/amber-vsock-XXXXXX");
    if (!mkdtemp(g->dir))
        return -1;
    snprintf(g->path, sizeof(g->path), "%s/v.sock", g->dir);
    struct vsock_config cfg = {.enabled = true, .cid = GUEST_CID};
    snprintf(cfg.uds_path, sizeof(cfg.uds_path), "%s", g->path);
    char err[256];
    if (vsock_create(&g->d, &cfg, &g->mem, &g->loop, 0xd0000000, 5, err, sizeof(err))) {
        fprintf(stderr, "vsock_create: %s\n", err);
        return -1;
    }
    gw32(g, VIRTIO_MMIO_STATUS, 0);
    gw32(g, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    gw32(g, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    gw32(g, VIRTIO_MMIO_DRIVER_FEATURES, 1);
    gw32(g, VIRTIO_MMIO_STATUS,
         VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
    ring_at(g, &g->rx, 0x10000);
    ring_at(g, &g->tx, 0x20000);
    ring_at(g, &g->ev, 0x30000);
    queue_up(g, 0, &g->rx);
    queue_up(g, 1, &g->tx);
    queue_up(g, 2, &g->ev);
    gw32(g, VIRTIO_MMIO_STATUS,
         VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
             VIRTIO_STATUS_DRIVER_OK);
    for (uint16_t i = 0; i < QSZ; i++)
        post_rx(g, i);
    gw32(g, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    pump(g);
    *state = g;
    return 0;
}

static int gd_teardown(void **state)
{
    struct gd *g = *state;
    virtio_dev_destroy(&g->d);
    loop_destroy(&g->loop);
    mem_free(&g->mem);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", g->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cleanup of %s failed\n", g->dir);
    free(g->rx_data);
    free(g);
    return 0;
}

#define HOST_WAIT_MS 5000 /* how long a host-side read waits for the device */

/* A last line of defence: no blocking socket call in these tests can wait forever. */
static void set_timeout(int fd)
{
    struct timeval tv = {.tv_sec = 1};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * Read what the device sends to a host socket. The test is the device's only thread: a
 * blocking read() would stop the loop that has to produce the bytes (a deferred reset waits
 * on a timer, which may fire after pump() went idle), so it would hang for good. Instead run
 * the loop while polling the fd, read without blocking, and fail with a message after
 * HOST_WAIT_MS. Returns what recv returned (0 at EOF, -1 with errno on a socket error).
 */
static ssize_t host_read(struct gd *g, int fd, void *buf, size_t len, const char *what)
{
    uint64_t deadline = mono_ms() + HOST_WAIT_MS;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 0) > 0) {
            ssize_t n = recv(fd, buf, len, MSG_DONTWAIT);
            if (n >= 0 || (errno != EAGAIN && errno != EINTR))
                return n;
        }
        if (mono_ms() >= deadline)
            fail_msg("%s: nothing to read on host fd %d after %d ms", what, fd, HOST_WAIT_MS);
        loop_run_once(&g->loop, 10);
        gd_poll_rx(g);
    }
}

/* accept() with the same bound. */
static int accept_within(int lfd, const char *what)
{
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    if (poll(&p, 1, HOST_WAIT_MS) != 1)
        fail_msg("%s: no connection to accept after %d ms", what, HOST_WAIT_MS);
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    assert_true(fd >= 0);
    return fd;
}

static int client_connect(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    set_timeout(fd);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

static void set_nonblock(int fd)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* Host CONNECT, guest RESPONSE, then the OK line. Returns the client fd (non-blocking). */
static int host_open(struct gd *g, uint32_t port, const char *extra)
{
    int fd = client_connect(g->path);
    char line[64];
    int n = snprintf(line, sizeof(line), "CONNECT %u\n%s", port, extra);
    assert_int_equal(write(fd, line, (size_t)n), n);
    g->req_src = 0;
    pump(g);
    assert_int_equal(g->req_dst, port);
    assert_true(g->req_src >= VSOCK_EPHEMERAL_FIRST);
    gd_track(g, port, g->req_src);
    gd_send(g, VSOCK_OP_RESPONSE, 0, NULL, 0);
    char ok[32];
    n = (int)host_read(g, fd, ok, sizeof(ok), "OK line");
    char want[32];
    int wn = snprintf(want, sizeof(want), "OK %u\n", g->hport);
    assert_int_equal(n, wn); /* the OK line alone, nothing behind it */
    assert_memory_equal(ok, want, (size_t)wn);
    set_nonblock(fd);
    return fd;
}

static uint8_t stream_byte(uint64_t i, unsigned seed)
{
    uint64_t x = (i >> 3) * 0x9E3779B97F4A7C15ULL + seed;
    x ^= x >> 29;
    x *= 0xBF58476D1CE4E5B9ULL;
    return (uint8_t)(x >> (8 * (i & 7)));
}

static void test_dev_identity(void **state)
{
    struct gd *g = *state;
    uint32_t v = 0;
    virtio_mmio_io(&g->d, VIRTIO_MMIO_DEVICE_ID, (uint8_t *)&v, 4, false);
    assert_int_equal(v, VIRTIO_ID_VSOCK);
    uint64_t cid = 0;
    virtio_mmio_io(&g->d, VIRTIO_MMIO_CONFIG, (uint8_t *)&cid, 8, false);
    assert_int_equal(cid, GUEST_CID);
    v = 0;
    virtio_mmio_io(&g->d, VIRTIO_MMIO_CONFIG + 4, (uint8_t *)&v, 4, false);
    assert_int_equal(v, 0);
}

/* A few MB both ways at once, a slow host reader, a slow guest reader: nothing lost. */
static void test_dev_bulk_both_ways(void **state)
{
    struct gd *g = *state;
    const size_t total = 3u << 20;
    g->rx_cap = total + 16;
    g->rx_data = malloc(g->rx_cap);
    int fd = host_open(g, 1024, "early");
    pump(g);
    assert_int_equal(g->rx_total, 5); /* bytes behind the CONNECT line were kept */
    assert_memory_equal(g->rx_data, "early", 5);
    g->rx_total = g->fwd_cnt = 0;
    gd_send(g, VSOCK_OP_CREDIT_UPDATE, 0, NULL, 0);

    static uint8_t chunk[65536];
    size_t g_sent = 0, h_recv = 0, h_sent = 0;
    for (int iter = 0; iter < 200000 && (h_recv < total || g->rx_total < total); iter++) {
        /* Phases: the host stops reading for a while, later the guest does. */
        bool host_slow = iter >= 100 && iter < 300;
        g->hold = iter >= 10 && iter < 60;
        if (!g->hold && g->fwd_cnt != g->rx_total) {
            g->fwd_cnt = g->rx_total;
            gd_send(g, VSOCK_OP_CREDIT_UPDATE, 0, NULL, 0);
        }
        uint32_t cr = gd_credit(g);
        size_t n = total - g_sent < 16384 ? total - g_sent : 16384;
        if (n > cr)
            n = cr;
        if (n) {
            for (size_t i = 0; i < n; i++)
                chunk[i] = stream_byte(g_sent + i, 1);
            gd_send(g, VSOCK_OP_RW, 0, chunk, (uint32_t)n);
            g_sent += n;
        }
        if (h_sent < total) {
            size_t m = total - h_sent < sizeof(chunk) ? total - h_sent : sizeof(chunk);
            for (size_t i = 0; i < m; i++)
                chunk[i] = stream_byte(h_sent + i, 2);
            ssize_t w = write(fd, chunk, m);
            if (w > 0)
                h_sent += (size_t)w;
        }
        if (!host_slow) {
            ssize_t r = recv(fd, chunk, sizeof(chunk), MSG_DONTWAIT);
            for (ssize_t i = 0; i < r; i++)
                assert_int_equal(chunk[i], stream_byte(h_recv + (size_t)i, 1));
            if (r > 0)
                h_recv += (size_t)r;
        } else if (iter == 299) {
            /* Stalled on credit, not on loss: in flight is bounded by our buf_alloc plus
             * what the kernel socket holds. */
            assert_int_equal(gd_credit(g), 0);
        }
        pump(g);
    }
    assert_int_equal(h_recv, total);
    assert_int_equal(g->rx_total, total);
    for (size_t i = 0; i < total; i++)
        if (g->rx_data[i] != stream_byte(i, 2))
            fail_msg("guest stream differs at byte %zu", i);
    assert_int_equal(g->nops[VSOCK_OP_RST], 0);

    /* Host closes: the guest hears SHUTDOWN(both), answers RST like Linux. */
    close(fd);
    pump(g);
    assert_int_equal(g->shut_flags, VSOCK_SHUTDOWN_BOTH);
    gd_send(g, VSOCK_OP_RST, 0, NULL, 0);
    pump(g);
}

static void test_dev_guest_connect(void **state)
{
    struct gd *g = *state;
    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    assert_true(strlen(g->path) + 6 < sizeof(sa.sun_path));
    memcpy(sa.sun_path, g->path, strlen(g->path));
    memcpy(sa.sun_path + strlen(g->path), "_5000", 6);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(lfd, 4), 0);

    gd_track(g, 7777, 5000);
    gd_send(g, VSOCK_OP_REQUEST, 0, NULL, 0);
    pump(g);
    assert_int_equal(g->nops[VSOCK_OP_RESPONSE], 1);
    int sfd = accept_within(lfd, "guest connect");
    set_timeout(sfd);
    gd_send(g, VSOCK_OP_RW, 0, "ping", 4);
    char buf[8];
    assert_int_equal(host_read(g, sfd, buf, sizeof(buf), "ping"), 4);
    assert_memory_equal(buf, "ping", 4);
    g->rx_data = malloc(16);
    g->rx_cap = 16;
    assert_int_equal(write(sfd, "pong", 4), 4);
    pump(g);
    assert_int_equal(g->rx_total, 4);
    assert_memory_equal(g->rx_data, "pong", 4);

    /* Host half-close: SHUTDOWN(SEND); the guest can still send. */
    shutdown(sfd, SHUT_WR);
    pump(g);
    assert_int_equal(g->shut_flags, VSOCK_SHUTDOWN_SEND);
    gd_send(g, VSOCK_OP_RW, 0, "more", 4);
    assert_int_equal(host_read(g, sfd, buf, sizeof(buf), "more"), 4);
    /* Guest closes: the host sees EOF, the guest gets its RST. */
    gd_send(g, VSOCK_OP_SHUTDOWN, VSOCK_SHUTDOWN_BOTH, NULL, 0);
    pump(g);
    assert_int_equal(g->nops[VSOCK_OP_RST], 1);
    assert_int_equal(host_read(g, sfd, buf, sizeof(buf), "EOF after guest close"), 0);
    close(sfd);

    /* No listener on port 5001: RST. */
    gd_track(g, 7778, 5001);
    gd_send(g, VSOCK_OP_REQUEST, 0, NULL, 0);
    pump(g);
    assert_int_equal(g->nops[VSOCK_OP_RST], 1);
    assert_int_equal(g->nops[VSOCK_OP_RESPONSE], 0);
    close(lfd);
}

static void test_dev_host_refused_and_bad_line(void **state)
{
    struct gd *g = *state;
    /* Nothing listens in the guest: the client is closed. */
    int fd = client_connect(g->path);
    assert_int_equal(write(fd, "CONNECT 99\n", 11), 11);
    pump(g);
    assert_int_equal(g->req_dst, 99);
    gd_track(g, 99, g->req_src);
    gd_send(g, VSOCK_OP_RST, 0, NULL, 0);
    pump(g);
    char buf[8];
    assert_int_equal(host_read(g, fd, buf, sizeof(buf), "EOF after guest RST"), 0);
    close(fd);
    /* A malformed line: closed without a word to the guest. */
    g->req_dst = 0;
    fd = client_connect(g->path);
    assert_int_equal(write(fd, "CONNECT x\n", 10), 10);
    pump(g);
    assert_int_equal(host_read(g, fd, buf, sizeof(buf), "EOF after a bad line"), 0);
    assert_int_equal(g->req_dst, 0);
    close(fd);
    /* Too long without a newline. */
    fd = client_connect(g->path);
    assert_int_equal(write(fd, "CONNECT 000000000000000000000000000000000001", 44), 44);
    pump(g);
    /* EOF, or ECONNRESET: bytes left unread */
    assert_true(host_read(g, fd, buf, sizeof(buf), "close after a long line") <= 0);
    close(fd);
}

static void test_dev_quiesce(void **state)
{
    struct gd *g = *state;
    g->rx_data = malloc(4096);
    g->rx_cap = 4096;
    int fd = host_open(g, 1024, "");
    assert_int_equal(write(fd, "before", 6), 6);
    virtio_dev_quiesce(&g->d);
    assert_int_equal(write(fd, "-during", 7), 7);
    int fd2 = client_connect(g->path); /* the kernel completes it; nobody serves it */
    assert_int_equal(write(fd2, "CONNECT 2048\n", 13), 13);
    uint16_t used = tr_used_idx(&g->rx);
    g->req_dst = 0;
    for (int i = 0; i < 20; i++) /* no fd is watched: nothing fires, nothing spins */
        assert_int_equal(loop_run_once(&g->loop, 5), 0);
    assert_int_equal(tr_used_idx(&g->rx), used); /* no queue touched, nothing read */
    assert_int_equal(g->rx_total, 0);
    virtio_dev_resume(&g->d);
    pump(g);
    assert_int_equal(g->rx_total, 13);
    assert_memory_equal(g->rx_data, "before-during", 13);
    assert_int_equal(g->req_dst, 2048); /* the waiting client is served now */
    close(fd);
    close(fd2);
    pump(g);
}

/* A driver reset (from a vCPU thread) closes every host connection, on the loop. */
static void test_dev_reset(void **state)
{
    struct gd *g = *state;
    int fd = host_open(g, 1024, "");
    gw32(g, VIRTIO_MMIO_STATUS, 0);
    pump(g);
    char c; /* the teardown runs on the loop, after a timer: wait for it, bounded */
    assert_int_equal(host_read(g, fd, &c, 1, "EOF after driver reset"), 0);
    close(fd);
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

static void test_dev_fd_churn(void **state)
{
    struct gd *g = *state;
    int before = count_fds();
    for (int i = 0; i < 2000; i++) {
        int fd = host_open(g, 1024, "");
        if (i % 2) {
            close(fd); /* host closes first: SHUTDOWN(both), guest answers RST */
            pump(g);
            assert_int_equal(g->shut_flags, VSOCK_SHUTDOWN_BOTH);
            gd_send(g, VSOCK_OP_RST, 0, NULL, 0);
        } else {
            /* guest closes first: RST back, the client sees EOF */
            gd_send(g, VSOCK_OP_SHUTDOWN, VSOCK_SHUTDOWN_BOTH, NULL, 0);
            pump(g);
            assert_int_equal(g->nops[VSOCK_OP_RST], 1);
            char c;
            assert_int_equal(host_read(g, fd, &c, 1, "EOF after guest shutdown"), 0);
            close(fd);
        }
        pump(g);
    }
    assert_int_equal(count_fds(), before);
}

int main(void)
{
#define F(fn) cmocka_unit_test_setup_teardown(fn, fake_setup, fake_teardown)
#define D(fn) cmocka_unit_test_setup_teardown(fn, gd_setup, gd_teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hdr_roundtrip),
        cmocka_unit_test(test_hdr_hostile),
        cmocka_unit_test(test_connect_parse),
        F(test_mux_guest_connect),
        F(test_mux_host_connect),
        F(test_mux_connect_timeout),
        F(test_mux_credit_host_to_guest),
        F(test_mux_credit_guest_to_host),
        F(test_mux_shutdown),
        F(test_mux_protocol_errors),
        F(test_mux_round_robin),
        D(test_dev_identity),
        D(test_dev_bulk_both_ways),
        D(test_dev_guest_connect),
        D(test_dev_host_refused_and_bad_line),
        D(test_dev_quiesce),
        D(test_dev_reset),
        D(test_dev_fd_churn),
    };
    log_set_level(LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
