/* libFuzzer target: the input is a small guest's RAM holding a virtqueue; pop and push it dry. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "devices/virtio/virtq.h"
#include "vmm/log.h"
#include "vmm/mem.h"

/*
 * Input layout:
 *   byte 0: queue size selector (power of two 1..256; high bit set = raw, maybe invalid, size)
 *   byte 1: bit 0 EVENT_IDX, bit 1 disable notifications, bit 2 rings in the high region
 *   bytes 2..: low RAM contents (zero-padded), then high RAM contents
 * Low RAM is 16 KiB at GPA 0; high RAM is 4 KiB at 4 GiB. Each region is its own heap
 * block of exactly its size, so ASan flags any access past a region's end.
 */
#define LOW_BYTES  0x4000u
#define HIGH_BYTES 0x1000u
#define HIGH_GPA   0x100000000ULL
#define HDR_BYTES  2u

static struct virtq_chain chain;

static void touch_chain(const struct virtq_chain *c)
{
    volatile uint8_t sink = 0;
    for (unsigned i = 0; i < c->nout + c->nin; i++) {
        const uint8_t *p = c->iov[i].iov_base;
        size_t n = c->iov[i].iov_len;
        sink ^= p[0];
        sink ^= p[n - 1];
    }
    uint8_t buf[256];
    uint64_t got = virtq_chain_read(c, 3, buf, sizeof(buf));
    if (got > c->out_len)
        abort();
    memset(buf, 0xa5, sizeof(buf));
    got = virtq_chain_write(c, 1, buf, sizeof(buf));
    if (got > c->in_len)
        abort();
    (void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < HDR_BYTES)
        return 0;
    log_set_level(LOG_ERROR); /* malformed chains log warnings by design */

    uint8_t *low = calloc(1, LOW_BYTES);
    uint8_t *high = calloc(1, HIGH_BYTES);
    if (!low || !high)
        goto out;
    size_t rest = size - HDR_BYTES;
    size_t nlow = rest < LOW_BYTES ? rest : LOW_BYTES;
    memcpy(low, data + HDR_BYTES, nlow);
    rest -= nlow;
    memcpy(high, data + HDR_BYTES + nlow, rest < HIGH_BYTES ? rest : HIGH_BYTES);

    struct guest_mem mem = {
        .region = {{.gpa = 0, .size = LOW_BYTES, .host = low},
                   {.gpa = HIGH_GPA, .size = HIGH_BYTES, .host = high}},
        .nregions = 2,
        .size = LOW_BYTES + HIGH_BYTES,
    };

    uint8_t sel = data[0], flags = data[1];
    struct virtq q = {.mem = &mem};
    q.size = (sel & 0x80) ? (uint16_t)((sel & 0x7f) * 3) : (uint16_t)(1u << (sel % 9));
    q.event_idx = flags & 1;
    q.indirect_desc = !(flags & 8); /* negotiated unless bit 3 says not */
    if (flags & 4) {
        q.desc_gpa = HIGH_GPA;
        q.avail_gpa = HIGH_GPA + 0x800;
        q.used_gpa = HIGH_GPA + 0xa00;
    } else {
        q.desc_gpa = 0;
        q.avail_gpa = 0x1000;
        q.used_gpa = 0x1400;
    }
    if (virtq_validate(&q, 256))
        goto out;
    q.ready = true;
    if (flags & 2)
        virtq_enable_notify(&q, false);

    for (unsigned iter = 0; iter < 2u * q.size + 4; iter++) {
        (void)virtq_has_work(&q);
        int r = virtq_pop(&q, &chain);
        if (r <= 0)
            break;
        if (chain.head >= q.size || chain.nout + chain.nin > VIRTQ_MAX_IOV)
            abort();
        touch_chain(&chain);
        uint32_t written = chain.in_len > 64 ? 64 : (uint32_t)chain.in_len;
        if (virtq_push(&q, chain.head, written))
            abort(); /* a popped head is always pushable */
        (void)virtq_should_notify(&q);
        if (iter == 3)
            virtq_enable_notify(&q, !(flags & 2));
    }
out:
    free(low);
    free(high);
    return 0;
}
