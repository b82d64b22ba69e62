/* libFuzzer target: blk_parse_request on chains of arbitrary shape and content. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "devices/virtio/blk.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Layout: [nseg][cap lo][cap hi][features][ro] then per segment [len lo][len hi][writable],
 * then the bytes the segments cover, in order. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 5)
        return 0;
    static struct virtq_chain c;
    static struct blk_req r;
    unsigned nseg = data[0] % 12;
    struct blk_limits lim = {.capacity_sectors = (uint64_t)data[1] | (uint64_t)data[2] << 8,
                             .features = (uint64_t)data[3] << 9,
                             .read_only = data[4] & 1};
    size_t pos = 5;
    if (size < pos + 3 * nseg)
        return 0;
    uint8_t *buf = malloc(size);
    memcpy(buf, data, size);
    size_t body = pos + 3 * nseg;
    memset(&c, 0, sizeof(c));
    bool seen_in = false;
    for (unsigned i = 0; i < nseg; i++, pos += 3) {
        size_t len = (size_t)(data[pos] | data[pos + 1] << 8);
        bool w = data[pos + 2] & 1;
        if (body + len > size)
            len = size - body;
        if (!w && seen_in)
            break; /* virtq guarantees readable before writable */
        seen_in |= w;
        c.iov[c.nout + c.nin] = (struct iovec){buf + body, len};
        if (w)
            c.nin++, c.in_len += len;
        else
            c.nout++, c.out_len += len;
        body += len;
    }
    int st = blk_parse_request(&c, &lim, &r);
    if (st == 0 && (r.type == 0 || r.type == 1)) {
        uint64_t sum = 0;
        for (unsigned i = 0; i < r.niov; i++)
            sum += r.iov[i].iov_len;
        if (sum != r.data_len || r.data_len % 512 ||
            r.offset_bytes + r.data_len > lim.capacity_sectors * 512 ||
            (r.type == 1 && lim.read_only))
            abort();
    }
    if (st >= 0 && !r.status)
        abort();
    free(buf);
    return 0;
}
