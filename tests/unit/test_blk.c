/* Unit tests for virtio-blk: the pure request parser, then the device end to end over io_uring. */
#include <errno.h>
#include <fcntl.h>
#include <linux/virtio_blk.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "devices/virtio/blk.h"
#include "devices/virtio/blk_priv.h"
#include "devices/virtio/virtio.h"
#include "vmm/clock.h"
#include "vmm/loop.h"
#include "vmm/mem.h"

/* ---- Parser tests: chains built from host buffers, no guest memory needed. ---- */

struct pchain {
    struct virtq_chain c;
    uint8_t hdr[16];
    uint8_t data[4096];
    uint8_t status;
};

static void hdr_set(uint8_t *h, uint32_t type, uint64_t sector)
{
    memset(h, 0, 16);
    memcpy(h, &type, 4);
    memcpy(h + 8, &sector, 8);
}

/* Append an iovec; out iovecs must all come before in iovecs. */
static void pc_add(struct pchain *p, void *base, size_t len, bool writable)
{
    struct virtq_chain *c = &p->c;
    c->iov[c->nout + c->nin] = (struct iovec){base, len};
    if (writable) {
        c->nin++;
        c->in_len += len;
    } else {
        c->nout++;
        c->out_len += len;
    }
}

static struct pchain *pc_new(uint32_t type, uint64_t sector)
{
    struct pchain *p = calloc(1, sizeof(*p));
    hdr_set(p->hdr, type, sector);
    pc_add(p, p->hdr, 16, false);
    return p;
}

static const uint64_t ALL_FEATURES =
    1ULL << VIRTIO_BLK_F_FLUSH | 1ULL << VIRTIO_BLK_F_DISCARD | 1ULL << VIRTIO_BLK_F_WRITE_ZEROES;

static int parse(struct pchain *p, bool ro, uint64_t features, struct blk_req *r)
{
    struct blk_limits lim = {.capacity_sectors = 8, .read_only = ro, .features = features};
    return blk_parse_request(&p->c, &lim, r);
}

static void test_parse_good(void **state)
{
    struct blk_req *r = calloc(1, sizeof(*r));

    struct pchain *p = pc_new(VIRTIO_BLK_T_IN, 2);
    pc_add(p, p->data, 1024, true);
    pc_add(p, &p->status, 1, true);
    assert_int_equal(parse(p, false, 0, r), VIRTIO_BLK_S_OK);
    assert_int_equal(r->offset_bytes, 1024);
    assert_int_equal(r->data_len, 1024);
    assert_int_equal(r->niov, 1);
    assert_ptr_equal(r->status, &p->status);
    free(p);

    /* OUT with the data split over two iovecs, last sector of the drive. */
    p = pc_new(VIRTIO_BLK_T_OUT, 6);
    pc_add(p, p->data, 512, false);
    pc_add(p, p->data + 512, 512, false);
    pc_add(p, &p->status, 1, true);
    assert_int_equal(parse(p, false, 0, r), VIRTIO_BLK_S_OK);
    assert_int_equal(r->niov, 2);
    assert_int_equal(r->data_len, 1024);
    free(p);

    p = pc_new(VIRTIO_BLK_T_FLUSH, 0);
    pc_add(p, &p->status, 1, true);
    assert_int_equal(parse(p, false, ALL_FEATURES, r), VIRTIO_BLK_S_OK);
    assert_int_equal(r->type, VIRTIO_BLK_T_FLUSH);
    free(p);

    p = pc_new(VIRTIO_BLK_T_GET_ID, 0);
    pc_add(p, p->data, 20, true);
    pc_add(p, &p->status, 1, true);
    assert_int_equal(parse(p, false, 0, r), VIRTIO_BLK_S_OK);
    assert_int_equal(r->data_len, 20);
    free(p);

    /* Header and data in one descriptor, data and status in another: still fine. */
    p = calloc(1, sizeof(*p));
    hdr_set(p->data, VIRTIO_BLK_T_OUT, 0);
    pc_add(p, p->data, 16 + 512, false);
    pc_add(p, &p->status, 1, true);
    assert_int_equal(parse(p, false, 0, r), VIRTIO_BLK_S_OK);
    assert_ptr_equal(r->iov[0].iov_base, p->data + 16);
    assert_int_equal(r->data_len, 512);
    free(p);

    /* Discard: two segments, write-zeroes with UNMAP. */
    p = pc_new(VIRTIO_BLK_T_DISCARD, 0);
    uint64_t seg[4] = {1, 2 /* n=2 flags=0 */, 5, 3};
    pc_add(p, seg, sizeof(seg), false);
    pc_add(p, &p->status, 1, true);
    assert_int_equal(parse(p, false, ALL_FEATURES, r), VIRTIO_BLK_S_OK);
    assert_int_equal(r->nranges, 2);
    assert_int_equal(r->range[0].offset_bytes, 512);
    assert_int_equal(r->range[0].len_bytes, 1024);
    assert_int_equal(r->range[1].offset_bytes, 5 * 512);
    assert_true(r->range[1].unmap);
    free(p);

    p = pc_new(VIRTIO_BLK_T_WRITE_ZEROES, 0);
    uint64_t wz[2] = {0, 8 | (uint64_t)VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP << 32};
    pc_add(p, wz, sizeof(wz), false);
    pc_add(p, &p->status, 1, true);
    assert_int_equal(parse(p, false, ALL_FEATURES, r), VIRTIO_BLK_S_OK);
    assert_true(r->range[0].unmap);
    assert_int_equal(r->range[0].len_bytes, 4096);
    wz[1] = 8;
    assert_int_equal(parse(p, false, ALL_FEATURES, r), VIRTIO_BLK_S_OK);
    assert_false(r->range[0].unmap);
    free(p);
    free(r);
}

static void test_parse_hostile(void **state)
{
    struct blk_req *r = calloc(1, sizeof(*r));

    /* No writable byte at all: nothing can be reported. */
    struct pchain *p = pc_new(VIRTIO_BLK_T_IN, 0);
    assert_int_equal(parse(p, false, 0, r), -EINVAL);
    assert_null(r->status);
    free(p);

    /* Short header. */
    p = calloc(1, sizeof(*p));
    pc_add(p, p->hdr, 8, false);
    pc_add(p, &p->status, 1, true);
    assert_int_equal(parse(p, false, 0, r), VIRTIO_BLK_S_IOERR);
    free(p);

    /* Out of range: sector past the end, length past the end, overflowing sector. */
    uint64_t sectors[] = {9, 7, UINT64_MAX / 512 + 1, UINT64_MAX};
    for (unsigned i = 0; i < 4; i++) {
        p = pc_new(VIRTIO_BLK_T_IN, sectors[i]);
        pc_add(p, p->data, 1024, true);
        pc_add(p, &p->status, 1, true);
        assert_int_equal(parse(p, false, 0, r), VIRTIO_BLK_S_IOERR);
        free(p);
    }

    /* Not a multiple of 512. */
    p = pc_new(VIRTIO_BLK_T_IN, 0);
    pc_add(p, p->data, 100, true);
    pc_add(p, &p->status, 1, true);
    assert_int_equal(parse(p, false, 0, r), VIRTIO_BLK_S_IOERR);
    free(p);

    /* Wrong direction: IN with readable data, OUT with writable data. */
    p = pc_new(VIRTIO_BLK_T_IN, 0);
    pc_add(p, p->data, 512, false);
    pc_add(p, &p->status, 1, true);
    assert_int_equal(parse(p, false, 0, r), VIRTIO_BLK_S_IOERR);
    free(p);
    p = pc_new(VIRTIO_BLK_T_OUT, 0);
    pc_add(p, p->data, 512, true);
    pc_add(p, &p->status, 1, true);
    assert_int_equal(parse(p, false, 0, r), VIRTIO_BLK_S_IOERR);
    free(p);

    /* Write, discard, write-zeroes to a read-only drive. */
    p = pc_new(VIRTIO_BLK_T_OUT, 0);
    pc_add(p, p->data, 512, false);
    pc_add(p, &p->status, 1, true);
    assert_int_equal(parse(p, true, ALL_FEATURES, r), VIRTIO_BLK_S_IOERR);
    free(p);
    uint64_t seg[2] = {0, 1};
    p = pc_new(VIRTIO_BLK_T_DISCARD, 0);
    pc_add(p, seg, sizeof(seg), false);
    pc_add(p, &p->status, 1, true);
    assert_int_equal(parse(p, true, ALL_FEATURES, r), VIRTIO_BLK_S_IOERR);
    /* Not negotiated, bad flags, out of range, zero sectors, ragged length. */
    assert_int_equal(parse(p, false, 0, r), VIRTIO_BLK_S_UNSUPP);
    seg[1] = 1 | 1ULL << 32;
    assert_int_equal(parse(p, false, ALL_FEATURES, r), VIRTIO_BLK_S_UNSUPP);
    seg[0] = 7, seg[1] = 2;
    assert_int_equal(parse(p, false, ALL_FEATURES, r), VIRTIO_BLK_S_IOERR);
    seg[0] = UINT64_MAX, seg[1] = 1;
    assert_int_equal(parse(p, false, ALL_FEATURES, r), VIRTIO_BLK_S_IOERR);
    seg[0] = 0, seg[1] = 0;
    assert_int_equal(parse(p, false, ALL_FEATURES, r), VIRTIO_BLK_S_IOERR);
    p->c.iov[1].iov_len = 8, p->c.out_len -= 8;
    assert_int_equal(parse(p, false, ALL_FEATURES, r), VIRTIO_BLK_S_IOERR);
    free(p);

    /* Too many discard segments. */
    p = pc_new(VIRTIO_BLK_T_DISCARD, 0);
    uint64_t many[2 * (BLK_MAX_DISCARD_SEG + 1)] = {0};
    for (unsigned i = 0; i <= BLK_MAX_DISCARD_SEG; i++)
        many[2 * i + 1] = 1;
    pc_add(p, many, sizeof(many), false);
    pc_add(p, &p->status, 1, true);
    assert_int_equal(parse(p, false, ALL_FEATURES, r), VIRTIO_BLK_S_IOERR);
    free(p);

    /* Unknown type and un-negotiated flush. */
    p = pc_new(0x1234, 0);
    pc_add(p, &p->status, 1, true);
    assert_int_equal(parse(p, false, ALL_FEATURES, r), VIRTIO_BLK_S_UNSUPP);
    hdr_set(p->hdr, VIRTIO_BLK_T_FLUSH, 0);
    assert_int_equal(parse(p, false, 0, r), VIRTIO_BLK_S_UNSUPP);
    free(p);

    /* Too many data segments. */
    p = pc_new(VIRTIO_BLK_T_IN, 0);
    for (unsigned i = 0; i < BLK_SEG_MAX + 1; i++)
        pc_add(p, p->data, 512, true);
    pc_add(p, &p->status, 1, true);
    struct blk_limits lim = {.capacity_sectors = 1024};
    assert_int_equal(blk_parse_request(&p->c, &lim, r), VIRTIO_BLK_S_IOERR);
    free(p);
    free(r);
}

/* ---- Device tests: a fake guest drives the real transport and io_uring. ---- */

#define Q_SIZE    64
#define G_DESC    0x1000ULL
#define G_AVAIL   0x2000ULL
#define G_USED    0x3000ULL
#define G_HDR     0x10000ULL
#define G_STATUS  0x11000ULL
#define G_SEG     0x12000ULL
#define G_DATA    0x100000ULL
#define FILE_SIZE (1024 * 1024)

struct env {
    struct guest_mem mem;
    struct loop loop;
    struct virtio_dev d;
    char path[64];
    uint16_t avail_idx, used_seen;
    bool created;
};

static void put16(struct env *e, uint64_t gpa, uint16_t v)
{
    mem_write(&e->mem, gpa, &v, 2);
}

static uint16_t get16(struct env *e, uint64_t gpa)
{
    uint16_t v = 0;
    mem_read(&e->mem, gpa, &v, 2);
    return v;
}

static void desc(struct env *e, unsigned i, uint64_t addr, uint32_t len, uint16_t flags)
{
    uint8_t raw[16];
    uint16_t next = (uint16_t)(i + 1);
    memcpy(raw, &addr, 8);
    memcpy(raw + 8, &len, 4);
    memcpy(raw + 12, &flags, 2);
    memcpy(raw + 14, &next, 2);
    mem_write(&e->mem, G_DESC + 16 * (uint64_t)i, raw, 16);
}

static void make_file(const char *path, size_t size, uint8_t fill)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    uint8_t *buf = malloc(size ? size : 1);
    memset(buf, fill, size);
    assert_int_equal(write(fd, buf, size), (ssize_t)size);
    free(buf);
    close(fd);
}

static int env_open(struct env *e, bool ro, bool direct)
{
    struct drive_config cfg = {.read_only = ro, .direct = direct};
    snprintf(cfg.id, sizeof(cfg.id), "%s", "rootfs-drive-with-a-long-id");
    snprintf(cfg.path, sizeof(cfg.path), "%s", e->path);
    char err[256] = "";
    int rc = blk_create(&e->d, &cfg, &e->mem, &e->loop, 0xd0000000, 5, err, sizeof(err));
    if (rc < 0) {
        print_error("blk_create: %s\n", err);
        return rc;
    }
    e->created = true;
    /* Play the driver: negotiate everything the device offers but EVENT_IDX. */
    e->d.driver_features = e->d.host_features & ~(1ULL << VIRTIO_F_EVENT_IDX);
    e->d.status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
                  VIRTIO_STATUS_DRIVER_OK;
    struct virtq *q = &e->d.vq[0];
    q->size = Q_SIZE;
    q->desc_gpa = G_DESC;
    q->avail_gpa = G_AVAIL;
    q->used_gpa = G_USED;
    q->ready = true;
    return 0;
}

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    assert_int_equal(mem_init(&e->mem, 16 << 20), 0);
    assert_int_equal(loop_init(&e->loop), 0);
    snprintf(e->path, sizeof(e->path), "/tmp/amber-test-blk-%d", getpid());
    make_file(e->path, FILE_SIZE, 0xaa);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    if (e->created)
        virtio_dev_destroy(&e->d);
    loop_destroy(&e->loop);
    mem_free(&e->mem);
    unlink(e->path);
    free(e);
    return 0;
}

/* Publish a chain starting at descriptor 0 and kick the queue (no waiting). */
static void kick(struct env *e)
{
    put16(e, G_AVAIL + 4 + 2 * (e->avail_idx % Q_SIZE), 0);
    e->avail_idx++;
    put16(e, G_AVAIL + 2, e->avail_idx);
    pthread_mutex_lock(&e->d.lock);
    e->d.ops->queue_notify(&e->d, 0);
    pthread_mutex_unlock(&e->d.lock);
}

/* Run the loop until the device has used one more chain; returns its status byte. */
static int wait_used(struct env *e)
{
    for (int i = 0; i < 200 && get16(e, G_USED + 2) == e->used_seen; i++)
        loop_run_once(&e->loop, 10);
    if (get16(e, G_USED + 2) == e->used_seen)
        return -1;
    e->used_seen++;
    uint8_t st = 0xff;
    mem_read(&e->mem, G_STATUS, &st, 1);
    return st;
}

/* Build a header + data + status request. data_len 0 leaves the data descriptor out. */
static void build(struct env *e, uint32_t type, uint64_t sector, uint64_t data_gpa,
                  uint32_t data_len, bool data_writable)
{
    uint8_t h[16];
    hdr_set(h, type, sector);
    mem_write(&e->mem, G_HDR, h, 16);
    uint8_t ff = 0xff;
    mem_write(&e->mem, G_STATUS, &ff, 1);
    unsigned i = 0;
    desc(e, i++, G_HDR, 16, 1);
    if (data_len)
        desc(e, i++, data_gpa, data_len, 1 | (data_writable ? 2 : 0));
    desc(e, i, G_STATUS, 1, 2);
}

static int rw(struct env *e, uint32_t type, uint64_t sector, uint64_t gpa, uint32_t len)
{
    build(e, type, sector, gpa, len, type == VIRTIO_BLK_T_IN || type == VIRTIO_BLK_T_GET_ID);
    kick(e);
    return wait_used(e);
}

static uint32_t last_used_len(struct env *e)
{
    uint32_t v = 0;
    mem_read(&e->mem, G_USED + 8 + 8 * (uint64_t)((e->used_seen - 1) % Q_SIZE), &v, 4);
    return v;
}

static void test_write_read_flush_id(void **state)
{
    struct env *e = *state;
    assert_int_equal(env_open(e, false, false), 0);
    assert_int_equal(blk_capacity_sectors(&e->d), FILE_SIZE / 512);
    uint64_t cap = 0;
    e->d.ops->config_read(&e->d, 0, (uint8_t *)&cap, 8);
    assert_int_equal(cap, FILE_SIZE / 512);

    uint8_t *g = mem_ptr(&e->mem, G_DATA, 8192);
    for (int i = 0; i < 4096; i++)
        g[i] = (uint8_t)(i * 7);
    assert_int_equal(rw(e, VIRTIO_BLK_T_OUT, 3, G_DATA, 4096), VIRTIO_BLK_S_OK);
    memset(g + 4096, 0, 4096);
    assert_int_equal(rw(e, VIRTIO_BLK_T_IN, 3, G_DATA + 4096, 4096), VIRTIO_BLK_S_OK);
    assert_memory_equal(g, g + 4096, 4096);
    assert_int_equal(last_used_len(e), 4097);

    /* The file really changed, at sector 3. */
    uint8_t buf[512];
    int fd = open(e->path, O_RDONLY);
    assert_int_equal(pread(fd, buf, 512, 3 * 512), 512);
    assert_memory_equal(buf, g, 512);
    close(fd);

    assert_int_equal(rw(e, VIRTIO_BLK_T_FLUSH, 0, 0, 0), VIRTIO_BLK_S_OK);

    memset(g, 0x55, 64);
    assert_int_equal(rw(e, VIRTIO_BLK_T_GET_ID, 0, G_DATA, 64), VIRTIO_BLK_S_OK);
    assert_memory_equal(g, "rootfs-drive-with-a-", 20);
    assert_int_equal(g[20], 0x55); /* only 20 bytes written */
    assert_int_equal(last_used_len(e), 21);

    /* Hostile requests through the device: out of range, unknown type. */
    assert_int_equal(rw(e, VIRTIO_BLK_T_IN, FILE_SIZE / 512, G_DATA, 512), VIRTIO_BLK_S_IOERR);
    assert_int_equal(rw(e, 99, 0, 0, 0), VIRTIO_BLK_S_UNSUPP);
    assert_int_equal(e->d.status & VIRTIO_STATUS_NEEDS_RESET, 0);
}

static void test_discard_write_zeroes(void **state)
{
    struct env *e = *state;
    assert_int_equal(env_open(e, false, false), 0);
    uint64_t seg[2] = {8, 16}; /* 8 KiB at 4 KiB */
    mem_write(&e->mem, G_SEG, seg, sizeof(seg));
    build(e, VIRTIO_BLK_T_DISCARD, 0, G_SEG, sizeof(seg), false);
    kick(e);
    assert_int_equal(wait_used(e), VIRTIO_BLK_S_OK);

    uint64_t wz[2] = {64, 8}; /* 4 KiB at 32 KiB, no unmap */
    mem_write(&e->mem, G_SEG, wz, sizeof(wz));
    build(e, VIRTIO_BLK_T_WRITE_ZEROES, 0, G_SEG, sizeof(wz), false);
    kick(e);
    assert_int_equal(wait_used(e), VIRTIO_BLK_S_OK);

    uint8_t *buf = malloc(FILE_SIZE);
    int fd = open(e->path, O_RDONLY);
    assert_int_equal(pread(fd, buf, FILE_SIZE, 0), FILE_SIZE);
    close(fd);
    for (int i = 0; i < 64 * 512; i++) {
        bool zero = (i >= 4096 && i < 12288) || (i >= 32768);
        assert_int_equal(buf[i], zero ? 0 : 0xaa);
    }
    assert_int_equal(buf[36864], 0xaa);
    struct stat st;
    assert_int_equal(stat(e->path, &st), 0);
    assert_int_equal(st.st_size, FILE_SIZE); /* KEEP_SIZE */
    free(buf);
}

static void test_read_only_and_truncated(void **state)
{
    struct env *e = *state;
    assert_int_equal(env_open(e, true, false), 0);
    assert_true(e->d.host_features & (1ULL << VIRTIO_BLK_F_RO));
    assert_false(e->d.host_features & (1ULL << VIRTIO_BLK_F_DISCARD));
    memset(mem_ptr(&e->mem, G_DATA, 512), 0x11, 512);
    assert_int_equal(rw(e, VIRTIO_BLK_T_OUT, 0, G_DATA, 512), VIRTIO_BLK_S_IOERR);
    uint8_t b = 0;
    int fd = open(e->path, O_RDWR);
    assert_int_equal(pread(fd, &b, 1, 0), 1);
    assert_int_equal(b, 0xaa);

    /* The file shrinks under us: reads past its new end fail cleanly. */
    assert_int_equal(ftruncate(fd, 4096), 0);
    close(fd);
    assert_int_equal(rw(e, VIRTIO_BLK_T_IN, 0, G_DATA, 4096), VIRTIO_BLK_S_OK);
    assert_int_equal(rw(e, VIRTIO_BLK_T_IN, 4, G_DATA, 4096), VIRTIO_BLK_S_IOERR);
    assert_int_equal(rw(e, VIRTIO_BLK_T_IN, 100, G_DATA, 512), VIRTIO_BLK_S_IOERR);
}

/* OUT or IN of 1024 bytes at sector 1, split 100 + 924 bytes at gpa: not sector-shaped. */
static int rw_split(struct env *e, uint32_t type, uint64_t gpa)
{
    uint8_t h[16];
    hdr_set(h, type, 1);
    mem_write(&e->mem, G_HDR, h, 16);
    uint16_t w = type == VIRTIO_BLK_T_IN ? 2 : 0;
    desc(e, 0, G_HDR, 16, 1);
    desc(e, 1, gpa, 100, 1 | w);
    desc(e, 2, gpa + 100, 924, 1 | w);
    desc(e, 3, G_STATUS, 1, 2);
    kick(e);
    return wait_used(e);
}

static void test_direct_misaligned(void **state)
{
    struct env *e = *state;
    assert_int_equal(env_open(e, false, true), 0);
    /* Guest buffers at odd addresses with odd segment lengths: O_DIRECT refuses those, so
     * they must go through the page-cached fd. */
    uint8_t *g = mem_ptr(&e->mem, G_DATA + 3, 1024);
    for (int i = 0; i < 1024; i++)
        g[i] = (uint8_t)(i ^ 0x5a);
    assert_int_equal(rw_split(e, VIRTIO_BLK_T_OUT, G_DATA + 3), VIRTIO_BLK_S_OK);
    uint8_t *back = mem_ptr(&e->mem, G_DATA + 8192, 1024);
    assert_int_equal(rw(e, VIRTIO_BLK_T_IN, 1, G_DATA + 8192, 1024), VIRTIO_BLK_S_OK);
    assert_memory_equal(g, back, 1024);
    memset(back, 0, 1024);
    assert_int_equal(rw_split(e, VIRTIO_BLK_T_IN, G_DATA + 8192 + 1), VIRTIO_BLK_S_OK);
    assert_memory_equal(g, back + 1, 1024);
}

static bool irq_pending(struct env *e)
{
    uint64_t v;
    return read(e->d.irq_fd, &v, sizeof(v)) == sizeof(v);
}

static void test_quiesce_waits(void **state)
{
    struct env *e = *state;
    assert_int_equal(env_open(e, false, false), 0);
    build(e, VIRTIO_BLK_T_IN, 0, G_DATA, 65536, true);
    kick(e); /* submitted; the completion has not been reaped */
    assert_int_equal(get16(e, G_USED + 2), 0);
    irq_pending(e);

    virtio_dev_quiesce(&e->d);
    assert_int_equal(get16(e, G_USED + 2), 1); /* finished during quiesce */
    uint8_t st = 0xff;
    mem_read(&e->mem, G_STATUS, &st, 1);
    assert_int_equal(st, VIRTIO_BLK_S_OK);
    assert_false(irq_pending(e)); /* withheld while paused */
    for (int i = 0; i < 5; i++)
        loop_run_once(&e->loop, 1);

    virtio_dev_resume(&e->d);
    assert_true(irq_pending(e));
}

/*
 * A drive's rate_limiter (64 KiB per 100 ms): a read the bucket cannot pay for stays in the
 * ring, a pause meanwhile finds nothing in flight, and it completes once the bucket refills;
 * the limits change live (PATCH /drives): a read waiting on an hour-long refill goes as soon as
 * the limit is lifted.
 */
static void test_rate_limited(void **state)
{
    struct env *e = *state;
    assert_int_equal(env_open(e, false, false), 0);
    struct rl_config rl = {.bandwidth = {.size = 65536, .refill_time_ms = 100}};
    blk_set_rate_limit(&e->d, &rl, RL_SET_BANDWIDTH);
    assert_int_equal(rw(e, VIRTIO_BLK_T_IN, 0, G_DATA, 65536), VIRTIO_BLK_S_OK); /* full */

    uint64_t t0 = clock_now_ns();
    build(e, VIRTIO_BLK_T_IN, 0, G_DATA, 65536, true);
    kick(e);
    loop_run_once(&e->loop, 0);
    assert_int_equal(get16(e, G_USED + 2), e->used_seen); /* deferred */
    virtio_dev_quiesce(&e->d);                            /* nothing in flight to wait for */
    virtio_dev_resume(&e->d);
    assert_int_equal(wait_used(e), VIRTIO_BLK_S_OK);
    assert_true(clock_now_ns() - t0 >= 50000000ULL); /* it had to wait for tokens */

    rl.bandwidth.refill_time_ms = 3600000; /* a fresh, full bucket, then an hour per 64 KiB */
    blk_set_rate_limit(&e->d, &rl, RL_SET_BANDWIDTH);
    assert_int_equal(rw(e, VIRTIO_BLK_T_IN, 0, G_DATA, 65536), VIRTIO_BLK_S_OK);
    build(e, VIRTIO_BLK_T_IN, 0, G_DATA, 65536, true);
    kick(e);
    for (int i = 0; i < 5; i++)
        loop_run_once(&e->loop, 10);
    assert_int_equal(get16(e, G_USED + 2), e->used_seen);
    struct rl_config none = {0};
    blk_set_rate_limit(&e->d, &none, RL_SET_BANDWIDTH | RL_SET_OPS);
    assert_int_equal(wait_used(e), VIRTIO_BLK_S_OK);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* If the drain were unbounded, the test would hang: after 3 s this feeds the pipe, so such a
 * drain returns late, and the test fails instead, unless told to stop first. */
struct feeder {
    int pipe_wr, stop_rd;
};

static void *feed_late(void *arg)
{
    struct feeder *f = arg;
    struct pollfd pfd = {.fd = f->stop_rd, .events = POLLIN};
    if (poll(&pfd, 1, 3000) == 0) {
        static uint8_t junk[4096];
        if (write(f->pipe_wr, junk, sizeof(junk)) < 0)
            perror("feed_late");
    }
    return NULL;
}

/* Pause keeps its bound when I/O hangs: with an empty pipe in the drive file's place, a read
 * never completes; quiesce gives up at its timeout and the device runs on, and the request
 * completes, and is seen, once the pipe has data. */
static void test_quiesce_bounded(void **state)
{
    struct env *e = *state;
    assert_int_equal(env_open(e, false, false), 0);
    struct blk *b = e->d.priv;
    int p[2];
    assert_int_equal(pipe(p), 0);
    int fds[2] = {p[0], p[0]};
    assert_int_equal(io_uring_register_files_update(&b->ring, 0, fds, 2), 2);
    build(e, VIRTIO_BLK_T_IN, 0, G_DATA, 4096, true);
    kick(e);
    for (int i = 0; i < 5; i++)
        loop_run_once(&e->loop, 1);
    assert_int_equal(get16(e, G_USED + 2), 0); /* the read waits on the pipe */

    int stop[2];
    assert_int_equal(pipe(stop), 0);
    struct feeder f = {.pipe_wr = p[1], .stop_rd = stop[0]};
    pthread_t feeder;
    assert_int_equal(pthread_create(&feeder, NULL, feed_late, &f), 0);
    uint64_t t0 = now_ms();
    int rc = virtio_dev_quiesce_within(&e->d, 200);
    uint64_t took = now_ms() - t0;
    assert_int_equal(write(stop[1], "x", 1), 1);
    pthread_join(feeder, NULL);
    close(stop[0]);
    close(stop[1]);
    assert_int_equal(rc, -ETIMEDOUT);
    assert_true(took >= 190 && took < 2000);
    assert_int_equal(get16(e, G_USED + 2), 0);
    virtio_dev_resume(&e->d); /* what the VM does when it withdraws the pause */

    uint8_t data[4096];
    memset(data, 0x5a, sizeof(data));
    assert_int_equal(write(p[1], data, sizeof(data)), (ssize_t)sizeof(data));
    assert_int_equal(wait_used(e), VIRTIO_BLK_S_OK);
    assert_memory_equal(mem_ptr(&e->mem, G_DATA, 4096), data, 4096);
    assert_true(irq_pending(e));
    /* Nothing in flight: the next pause succeeds at once. */
    assert_int_equal(virtio_dev_quiesce_within(&e->d, 200), 0);
    virtio_dev_resume(&e->d);
    close(p[0]);
    close(p[1]);
}

static void test_swap_backing(void **state)
{
    struct env *e = *state;
    assert_int_equal(env_open(e, false, false), 0);
    char other[80];
    snprintf(other, sizeof(other), "%s-new", e->path);
    make_file(other, 8192, 0x33);
    irq_pending(e);
    char err[256];
    assert_int_equal(blk_swap_backing(&e->d, other, err, sizeof(err)), 0);
    assert_int_equal(blk_capacity_sectors(&e->d), 16);
    uint64_t cap = 0;
    e->d.ops->config_read(&e->d, 0, (uint8_t *)&cap, 8);
    assert_int_equal(cap, 16);
    assert_true(e->d.isr & VIRTIO_ISR_CONFIG);
    assert_true(irq_pending(e));
    uint8_t *g = mem_ptr(&e->mem, G_DATA, 512);
    assert_int_equal(rw(e, VIRTIO_BLK_T_IN, 15, G_DATA, 512), VIRTIO_BLK_S_OK);
    assert_int_equal(g[0], 0x33);
    assert_int_equal(rw(e, VIRTIO_BLK_T_IN, 16, G_DATA, 512), VIRTIO_BLK_S_IOERR);

    /* Zero-byte file: capacity 0. A missing file: error, old file kept. */
    make_file(other, 0, 0);
    assert_int_equal(blk_swap_backing(&e->d, other, err, sizeof(err)), 0);
    assert_int_equal(blk_capacity_sectors(&e->d), 0);
    assert_true(blk_swap_backing(&e->d, "/nonexistent/amber", err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "/nonexistent/amber"));
    assert_int_equal(blk_capacity_sectors(&e->d), 0);
    unlink(other);
}

/* The fds this process holds on path; *nonblocking counts those with O_NONBLOCK (fdinfo). */
static int count_fds_on(const char *path, int *nonblocking)
{
    int n = 0;
    *nonblocking = 0;
    for (int fd = 0; fd < 1024; fd++) {
        char link[64], target[256], info[64];
        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        ssize_t len = readlink(link, target, sizeof(target) - 1);
        if (len < 0)
            continue;
        target[len] = 0;
        if (strcmp(target, path) != 0)
            continue;
        n++;
        snprintf(info, sizeof(info), "/proc/self/fdinfo/%d", fd);
        FILE *f = fopen(info, "r");
        assert_non_null(f);
        char line[128];
        unsigned flags = 0;
        while (fgets(line, sizeof(line), f))
            if (sscanf(line, "flags: %o", &flags) == 1)
                break;
        fclose(f);
        *nonblocking += (flags & O_NONBLOCK) != 0;
    }
    return n;
}

/* The backing fds are blocking once open (io_uring would answer EAGAIN on O_NONBLOCK ones). */
static void test_backing_fds_blocking(void **state)
{
    struct env *e = *state;
    assert_int_equal(env_open(e, false, false), 0);
    int nonblocking;
    assert_true(count_fds_on(e->path, &nonblocking) >= 1);
    assert_int_equal(nonblocking, 0);
}

/*
 * A FIFO as a drive, at create and at swap, read-only (whose blocking open would wait for a
 * writer forever) and direct: refused at once with a clear error, the old backing kept. SIGALRM
 * ends the test if an open blocks.
 */
static void test_fifo_refused(void **state)
{
    struct env *e = *state;
    assert_int_equal(env_open(e, true, false), 0);
    char fifo[80];
    snprintf(fifo, sizeof(fifo), "%s-fifo", e->path);
    unlink(fifo);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    char err[256] = "";
    alarm(5);
    assert_int_equal(blk_swap_backing(&e->d, fifo, err, sizeof(err)), -EINVAL);
    alarm(0);
    assert_non_null(strstr(err, "not a regular file or block device"));
    assert_int_equal(blk_capacity_sectors(&e->d), FILE_SIZE / 512);

    struct virtio_dev d2 = {0};
    for (int direct = 0; direct <= 1; direct++) {
        struct drive_config cfg = {.read_only = true, .direct = direct};
        snprintf(cfg.id, sizeof(cfg.id), "fifo");
        snprintf(cfg.path, sizeof(cfg.path), "%s", fifo);
        err[0] = 0;
        alarm(5);
        assert_int_equal(blk_create(&d2, &cfg, &e->mem, &e->loop, 0xd0001000, 6, err, sizeof(err)),
                         -EINVAL);
        alarm(0);
        assert_non_null(strstr(err, "not a regular file or block device"));
    }
    /* A character device is refused too. */
    assert_true(blk_swap_backing(&e->d, "/dev/null", err, sizeof(err)) < 0);
    assert_int_equal(blk_capacity_sectors(&e->d), FILE_SIZE / 512);
    unlink(fifo);
}

static void test_missing_file(void **state)
{
    struct env *e = *state;
    snprintf(e->path, sizeof(e->path), "/nonexistent/amber-disk");
    assert_int_equal(env_open(e, false, false), -ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_good),
        cmocka_unit_test(test_parse_hostile),
        cmocka_unit_test_setup_teardown(test_write_read_flush_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_discard_write_zeroes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_only_and_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_direct_misaligned, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quiesce_waits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_limited, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quiesce_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_swap_backing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fifo_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backing_fds_blocking, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
