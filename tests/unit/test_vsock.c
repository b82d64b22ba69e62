/* Unit tests for the virtio-vsock device end to end: a fake guest driver over fake guest memory,
 * real Unix sockets on the host side (the engine alone is in test_vsock_mux.c). */
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

/*
 * A guest that connects to closed host ports in a loop: every REQUEST still gets its RST, and
 * the host log (stderr, at info level) takes a bounded number of lines, not one per attempt.
 */
static void test_dev_refused_connect_flood_log_bounded(void **state)
{
    struct gd *g = *state;
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0 && dup2(fileno(tmp), STDERR_FILENO) >= 0);
    log_set_level(LOG_INFO);
    const unsigned attempts = 500;
    unsigned rsts = 0;
    uint64_t t0 = mono_ms();
    for (unsigned i = 0; i < attempts; i++) {
        gd_track(g, 8000 + i, 6000 + i);
        gd_send(g, VSOCK_OP_REQUEST, 0, NULL, 0);
        pump(g);
        rsts += g->nops[VSOCK_OP_RST];
    }
    uint64_t took_ms = mono_ms() - t0;
    log_set_level(LOG_ERROR);
    assert_true(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    assert_int_equal(rsts, attempts);

    static char text[1 << 20];
    rewind(tmp);
    size_t n = fread(text, 1, sizeof(text) - 1, tmp);
    text[n] = 0;
    fclose(tmp);
    unsigned lines = 0, refused = 0;
    for (char *p = text; (p = strchr(p, '\n')); p++)
        lines++;
    for (char *p = text; (p = strstr(p, "guest connect to")); p++)
        refused++;
    /* A burst, plus one refill (with its "suppressed" line) per second the loop took. */
    unsigned bound = LOG_RL_BURST + (unsigned)(took_ms / LOG_RL_INTERVAL_MS) + 1;
    if (refused > bound || lines > 2 * bound)
        fail_msg("%u attempts in %llu ms logged %u lines (%u refused-connect lines, bound %u):"
                 "\n%.2000s",
                 attempts, (unsigned long long)took_ms, lines, refused, bound, text);
    assert_true(refused >= 1);
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
#define D(fn) cmocka_unit_test_setup_teardown(fn, gd_setup, gd_teardown)
    const struct CMUnitTest tests[] = {
        D(test_dev_identity),      D(test_dev_bulk_both_ways),
        D(test_dev_guest_connect), D(test_dev_host_refused_and_bad_line),
        D(test_dev_quiesce),       D(test_dev_reset),
        D(test_dev_fd_churn),      D(test_dev_refused_connect_flood_log_bounded),
    };
    log_set_level(LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
