/* Unit tests for virtio-net: feature/offload/header logic, RX and TX over a socketpair, TAP. */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <pthread.h>
#include <sched.h>
#include <linux/virtio_net.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "devices/virtio/net.h"
#include "devices/virtio/net_priv.h"
#include "vmm/clock.h"
#include "devices/virtio/virtio.h"
#include "vmm/log.h"
#include "vmm/loop.h"
#include "vmm/mem.h"
#include "vmm/seccomp.h"

#define BIT(b) (1ULL << (b))

static void test_features_and_offloads(void **state)
{
    uint64_t plain = net_features_offered(false), off = net_features_offered(true);
    assert_true(plain & BIT(VIRTIO_NET_F_MAC));
    assert_true(plain & BIT(VIRTIO_NET_F_STATUS));
    assert_true(plain & BIT(VIRTIO_NET_F_MRG_RXBUF));
    assert_false(plain & BIT(VIRTIO_NET_F_CSUM));
    assert_false(plain & BIT(VIRTIO_NET_F_GUEST_TSO4));
    assert_true(off & BIT(VIRTIO_NET_F_GUEST_CSUM));
    assert_true(off & BIT(VIRTIO_NET_F_HOST_TSO6));
    assert_false(off & BIT(VIRTIO_NET_F_GUEST_UFO));

    assert_int_equal(net_tun_offload_flags(0), 0);
    assert_int_equal(net_tun_offload_flags(BIT(VIRTIO_NET_F_GUEST_CSUM)), TUN_F_CSUM);
    assert_int_equal(
        net_tun_offload_flags(BIT(VIRTIO_NET_F_GUEST_CSUM) | BIT(VIRTIO_NET_F_GUEST_TSO4)),
        TUN_F_CSUM | TUN_F_TSO4);
    /* TSO without checksum offload is meaningless: nothing. Host bits do not count. */
    assert_int_equal(net_tun_offload_flags(BIT(VIRTIO_NET_F_GUEST_TSO6)), 0);
    assert_int_equal(net_tun_offload_flags(off & ~BIT(VIRTIO_NET_F_GUEST_TSO4)),
                     TUN_F_CSUM | TUN_F_TSO6);
}

static void test_tx_hdr_check(void **state)
{
    uint8_t h[NET_HDR_LEN] = {0};
    uint64_t all = net_features_offered(true);
    assert_int_equal(net_tx_hdr_check(h, 0), 0);
    h[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    assert_int_equal(net_tx_hdr_check(h, 0), -EINVAL);
    assert_int_equal(net_tx_hdr_check(h, BIT(VIRTIO_NET_F_CSUM)), 0);
    h[0] = 0x80; /* unknown flag */
    assert_int_equal(net_tx_hdr_check(h, all), -EINVAL);
    h[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    h[1] = VIRTIO_NET_HDR_GSO_TCPV4;
    assert_int_equal(net_tx_hdr_check(h, BIT(VIRTIO_NET_F_CSUM)), -EINVAL);
    assert_int_equal(net_tx_hdr_check(h, all), 0);
    h[1] = VIRTIO_NET_HDR_GSO_TCPV6;
    assert_int_equal(net_tx_hdr_check(h, all & ~BIT(VIRTIO_NET_F_HOST_TSO6)), -EINVAL);
    h[1] = VIRTIO_NET_HDR_GSO_UDP;
    assert_int_equal(net_tx_hdr_check(h, all), -EINVAL);
    h[1] = VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_ECN;
    assert_int_equal(net_tx_hdr_check(h, all), -EINVAL);
}

/*
 * The frame goes out with the checked header copy, wherever the guest split its header: change
 * the guest's header bytes after net_tx_iov and the bytes sent still carry the copy.
 */
static void test_tx_sends_checked_copy(void **state)
{
    (void)state;
    uint8_t guest[12 + 40];
    for (size_t i = 0; i < sizeof(guest); i++)
        guest[i] = (uint8_t)(0x40 + i);
    /* Header split 5 + 9 (two payload bytes in the second descriptor), then the rest. */
    struct virtq_chain c = {.nout = 3, .out_len = sizeof(guest)};
    c.iov[0] = (struct iovec){guest, 5};
    c.iov[1] = (struct iovec){guest + 5, 9};
    c.iov[2] = (struct iovec){guest + 14, sizeof(guest) - 14};
    uint8_t hdr[NET_HDR_LEN] = {0}; /* the checked copy */
    struct iovec iov[VIRTQ_MAX_IOV + 1];
    int n = net_tx_iov(&c, hdr, iov);
    assert_int_equal(n, 3);
    assert_ptr_equal(iov[0].iov_base, hdr);
    memset(guest, VIRTIO_NET_HDR_GSO_TCPV4, NET_HDR_LEN); /* the guest rewrites its header */

    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
    assert_int_equal(writev(sv[0], iov, n), (ssize_t)sizeof(guest));
    uint8_t got[128];
    assert_int_equal(recv(sv[1], got, sizeof(got), 0), (ssize_t)sizeof(guest));
    assert_memory_equal(got, hdr, NET_HDR_LEN);
    assert_memory_equal(got + NET_HDR_LEN, guest + NET_HDR_LEN, sizeof(guest) - NET_HDR_LEN);

    /* A header descriptor of exactly NET_HDR_LEN bytes is skipped whole. */
    c.nout = 2;
    c.iov[0] = (struct iovec){guest, NET_HDR_LEN};
    c.iov[1] = (struct iovec){guest + NET_HDR_LEN, sizeof(guest) - NET_HDR_LEN};
    assert_int_equal(net_tx_iov(&c, hdr, iov), 2);
    assert_ptr_equal(iov[1].iov_base, guest + NET_HDR_LEN);
    close(sv[0]);
    close(sv[1]);
}

/* ---- Device over a SOCK_SEQPACKET socketpair standing in for the TAP. ---- */

#define QSZ 16

struct ring {
    uint64_t desc, avail, used;
    uint16_t avail_idx, next_desc;
};

struct env {
    struct guest_mem mem;
    struct loop loop;
    struct virtio_dev d;
    int peer;
    struct ring rq[2];
    uint64_t buf_gpa; /* bump allocator for buffers */
};

static uint16_t get16(struct env *e, uint64_t gpa)
{
    uint16_t v = 0;
    mem_read(&e->mem, gpa, &v, 2);
    return v;
}

static uint32_t get32(struct env *e, uint64_t gpa)
{
    uint32_t v = 0;
    mem_read(&e->mem, gpa, &v, 4);
    return v;
}

static void put16(struct env *e, uint64_t gpa, uint16_t v)
{
    mem_write(&e->mem, gpa, &v, 2);
}

/* Add a chain of n descriptors (gpa/len/writable) to queue q and publish it. */
static void add_chain(struct env *e, unsigned q, unsigned n, const uint64_t *gpa,
                      const uint32_t *len, bool writable)
{
    struct ring *r = &e->rq[q];
    uint16_t head = r->next_desc;
    for (unsigned i = 0; i < n; i++) {
        uint16_t idx = (uint16_t)((head + i) % QSZ), next = (uint16_t)((idx + 1) % QSZ);
        uint16_t flags = (uint16_t)((i + 1 < n ? 1 : 0) | (writable ? 2 : 0));
        uint8_t raw[16];
        memcpy(raw, &gpa[i], 8);
        memcpy(raw + 8, &len[i], 4);
        memcpy(raw + 12, &flags, 2);
        memcpy(raw + 14, &next, 2);
        mem_write(&e->mem, r->desc + 16 * (uint64_t)idx, raw, 16);
    }
    r->next_desc = (uint16_t)((head + n) % QSZ);
    put16(e, r->avail + 4 + 2 * (uint64_t)(r->avail_idx % QSZ), head);
    r->avail_idx++;
    put16(e, r->avail + 2, r->avail_idx);
}

static uint64_t add_rx_buffer(struct env *e, uint32_t len)
{
    uint64_t gpa = e->buf_gpa;
    e->buf_gpa += 0x10000;
    add_chain(e, NET_RXQ, 1, &gpa, &len, true);
    return gpa;
}

static void kick(struct env *e, unsigned q)
{
    pthread_mutex_lock(&e->d.lock);
    e->d.ops->queue_notify(&e->d, q);
    pthread_mutex_unlock(&e->d.lock);
}

static uint16_t used_idx(struct env *e, unsigned q)
{
    return get16(e, e->rq[q].used + 2);
}

static uint32_t used_len(struct env *e, unsigned q, uint16_t i)
{
    return get32(e, e->rq[q].used + 8 + 8 * (uint64_t)(i % QSZ));
}

static struct net *net_of_env(struct env *e)
{
    return e->d.priv;
}

static void env_start(struct env *e, uint64_t drop_features)
{
    e->d.driver_features = e->d.host_features & ~BIT(VIRTIO_F_EVENT_IDX) & ~drop_features;
    e->d.status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
                  VIRTIO_STATUS_DRIVER_OK;
    for (unsigned q = 0; q < 2; q++) {
        struct virtq *vq = &e->d.vq[q];
        vq->size = QSZ;
        vq->desc_gpa = e->rq[q].desc;
        vq->avail_gpa = e->rq[q].avail;
        vq->used_gpa = e->rq[q].used;
        vq->ready = true;
    }
}

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    assert_int_equal(mem_init(&e->mem, 16 << 20), 0);
    assert_int_equal(loop_init(&e->loop), 0);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK, 0, sv), 0);
    e->peer = sv[1];
    e->rq[0] = (struct ring){.desc = 0x1000, .avail = 0x2000, .used = 0x3000};
    e->rq[1] = (struct ring){.desc = 0x4000, .avail = 0x5000, .used = 0x6000};
    e->buf_gpa = 0x100000;
    struct net_config cfg = {
        .id = "eth0", .tap = "test", .has_mac = true, .mac = {0x02, 1, 2, 3, 4, 5}};
    char err[256];
    assert_int_equal(net_create_with_fd(&e->d, &cfg, sv[0], false, &e->mem, &e->loop, 0xd0001000, 6,
                                        err, sizeof(err)),
                     0);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    virtio_dev_destroy(&e->d);
    close(e->peer);
    loop_destroy(&e->loop);
    mem_free(&e->mem);
    free(e);
    return 0;
}

static void run_loop(struct env *e, int n)
{
    for (int i = 0; i < n; i++)
        loop_run_once(&e->loop, 5);
}

static void send_frame(struct env *e, size_t len, uint8_t seed)
{
    uint8_t buf[2048] = {0};
    for (size_t i = NET_HDR_LEN; i < len; i++)
        buf[i] = (uint8_t)(seed + i);
    assert_int_equal(send(e->peer, buf, len, 0), (ssize_t)len);
}

static void test_config(void **state)
{
    struct env *e = *state;
    uint8_t cfg[10];
    e->d.ops->config_read(&e->d, 0, cfg, 10);
    assert_memory_equal(cfg, ((uint8_t[]){0x02, 1, 2, 3, 4, 5}), 6);
    assert_int_equal(cfg[6] | cfg[7] << 8, VIRTIO_NET_S_LINK_UP);
    assert_false(e->d.host_features & BIT(VIRTIO_NET_F_CSUM)); /* not a TAP: no offloads */
}

static void test_tx(void **state)
{
    struct env *e = *state;
    env_start(e, 0);
    uint8_t frame[12 + 60];
    memset(frame, 0, 12);
    for (int i = 12; i < 72; i++)
        frame[i] = (uint8_t)i;
    mem_write(&e->mem, 0x200000, frame, 12);
    mem_write(&e->mem, 0x200100, frame + 12, 60);
    uint64_t g[2] = {0x200000, 0x200100};
    uint32_t l[2] = {12, 60};
    add_chain(e, NET_TXQ, 2, g, l, false);
    kick(e, NET_TXQ);
    uint8_t got[256];
    assert_int_equal(recv(e->peer, got, sizeof(got), 0), 72);
    assert_memory_equal(got, frame, 72);
    assert_int_equal(used_idx(e, NET_TXQ), 1);

    /* A GSO frame the guest could not have negotiated: dropped, chain still returned. */
    frame[1] = VIRTIO_NET_HDR_GSO_TCPV4;
    mem_write(&e->mem, 0x200000, frame, 12);
    add_chain(e, NET_TXQ, 2, g, l, false);
    kick(e, NET_TXQ);
    assert_int_equal(recv(e->peer, got, sizeof(got), 0), -1);
    assert_int_equal(used_idx(e, NET_TXQ), 2);
    assert_int_equal(e->d.status & VIRTIO_STATUS_NEEDS_RESET, 0);
}

static void test_rx_merged(void **state)
{
    struct env *e = *state;
    env_start(e, 0);
    struct net *n = net_of_env(e);
    /* A frame arrives before the guest has buffers: it waits, and we do not spin on it. */
    send_frame(e, 112, 7);
    kick(e, NET_RXQ);
    run_loop(e, 3);
    assert_false(n->watched && (n->watch_events & EPOLLIN));
    assert_int_equal(used_idx(e, NET_RXQ), 0);

    uint64_t b0 = add_rx_buffer(e, 48), b1 = add_rx_buffer(e, 48), b2 = add_rx_buffer(e, 48);
    kick(e, NET_RXQ);
    assert_int_equal(used_idx(e, NET_RXQ), 3);
    assert_int_equal(used_len(e, NET_RXQ, 0), 48);
    assert_int_equal(used_len(e, NET_RXQ, 1), 48);
    assert_int_equal(used_len(e, NET_RXQ, 2), 16);
    assert_int_equal(get16(e, b0 + 10), 3); /* num_buffers */
    uint8_t *p0 = mem_ptr(&e->mem, b0, 48), *p1 = mem_ptr(&e->mem, b1, 48);
    uint8_t *p2 = mem_ptr(&e->mem, b2, 16);
    assert_int_equal(p0[12], (uint8_t)(7 + 12));
    assert_int_equal(p1[0], (uint8_t)(7 + 48));
    assert_int_equal(p2[15], (uint8_t)(7 + 111));
    /* Buffers left and nothing to read: EPOLLIN stays armed. */
    add_rx_buffer(e, 1600);
    kick(e, NET_RXQ);
    assert_true(n->watched && (n->watch_events & EPOLLIN));
    send_frame(e, 80, 1);
    run_loop(e, 3);
    assert_int_equal(used_idx(e, NET_RXQ), 4);
    assert_int_equal(used_len(e, NET_RXQ, 3), 80);
}

static void test_rx_flood_waits(void **state)
{
    struct env *e = *state;
    env_start(e, 0);
    struct net *n = net_of_env(e);
    for (int i = 0; i < 5; i++)
        send_frame(e, 100, (uint8_t)i);
    add_rx_buffer(e, 1600);
    add_rx_buffer(e, 1600);
    kick(e, NET_RXQ);
    run_loop(e, 3);
    assert_int_equal(used_idx(e, NET_RXQ), 2);
    assert_false(n->watched && (n->watch_events & EPOLLIN));
    /* The other three wait (one read into our buffer, two in the socket), none lost. */
    for (int i = 0; i < 3; i++)
        add_rx_buffer(e, 1600);
    kick(e, NET_RXQ);
    run_loop(e, 3);
    assert_int_equal(used_idx(e, NET_RXQ), 5);
    uint8_t *last = mem_ptr(&e->mem, 0x100000 + 4 * 0x10000, 100);
    assert_int_equal(last[12], (uint8_t)(4 + 12));
}

/* Run the loop until queue q has used want chains (at most 5 s); returns the loop's wake-ups. */
static unsigned run_until_used(struct env *e, unsigned q, uint16_t want)
{
    unsigned wakeups = 0;
    uint64_t t0 = clock_now_ns();
    while (used_idx(e, q) < want && clock_now_ns() - t0 < 5000000000ULL)
        if (loop_run_once(&e->loop, 50) > 0)
            wakeups++;
    return wakeups;
}

/* tx_rate_limiter, one frame per 100 ms: the first goes, the rest wait in the ring (extra kicks
 * send nothing) and leave one by one on the limiter's timer, in order, without a busy loop. */
static void test_tx_rate_limited(void **state)
{
    struct env *e = *state;
    env_start(e, 0);
    struct rl_config rl = {.ops = {.size = 1, .refill_time_ms = 100}};
    net_set_rate_limit(&e->d, true, &rl, RL_SET_OPS);
    uint8_t frame[12 + 60] = {0};
    for (uint64_t i = 0; i < 3; i++) {
        frame[12] = (uint8_t)i;
        mem_write(&e->mem, 0x200000 + i * 0x1000, frame, sizeof(frame));
        uint64_t g = 0x200000 + i * 0x1000;
        uint32_t l = sizeof(frame);
        add_chain(e, NET_TXQ, 1, &g, &l, false);
    }
    kick(e, NET_TXQ);
    kick(e, NET_TXQ);
    assert_int_equal(used_idx(e, NET_TXQ), 1);
    assert_true(net_of_env(e)->tx_throttled);
    uint64_t t0 = clock_now_ns();
    assert_true(run_until_used(e, NET_TXQ, 3) <= 6);
    assert_int_equal(used_idx(e, NET_TXQ), 3);
    assert_true(clock_now_ns() - t0 >= 100000000ULL); /* two more at one per 100 ms */
    uint8_t got[256];
    for (int i = 0; i < 3; i++) {
        assert_int_equal(recv(e->peer, got, sizeof(got), 0), sizeof(frame));
        assert_int_equal(got[12], i);
    }
}

/* rx_rate_limiter, 100 bytes per 100 ms: a frame is read while the bucket holds anything and
 * charged its length, so the second 88-byte frame overdraws it and the third stays in the
 * back-end, unwatched (no EPOLLIN, no spinning), until the timer. */
static void test_rx_rate_limited(void **state)
{
    struct env *e = *state;
    env_start(e, 0);
    struct net *n = net_of_env(e);
    struct rl_config rl = {.bandwidth = {.size = 100, .refill_time_ms = 100}};
    net_set_rate_limit(&e->d, false, &rl, RL_SET_BANDWIDTH);
    for (int i = 0; i < 3; i++) {
        send_frame(e, 100, (uint8_t)i);
        add_rx_buffer(e, 1600);
    }
    kick(e, NET_RXQ);
    assert_int_equal(used_idx(e, NET_RXQ), 2);
    assert_true(n->rx_throttled);
    assert_false(n->watched && (n->watch_events & EPOLLIN));
    assert_true(run_until_used(e, NET_RXQ, 3) <= 4);
    assert_int_equal(used_idx(e, NET_RXQ), 3);
    uint8_t *last = mem_ptr(&e->mem, 0x100000 + 2 * 0x10000, 100);
    assert_int_equal(last[12], (uint8_t)(2 + 12));
}

/* The stall report (SIGUSR2) says why RX stopped: here, frames wait in the back-end while the
 * guest has no buffer left, so the back-end is not watched. */
static void test_dump(void **state)
{
    struct env *e = *state;
    env_start(e, 0);
    for (int i = 0; i < 3; i++)
        send_frame(e, 100, (uint8_t)i);
    add_rx_buffer(e, 1600);
    kick(e, NET_RXQ);
    run_loop(e, 3);
    assert_int_equal(used_idx(e, NET_RXQ), 1);

    int p[2];
    assert_int_equal(pipe2(p, O_NONBLOCK), 0);
    int old = log_set_sink(p[1]);
    virtio_dev_dump(&e->d);
    log_set_sink(old);
    char buf[4096] = {0};
    assert_true(read(p[0], buf, sizeof(buf) - 1) > 0);
    close(p[0]);
    close(p[1]);
    assert_non_null(strstr(buf, "queue 0: size"));
    assert_non_null(strstr(buf, "net eth0 (test): watched 0 events 0 paused 0 rx_armed 0"));
    assert_non_null(strstr(buf, "rx_have 0"));
}

static void test_rx_no_mrg(void **state)
{
    struct env *e = *state;
    env_start(e, BIT(VIRTIO_NET_F_MRG_RXBUF));
    uint64_t b0 = add_rx_buffer(e, 64);
    uint64_t b1 = add_rx_buffer(e, 1600);
    send_frame(e, 100, 0); /* too big for the first buffer: dropped */
    send_frame(e, 100, 9);
    kick(e, NET_RXQ);
    run_loop(e, 2);
    assert_int_equal(used_idx(e, NET_RXQ), 2);
    assert_int_equal(used_len(e, NET_RXQ, 0), 0);
    assert_int_equal(used_len(e, NET_RXQ, 1), 100);
    assert_int_equal(get16(e, b1 + 10), 1);
    (void)b0;
}

static void test_quiesce_resume(void **state)
{
    struct env *e = *state;
    env_start(e, 0);
    add_rx_buffer(e, 1600);
    add_rx_buffer(e, 1600);
    kick(e, NET_RXQ);
    uint64_t v;
    while (read(e->d.irq_fd, &v, 8) == 8)
        ;
    virtio_dev_quiesce(&e->d);
    struct net *n = net_of_env(e);
    assert_false(n->watched);
    send_frame(e, 100, 3);
    run_loop(e, 3);
    assert_int_equal(used_idx(e, NET_RXQ), 0); /* host input stays unread */
    assert_int_equal(read(e->d.irq_fd, &v, 8), -1);
    virtio_dev_resume(&e->d);
    run_loop(e, 2);
    assert_int_equal(used_idx(e, NET_RXQ), 1);
    assert_int_equal(read(e->d.irq_fd, &v, 8), 8);
}

/* ---- merged RX frames become visible whole ---- */

#define FRAME_BUFS 16 /* every frame below fills the whole queue: 16 buffers of 64 bytes */

struct observer {
    const uint16_t *used_idx; /* host pointer to the RX used->idx */
    bool started, stop;
    unsigned changes, torn;
    uint16_t torn_at;
};

/* Play a driver polling used->idx on another CPU: every index it can see must end a frame. */
static void *observe(void *arg)
{
    struct observer *o = arg;
    uint16_t last = __atomic_load_n(o->used_idx, __ATOMIC_ACQUIRE);
    __atomic_store_n(&o->started, true, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&o->stop, __ATOMIC_ACQUIRE)) {
        uint16_t v = __atomic_load_n(o->used_idx, __ATOMIC_ACQUIRE);
        if (v == last)
            continue;
        __atomic_fetch_add(&o->changes, 1, __ATOMIC_RELAXED);
        if (v % FRAME_BUFS) {
            o->torn_at = v;
            __atomic_fetch_add(&o->torn, 1, __ATOMIC_RELAXED);
        }
        last = v;
    }
    return NULL;
}

static void test_rx_merged_frame_published_whole(void **state)
{
    struct env *e = *state;
    env_start(e, 0);
    struct observer o = {.used_idx = mem_ptr(&e->mem, e->rq[NET_RXQ].used + 2, 2)};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, observe, &o), 0);
    while (!__atomic_load_n(&o.started, __ATOMIC_ACQUIRE))
        sched_yield();
    /* Until the observer has looked often enough (it shares two loaded CPUs with us). */
    for (unsigned f = 0; f < 40000 && __atomic_load_n(&o.changes, __ATOMIC_RELAXED) < 200 &&
                         !__atomic_load_n(&o.torn, __ATOMIC_RELAXED);
         f++) {
        for (unsigned i = 0; i < FRAME_BUFS; i++) {
            uint64_t gpa = 0x100000 + 0x1000 * (uint64_t)i;
            uint32_t len = 64;
            add_chain(e, NET_RXQ, 1, &gpa, &len, true);
        }
        send_frame(e, 64 * FRAME_BUFS, (uint8_t)f);
        kick(e, NET_RXQ);
        assert_int_equal(used_idx(e, NET_RXQ), (uint16_t)((f + 1) * FRAME_BUFS));
        assert_int_equal(get16(e, 0x100000 + 10), FRAME_BUFS); /* num_buffers */
    }
    __atomic_store_n(&o.stop, true, __ATOMIC_RELEASE);
    pthread_join(t, NULL);
    if (o.torn)
        fail_msg("the driver saw used->idx %u in the middle of a %u-buffer frame (%u of %u "
                 "index changes were torn)",
                 o.torn_at, FRAME_BUFS, o.torn, o.changes);
    assert_int_equal(e->d.status & VIRTIO_STATUS_NEEDS_RESET, 0);
}

/* ---- the transport drives the device: activate/reset on the "vCPU" (test) thread ---- */

static void w32(struct env *e, uint64_t off, uint32_t v)
{
    virtio_mmio_io(&e->d, off, (uint8_t *)&v, 4, true);
}

/* Driver bring-up through the registers up to FEATURES_OK and live queues, accepting
 * MRG_RXBUF plus the low feature bits in extra_lo. */
static void mmio_probe_with(struct env *e, uint32_t extra_lo)
{
    w32(e, VIRTIO_MMIO_STATUS, 0);
    w32(e, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    w32(e, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    w32(e, VIRTIO_MMIO_DRIVER_FEATURES, 1); /* VERSION_1 */
    w32(e, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    w32(e, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)BIT(VIRTIO_NET_F_MRG_RXBUF) | extra_lo);
    w32(e, VIRTIO_MMIO_STATUS,
        VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
    for (unsigned q = 0; q < 2; q++) {
        e->rq[q].avail_idx = e->rq[q].next_desc = 0;
        memset(mem_ptr(&e->mem, e->rq[q].desc, 0x3000), 0, 0x3000);
        w32(e, VIRTIO_MMIO_QUEUE_SEL, q);
        w32(e, VIRTIO_MMIO_QUEUE_NUM, QSZ);
        w32(e, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)e->rq[q].desc);
        w32(e, VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)e->rq[q].avail);
        w32(e, VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)e->rq[q].used);
        w32(e, VIRTIO_MMIO_QUEUE_READY, 1);
    }
}

static void mmio_probe(struct env *e)
{
    mmio_probe_with(e, 0);
}

static void mmio_driver_ok(struct env *e)
{
    w32(e, VIRTIO_MMIO_STATUS,
        VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
            VIRTIO_STATUS_DRIVER_OK);
}

/* DRIVER_OK (on a vCPU thread) leaves nothing queued on the loop that holds the device, and
 * RX still starts: buffers added before DRIVER_OK are used without another kick. */
static void test_activate_starts_rx_without_posting(void **state)
{
    struct env *e = *state;
    mmio_probe(e);
    add_rx_buffer(e, 1600);
    w32(e, VIRTIO_MMIO_QUEUE_NOTIFY, NET_RXQ); /* before DRIVER_OK: dropped by the transport */
    send_frame(e, 100, 5);
    run_loop(e, 3);
    assert_int_equal(used_idx(e, NET_RXQ), 0);
    mmio_driver_ok(e);
    assert_null(e->loop.calls); /* a posted call could run after the device is freed */
    assert_int_equal(e->d.status & VIRTIO_STATUS_NEEDS_RESET, 0);
    run_loop(e, 3);
    assert_int_equal(used_idx(e, NET_RXQ), 1);
    assert_int_equal(used_len(e, NET_RXQ, 0), 100);
}

/* The queues accept INDIRECT only when the driver negotiated it. */
static void test_indirect_follows_negotiation(void **state)
{
    struct env *e = *state;
    mmio_probe(e);
    assert_false(e->d.vq[NET_RXQ].indirect_desc);
    assert_false(e->d.vq[NET_TXQ].indirect_desc);
    mmio_probe_with(e, 1u << VIRTIO_F_INDIRECT_DESC);
    assert_int_equal(e->d.status & VIRTIO_STATUS_FEATURES_OK, VIRTIO_STATUS_FEATURES_OK);
    assert_true(e->d.vq[NET_RXQ].indirect_desc);
    assert_true(e->d.vq[NET_TXQ].indirect_desc);
    mmio_driver_ok(e);

    /* Without it, an indirect TX chain is malformed: NEEDS_RESET, nothing sent. */
    mmio_probe(e);
    mmio_driver_ok(e);
    uint8_t table[16] = {0};
    uint64_t frame_gpa = 0x200000, table_gpa = 0x210000;
    uint32_t flen = 72;
    memcpy(table, &frame_gpa, 8);
    memcpy(table + 8, &flen, 4);
    mem_write(&e->mem, table_gpa, table, 16);
    struct ring *r = &e->rq[NET_TXQ];
    uint8_t raw[16] = {0};
    uint32_t tlen = 16;
    uint16_t flags = VIRTQ_DESC_F_INDIRECT;
    memcpy(raw, &table_gpa, 8);
    memcpy(raw + 8, &tlen, 4);
    memcpy(raw + 12, &flags, 2);
    mem_write(&e->mem, r->desc, raw, 16);
    put16(e, r->avail + 4, 0);
    put16(e, r->avail + 2, ++r->avail_idx);
    w32(e, VIRTIO_MMIO_QUEUE_NOTIFY, NET_TXQ);
    run_loop(e, 3);
    assert_int_equal(e->d.status & VIRTIO_STATUS_NEEDS_RESET, VIRTIO_STATUS_NEEDS_RESET);
    uint8_t got[128];
    assert_int_equal(recv(e->peer, got, sizeof(got), MSG_DONTWAIT), -1);
}

/* VM teardown right after DRIVER_OK: the loop then runs nothing of the freed device. */
static void test_destroy_after_driver_ok(void **state)
{
    struct env *e = *state;
    mmio_probe(e);
    add_rx_buffer(e, 1600);
    send_frame(e, 100, 5);
    mmio_driver_ok(e);
    virtio_dev_destroy(&e->d); /* frees struct net; ASan reports any later use */
    run_loop(e, 3);
}

/* A driver reset mid-frame, then a fresh start: nothing from the old queues is pushed into
 * the new ones, and the device works again (reset runs on the vCPU thread). */
static void test_reset_and_restart(void **state)
{
    struct env *e = *state;
    struct net *n = net_of_env(e);
    mmio_probe(e);
    mmio_driver_ok(e);
    add_rx_buffer(e, 48); /* one buffer of a three-buffer frame */
    send_frame(e, 112, 7);
    w32(e, VIRTIO_MMIO_QUEUE_NOTIFY, NET_RXQ);
    run_loop(e, 3);
    assert_int_equal(used_idx(e, NET_RXQ), 0); /* partly placed, waiting for buffers */
    assert_int_equal(n->rx_nheads, 1);

    w32(e, VIRTIO_MMIO_STATUS, 0); /* the frame's chain belonged to the old queue: dropped */
    assert_int_equal(n->rx_nheads, 0);
    assert_false(n->rx_armed);
    run_loop(e, 3); /* the loop may still call the device: it must not touch the queues */
    mmio_probe(e);
    mmio_driver_ok(e);
    add_rx_buffer(e, 1600);
    send_frame(e, 90, 3);
    w32(e, VIRTIO_MMIO_QUEUE_NOTIFY, NET_RXQ);
    run_loop(e, 3);
    assert_int_equal(used_idx(e, NET_RXQ), 1);
    assert_int_equal(used_len(e, NET_RXQ, 0), 90);
    assert_int_equal(e->d.status & VIRTIO_STATUS_NEEDS_RESET, 0);
}

/* A device over a real TAP (skipped where TAPs cannot be made). */
static int setup_tap(void **state)
{
    if (access("/dev/net/tun", R_OK | W_OK) != 0)
        skip();
    struct env *e = calloc(1, sizeof(*e));
    assert_int_equal(mem_init(&e->mem, 16 << 20), 0);
    assert_int_equal(loop_init(&e->loop), 0);
    e->peer = -1;
    e->rq[0] = (struct ring){.desc = 0x1000, .avail = 0x2000, .used = 0x3000};
    e->rq[1] = (struct ring){.desc = 0x4000, .avail = 0x5000, .used = 0x6000};
    e->buf_gpa = 0x100000;
    struct net_config cfg = {.id = "eth0"};
    snprintf(cfg.tap, sizeof(cfg.tap), "amu%d", getpid() % 100000);
    char err[256];
    int rc = net_create(&e->d, &cfg, &e->mem, &e->loop, 0xd0001000, 6, err, sizeof(err));
    if (rc == -EPERM) {
        loop_destroy(&e->loop);
        mem_free(&e->mem);
        free(e);
        skip();
    }
    assert_int_equal(rc, 0);
    *state = e;
    return 0;
}

/* The driver's side of a start and a reset, offloads negotiated. */
static void offload_start_and_reset(struct env *e)
{
    mmio_probe_with(e, (uint32_t)(BIT(VIRTIO_NET_F_GUEST_CSUM) | BIT(VIRTIO_NET_F_GUEST_TSO4)));
    mmio_driver_ok(e);
    w32(e, VIRTIO_MMIO_STATUS, 0);
    mmio_probe_with(e, (uint32_t)(BIT(VIRTIO_NET_F_GUEST_CSUM) | BIT(VIRTIO_NET_F_GUEST_TSO4)));
    mmio_driver_ok(e);
}

/*
 * Status writes run on vCPU threads, under the vCPU seccomp filter, which has no TAP ioctl:
 * a forbidden syscall in activate or reset kills the VMM (it did: TUNSETOFFLOAD). Play the
 * vCPU in a child under the real filter; the parent then checks the loop applies offloads.
 */
static void test_vcpu_side_obeys_seccomp(void **state)
{
    struct env *e = *state;
    struct net *n = net_of_env(e);
#ifdef __SANITIZE_ADDRESS__
    print_message("the sanitizer runtime makes syscalls (sigaltstack) the vCPU filter forbids\n");
    skip();
#endif
    assert_true(n->tap_offloads);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        static struct vm_config cfg; /* defaults: the built-in vCPU allowlist */
        if (seccomp_install_handler() || seccomp_install(SECCOMP_VCPU, &cfg))
            _exit(2);
        offload_start_and_reset(e);
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("a Status write made a syscall the vCPU seccomp filter forbids (%s %d)",
                 WIFEXITED(status) ? "exit" : "signal",
                 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));

    offload_start_and_reset(e); /* here, unfiltered, to watch the loop's half */
    assert_true(n->offload_pending);
    run_loop(e, 3); /* the transport's kicks bring the device to the loop */
    assert_false(n->offload_pending);
    assert_int_equal(e->d.status & VIRTIO_STATUS_NEEDS_RESET, 0);
}

static void test_tap(void **state)
{
    if (access("/dev/net/tun", R_OK | W_OK) != 0) {
        skip();
        return;
    }
    struct guest_mem mem;
    struct loop loop;
    assert_int_equal(mem_init(&mem, 1 << 20), 0);
    assert_int_equal(loop_init(&loop), 0);
    struct net_config cfg = {.id = "eth0"};
    snprintf(cfg.tap, sizeof(cfg.tap), "amt%d", getpid() % 100000);
    struct virtio_dev *d = calloc(2, sizeof(*d));
    char err[256] = "";
    int rc = net_create(&d[0], &cfg, &mem, &loop, 0xd0000000, 5, err, sizeof(err));
    if (rc == -EPERM) {
        free(d);
        skip();
        return;
    }
    assert_int_equal(rc, 0);
    uint8_t mac[6];
    d[0].ops->config_read(&d[0], 0, mac, 6);
    assert_int_equal(mac[0] & 3, 2); /* random, locally administered, unicast */
    assert_true(d[0].host_features & BIT(VIRTIO_NET_F_CSUM)); /* a real TAP takes offloads */
    /* A second attach to the same TAP is refused with a message naming it. */
    rc = net_create(&d[1], &cfg, &mem, &loop, 0xd0001000, 6, err, sizeof(err));
    assert_int_equal(rc, -EBUSY);
    assert_non_null(strstr(err, cfg.tap));
    virtio_dev_destroy(&d[0]);
    struct net_config bad = {.id = "x", .tap = ""};
    assert_true(net_create(&d[1], &bad, &mem, &loop, 0, 5, err, sizeof(err)) < 0);
    free(d);
    loop_destroy(&loop);
    mem_free(&mem);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_features_and_offloads),
        cmocka_unit_test(test_tx_hdr_check),
        cmocka_unit_test(test_tx_sends_checked_copy),
        cmocka_unit_test_setup_teardown(test_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tx, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rx_merged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rx_flood_waits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tx_rate_limited, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rx_rate_limited, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dump, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rx_no_mrg, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quiesce_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rx_merged_frame_published_whole, setup, teardown),
        cmocka_unit_test_setup_teardown(test_activate_starts_rx_without_posting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_indirect_follows_negotiation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_destroy_after_driver_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_and_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vcpu_side_obeys_seccomp, setup_tap, teardown),
        cmocka_unit_test(test_tap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
