/* Pause and resume at every step of a vsock stream, with a guest driver that behaves like
 * Linux's (EVENT_IDX, interrupts read through ISR, kicks only when avail_event asks): any lost
 * kick or interrupt around quiesce/resume shows as a stream that stops. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "devices/virtio/virtio.h"
#include "devices/virtio/vsock.h"
#include "devices/virtio/vsock_mux.h"
#include "devices/virtio/vsock_proto.h"
#include "tests/unit/virtio_test_ring.h"
#include "vmm/log.h"

#define GUEST_CID   3
#define RAM_BYTES   (64ULL << 20)
#define QSZ         64
#define RX_BUF(i)   (0x100000ULL + (uint64_t)(i)*0x2000)
#define RX_BUF_LEN  (VSOCK_HDR_SIZE + 4096)
#define TX_BUF(i)   (0x400000ULL + (uint64_t)(i)*0x5000)
#define TX_CHUNK    16384
#define GUEST_BUF   (256u * 1024) /* Linux's default buf_alloc */
#define GPORT       1024
#define STALL_STEPS 4000 /* steps without progress that count as a stall */

enum { RXQ, TXQ, EVQ };

/* The driver's view of one queue (Linux's vring_virtqueue, split ring, EVENT_IDX). */
struct dq {
    struct test_ring r;
    uint16_t last_used; /* next used entry the driver reads */
    uint16_t kick_old;  /* avail idx at the last kick decision */
};

struct model {
    struct guest_mem mem;
    struct loop loop;
    struct virtio_dev d;
    struct dq q[3];
    char dir[64], path[108];
    int host_fd;
    uint32_t hport;
    /* guest socket */
    uint32_t rx_total, fwd_cnt, fwd_sent, tx_cnt, peer_buf_alloc, peer_fwd_cnt;
    unsigned rx_posted, tx_free;
    bool connected;
    /* the two streams */
    size_t total, g_sent, h_recv, h_sent;
    /* pause schedule: a pause at point `pause_at`, or every point with odds 1/pause_odds */
    unsigned long points, pause_at;
    unsigned pause_odds, pauses;
    uint64_t rng;
    bool in_pause;
    unsigned kicks, irqs;
    unsigned credit_updates, credit_stalls; /* from the device; guest found no credit */
    unsigned long steps; /* phases: the host or the guest application stops reading a while */
    bool host_slow, guest_hold;
};

static uint8_t stream_byte(uint64_t i, unsigned seed)
{
    uint64_t x = (i >> 3) * 0x9E3779B97F4A7C15ULL + seed;
    x ^= x >> 29;
    x *= 0xBF58476D1CE4E5B9ULL;
    return (uint8_t)(x >> (8 * (i & 7)));
}

static void w32(struct model *m, uint64_t off, uint32_t v)
{
    virtio_mmio_io(&m->d, off, (uint8_t *)&v, 4, true);
}

static uint32_t r32(struct model *m, uint64_t off)
{
    uint32_t v = 0;
    virtio_mmio_io(&m->d, off, (uint8_t *)&v, 4, false);
    return v;
}

static uint64_t next_rand(struct model *m)
{
    m->rng ^= m->rng << 13;
    m->rng ^= m->rng >> 7;
    m->rng ^= m->rng << 17;
    return m->rng;
}

static void host_io(struct model *m);

/* A point where the vCPUs may be stopped: the guest is frozen in the middle of what it does
 * while the host keeps writing and reading and the loop keeps running. */
static void point(struct model *m)
{
    if (m->in_pause)
        return;
    m->points++;
    bool now = m->pause_odds ? next_rand(m) % m->pause_odds == 0 : m->points == m->pause_at;
    if (!now)
        return;
    m->in_pause = true;
    m->pauses++;
    virtio_dev_quiesce(&m->d);
    for (int i = 0; i < 3; i++) {
        host_io(m);
        loop_run_once(&m->loop, 0);
    }
    virtio_dev_resume(&m->d);
    m->in_pause = false;
}

static bool need_event(uint16_t event, uint16_t new_idx, uint16_t old)
{
    return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old);
}

/* virtqueue_kick: full barrier, then kick only if the device's avail_event lies in (old, new]. */
static void dq_kick(struct model *m, unsigned qi)
{
    struct dq *q = &m->q[qi];
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    uint16_t old = q->kick_old, new_idx = q->r.avail_idx;
    q->kick_old = new_idx;
    point(m);
    if (need_event(tr_avail_event(&q->r), new_idx, old)) {
        w32(m, VIRTIO_MMIO_QUEUE_NOTIFY, qi);
        m->kicks++;
    }
}

/* virtqueue_enable_cb: ask for an interrupt at the next entry; true if none came meanwhile. */
static bool dq_enable_cb(struct model *m, unsigned qi)
{
    struct dq *q = &m->q[qi];
    tr_set_used_event(&q->r, q->last_used);
    point(m);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    return tr_used_idx(&q->r) == q->last_used;
}

static void post_rx(struct model *m, uint16_t i)
{
    tr_desc(&m->q[RXQ].r, i, RX_BUF(i), RX_BUF_LEN, VIRTQ_DESC_F_WRITE, 0);
    tr_publish(&m->q[RXQ].r, i);
    m->rx_posted++;
}

/* A packet on the tx queue; the caller kicks. */
static void guest_send(struct model *m, uint16_t op, const void *data, uint32_t len)
{
    struct dq *q = &m->q[TXQ];
    assert_true(m->tx_free > 0);
    uint16_t slot = q->r.avail_idx % QSZ;
    uint8_t *buf = mem_ptr(&m->mem, TX_BUF(slot), VSOCK_HDR_SIZE + TX_CHUNK);
    struct vsock_hdr h = {GUEST_CID, VSOCK_HOST_CID, GPORT, m->hport, len, VSOCK_TYPE_STREAM, op, 0,
                          GUEST_BUF, m->fwd_cnt};
    vsock_hdr_encode(&h, buf);
    if (len)
        memcpy(buf + VSOCK_HDR_SIZE, data, len);
    m->fwd_sent = m->fwd_cnt;
    tr_desc(&q->r, slot, TX_BUF(slot), VSOCK_HDR_SIZE + len, 0, 0);
    m->tx_free--;
    tr_publish(&q->r, slot);
    point(m);
}

/* One packet from the device, as virtio_transport_recv_pkt would take it. */
static void guest_recv(struct model *m, const uint8_t *pkt, uint32_t n)
{
    struct vsock_hdr h;
    const char *why;
    assert_true(n >= VSOCK_HDR_SIZE);
    (void)vsock_hdr_parse(pkt, n - VSOCK_HDR_SIZE, VSOCK_HOST_CID, &h, &why);
    assert_int_equal(n, VSOCK_HDR_SIZE + h.len);
    if (h.op == VSOCK_OP_REQUEST) {
        m->hport = h.src_port;
        m->connected = true;
        guest_send(m, VSOCK_OP_RESPONSE, NULL, 0);
        dq_kick(m, TXQ);
        return;
    }
    assert_int_equal(h.dst_port, GPORT);
    assert_int_equal(h.src_port, m->hport);
    assert_int_not_equal(h.op, VSOCK_OP_RST); /* the stream must survive every pause */
    assert_int_not_equal(h.op, VSOCK_OP_SHUTDOWN);
    m->peer_buf_alloc = h.buf_alloc;
    m->peer_fwd_cnt = h.fwd_cnt;
    m->credit_updates += h.op == VSOCK_OP_CREDIT_UPDATE;
    if (h.op != VSOCK_OP_RW)
        return;
    /* Linux drops what overruns its buf_alloc: the device must never send it. */
    assert_true(m->rx_total - m->fwd_cnt + h.len <= GUEST_BUF);
    for (uint32_t i = 0; i < h.len; i++)
        if (pkt[VSOCK_HDR_SIZE + i] != stream_byte(m->rx_total + i, 2))
            fail_msg("guest stream differs at byte %u", m->rx_total + i);
    m->rx_total += h.len;
    if (!m->guest_hold)
        m->fwd_cnt = m->rx_total; /* the application reads at once */
}

/* virtio_vsock rx_work: take used buffers until enable_cb finds none, refill below half. */
static void rx_work(struct model *m)
{
    struct dq *q = &m->q[RXQ];
    do {
        while (q->last_used != tr_used_idx(&q->r)) {
            uint16_t id = (uint16_t)tr_used_id(&q->r, q->last_used);
            uint32_t len = tr_used_len(&q->r, q->last_used);
            q->last_used++;
            m->rx_posted--;
            assert_true(id < QSZ && len <= RX_BUF_LEN);
            guest_recv(m, mem_ptr(&m->mem, RX_BUF(id), RX_BUF_LEN), len);
        }
        if (m->rx_posted < QSZ / 2) {
            while (m->rx_posted < QSZ)
                post_rx(m, (uint16_t)(q->r.avail_idx % QSZ));
            point(m);
            dq_kick(m, RXQ);
        }
    } while (!dq_enable_cb(m, RXQ));
}

/* virtio_transport_tx_work: reclaim sent buffers. */
static void tx_work(struct model *m)
{
    struct dq *q = &m->q[TXQ];
    do {
        while (q->last_used != tr_used_idx(&q->r)) {
            q->last_used++;
            m->tx_free++;
        }
    } while (!dq_enable_cb(m, TXQ));
}

/* The interrupt handler (vm_interrupt): ISR read and acked, then every queue with used
 * entries gets its callback. Returns true if an interrupt was taken. */
static bool guest_irq(struct model *m)
{
    uint64_t v;
    if (read(m->d.irq_fd, &v, sizeof(v)) != sizeof(v))
        return false;
    m->irqs++;
    uint32_t isr = r32(m, VIRTIO_MMIO_INTERRUPT_STATUS);
    point(m);
    w32(m, VIRTIO_MMIO_INTERRUPT_ACK, isr);
    if (!(isr & VIRTIO_ISR_USED))
        return true;
    if (m->q[RXQ].last_used != tr_used_idx(&m->q[RXQ].r))
        rx_work(m);
    if (m->q[TXQ].last_used != tr_used_idx(&m->q[TXQ].r))
        tx_work(m);
    return true;
}

static uint32_t guest_credit(const struct model *m)
{
    uint32_t used = m->tx_cnt - m->peer_fwd_cnt;
    return used >= m->peer_buf_alloc ? 0 : m->peer_buf_alloc - used;
}

/* What the guest does when it runs: interrupts first, then its application sends. */
static void guest_run(struct model *m)
{
    while (guest_irq(m))
        ;
    if (!m->connected)
        return;
    bool added = false;
    if (!m->guest_hold)
        m->fwd_cnt = m->rx_total;
    /* virtio_transport_stream_do_dequeue: tell the host once free space looks short. */
    if (m->fwd_cnt != m->fwd_sent && GUEST_BUF - (m->fwd_cnt - m->fwd_sent) < VSOCK_MAX_PKT_BYTES &&
        m->tx_free > 0) {
        guest_send(m, VSOCK_OP_CREDIT_UPDATE, NULL, 0);
        added = true;
    }
    static uint8_t chunk[TX_CHUNK];
    while (m->g_sent < m->total && m->tx_free > 0 && guest_credit(m) > 0) {
        size_t n = m->total - m->g_sent < TX_CHUNK ? m->total - m->g_sent : TX_CHUNK;
        if (n > guest_credit(m))
            n = guest_credit(m);
        for (size_t i = 0; i < n; i++)
            chunk[i] = stream_byte(m->g_sent + i, 1);
        m->tx_cnt += (uint32_t)n;
        m->g_sent += n;
        guest_send(m, VSOCK_OP_RW, chunk, (uint32_t)n);
        added = true;
    }
    m->credit_stalls += m->g_sent < m->total && guest_credit(m) == 0;
    if (added)
        dq_kick(m, TXQ);
}

/* The host end writes its stream and reads the guest's, never blocking. */
static void host_io(struct model *m)
{
    static uint8_t chunk[32768];
    if (m->host_fd < 0)
        return;
    if (m->h_sent < m->total) {
        size_t n = m->total - m->h_sent < sizeof(chunk) ? m->total - m->h_sent : sizeof(chunk);
        for (size_t i = 0; i < n; i++)
            chunk[i] = stream_byte(m->h_sent + i, 2);
        ssize_t w = send(m->host_fd, chunk, n, MSG_DONTWAIT);
        if (w > 0)
            m->h_sent += (size_t)w;
    }
    if (m->host_slow)
        return;
    ssize_t r = recv(m->host_fd, chunk, sizeof(chunk), MSG_DONTWAIT);
    assert_true(r != 0); /* EOF: the device closed the stream */
    for (ssize_t i = 0; i < r; i++)
        if (chunk[i] != stream_byte(m->h_recv + (size_t)i, 1))
            fail_msg("host stream differs at byte %zu", m->h_recv + (size_t)i);
    if (r > 0)
        m->h_recv += (size_t)r;
}

static void queue_up(struct model *m, unsigned qi, uint64_t base)
{
    struct dq *q = &m->q[qi];
    q->r = (struct test_ring){
        .mem = &m->mem, .size = QSZ, .desc = base, .avail = base + 0x1000, .used = base + 0x2000};
    memset(mem_ptr(&m->mem, base, 0x3000), 0, 0x3000);
    w32(m, VIRTIO_MMIO_QUEUE_SEL, qi);
    w32(m, VIRTIO_MMIO_QUEUE_NUM, QSZ);
    w32(m, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)q->r.desc);
    w32(m, VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)q->r.avail);
    w32(m, VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)q->r.used);
    w32(m, VIRTIO_MMIO_QUEUE_READY, 1);
}

static struct model *model_new(size_t total)
{
    struct model *m = calloc(1, sizeof(*m));
    assert_non_null(m);
    m->host_fd = -1;
    m->total = total;
    m->tx_free = QSZ;
    assert_int_equal(mem_init(&m->mem, RAM_BYTES), 0);
    assert_int_equal(loop_init(&m->loop), 0);
    strcpy(m->dir, "/tmp/amber-vsockp-XXXXXX");
    assert_non_null(mkdtemp(m->dir));
    snprintf(m->path, sizeof(m->path), "%s/v.sock", m->dir);
    struct vsock_config cfg = {.enabled = true, .cid = GUEST_CID};
    snprintf(cfg.uds_path, sizeof(cfg.uds_path), "%s", m->path);
    char err[256];
    assert_int_equal(vsock_create(&m->d, &cfg, &m->mem, &m->loop, 0xd0000000, 5, err, sizeof(err)),
                     0);
    w32(m, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    w32(m, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    w32(m, VIRTIO_MMIO_DRIVER_FEATURES, 1u << VIRTIO_F_EVENT_IDX);
    w32(m, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    w32(m, VIRTIO_MMIO_DRIVER_FEATURES, 1); /* VERSION_1 */
    w32(m, VIRTIO_MMIO_STATUS,
        VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
    queue_up(m, RXQ, 0x10000);
    queue_up(m, TXQ, 0x20000);
    queue_up(m, EVQ, 0x30000);
    w32(m, VIRTIO_MMIO_STATUS,
        VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
            VIRTIO_STATUS_DRIVER_OK);
    assert_true(virtio_has_feature(&m->d, VIRTIO_F_EVENT_IDX));
    for (uint16_t i = 0; i < QSZ; i++)
        post_rx(m, i);
    dq_kick(m, RXQ);
    for (int i = 0; i < 10; i++)
        loop_run_once(&m->loop, 0);
    return m;
}

static void model_free(struct model *m)
{
    if (m->host_fd >= 0)
        close(m->host_fd);
    virtio_dev_destroy(&m->d);
    loop_destroy(&m->loop);
    mem_free(&m->mem);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", m->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cleanup of %s failed\n", m->dir);
    free(m);
}

/* Host CONNECT, then the guest (through its driver model) answers; returns once OK is read. */
static void host_connect(struct model *m)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", m->path);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    char line[32];
    int n = snprintf(line, sizeof(line), "CONNECT %u\n", GPORT);
    assert_int_equal(write(fd, line, (size_t)n), n);
    char ok[32];
    size_t got = 0;
    for (int i = 0; i < 100000 && (got == 0 || ok[got - 1] != '\n'); i++) {
        loop_run_once(&m->loop, 0);
        guest_run(m);
        ssize_t r = recv(fd, ok + got, 1, MSG_DONTWAIT); /* the OK line only, byte by byte */
        if (r > 0)
            got += (size_t)r;
    }
    assert_true(got > 3 && memcmp(ok, "OK ", 3) == 0);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    m->host_fd = fd;
}

/* Run both streams to the end; fail with the device's state if they stop moving. */
static void run_streams(struct model *m)
{
    size_t last = 0;
    unsigned idle = 0;
    while (m->h_recv < m->total || m->rx_total < m->total) {
        m->steps++;
        m->host_slow = m->steps % 40 < 12;
        m->guest_hold = m->steps % 64 >= 40 && m->steps % 64 < 52;
        loop_run_once(&m->loop, 0);
        point(m);
        host_io(m);
        point(m);
        guest_run(m);
        size_t progress = m->h_recv + m->rx_total + m->g_sent + m->h_sent;
        idle = progress == last ? idle + 1 : 0;
        last = progress;
        if (idle > STALL_STEPS) {
            log_set_level(LOG_INFO);
            virtio_dev_dump(&m->d);
            fail_msg("streams stalled: guest sent %zu, host got %zu; host sent %zu, guest got %u "
                     "of %zu; %u pauses, %u kicks, %u irqs, schedule point %lu",
                     m->g_sent, m->h_recv, m->h_sent, m->rx_total, m->total, m->pauses, m->kicks,
                     m->irqs, m->pause_at);
        }
    }
    assert_int_equal(m->h_recv, m->total);
    assert_int_equal(m->rx_total, m->total);
}

/* The model alone, without pauses, carries both streams (else the tests below prove nothing). */
static void test_streams_without_pause(void **state)
{
    (void)state;
    struct model *m = model_new(2u << 20);
    host_connect(m);
    run_streams(m);
    assert_int_equal(m->pauses, 0);
    assert_true(m->irqs > 0 && m->kicks > 0);
    /* Both directions ran out of credit and came back: the slow phases did their job. */
    assert_true(m->credit_updates > 0 && m->credit_stalls > 0);
    model_free(m);
}

/* One pause at each point in turn, over the whole of a shorter run: the connection, every
 * packet, kick and interrupt gets a pause in its middle once. */
static void test_one_pause_at_every_point(void **state)
{
    (void)state;
    struct model *m = model_new(256u << 10);
    host_connect(m);
    run_streams(m);
    unsigned long points = m->points;
    model_free(m);
    assert_true(points > 20);
    unsigned paused_runs = 0; /* a run may end before its point: timing varies a little */
    for (unsigned long at = 1; at <= points; at++) {
        m = model_new(256u << 10);
        m->pause_at = at;
        host_connect(m);
        run_streams(m);
        paused_runs += m->pauses;
        model_free(m);
    }
    assert_true(paused_runs > points / 2);
}

/* Many pauses at random points (fixed seeds) through longer streams. */
static void test_random_pauses(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 200; seed++) {
        struct model *m = model_new(1u << 20);
        m->rng = seed * 0x9E3779B97F4A7C15ULL;
        m->pause_odds = 4;
        host_connect(m);
        run_streams(m);
        assert_true(m->pauses > 5);
        model_free(m);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_streams_without_pause),
        cmocka_unit_test(test_one_pause_at_every_point),
        cmocka_unit_test(test_random_pauses),
    };
    log_set_level(LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
