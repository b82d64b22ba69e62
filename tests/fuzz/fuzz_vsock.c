/* libFuzzer target: arbitrary guest packets and host events through the vsock engine. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "devices/virtio/vsock_mux.h"
#include "vmm/log.h"

/* Fake host sockets: reads return patterned bytes, writes take what room allows. */
struct fz {
    struct vsock_mux m;
    int next_fd, open_fds;
    int connect_err;
    size_t write_room, read_avail;
    int read_end; /* once read_avail is used up: 0 (EOF), -EAGAIN or -ECONNRESET */
};

static int fz_connect(void *o, uint32_t port)
{
    struct fz *f = o;
    if (f->connect_err)
        return f->connect_err;
    f->open_fds++;
    return f->next_fd++;
}

static ssize_t fz_read(void *o, int fd, void *buf, size_t len)
{
    struct fz *f = o;
    if (f->read_avail == 0)
        return f->read_end;
    size_t n = len < f->read_avail ? len : f->read_avail;
    memset(buf, 0x5a, n);
    f->read_avail -= n;
    return (ssize_t)n;
}

static ssize_t fz_write(void *o, int fd, const void *buf, size_t len)
{
    struct fz *f = o;
    if (f->write_room == 0)
        return -EAGAIN;
    if (f->write_room == 1)
        return -EPIPE;
    size_t n = len < f->write_room ? len : f->write_room;
    volatile uint8_t sink = ((const uint8_t *)buf)[n - 1]; /* touch the last byte */
    (void)sink;
    f->write_room -= n;
    return (ssize_t)n;
}

static void fz_shutdown(void *o, int fd)
{
}

static void fz_close(void *o, struct vsock_conn *c)
{
    ((struct fz *)o)->open_fds--;
}

static void fz_watch(void *o, struct vsock_conn *c)
{
}

static const struct vsock_io fz_io = {fz_connect,  fz_read,  fz_write,
                                      fz_shutdown, fz_close, fz_watch};

/* The engine's own invariants, checked after every step. */
static void check(const struct vsock_mux *m)
{
    unsigned n = 0;
    for (const struct vsock_conn *c = m->all; c; c = c->next) {
        n++;
        if (c->buf_len > c->buf_alloc || c->rx_cnt - c->fwd_cnt != c->buf_len)
            abort();
        if (vsock_mux_find(m, c->local_port, c->peer_port) != c)
            abort();
        if (c->in_rx != (c->rx_prev || c->rx_next || m->rx_head == c))
            abort();
    }
    if (n != m->nconns || n > VSOCK_MAX_CONNS || m->rst_count > VSOCK_RST_RING)
        abort();
}

static struct vsock_conn *pick(struct vsock_mux *m, uint8_t k)
{
    struct vsock_conn *c = m->all;
    for (unsigned i = 0; c && i < k % 8; i++)
        c = c->next;
    return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t pkt[VSOCK_HDR_SIZE + VSOCK_MAX_PKT_BYTES];
    static struct fz f;
    static bool quiet;
    if (!quiet) {
        log_set_level(LOG_ERROR);
        quiet = true;
    }
    memset(&f, 0, sizeof(f));
    vsock_mux_init(&f.m, 3, &fz_io, &f);
    f.next_fd = 100;
    f.write_room = SIZE_MAX;
    f.read_end = -EAGAIN;

    size_t i = 0;
    while (i < size) {
        uint8_t cmd = data[i++];
        uint8_t arg = i < size ? data[i++] : 0;
        switch (cmd % 7) {
        case 0: { /* a raw guest packet: arg*4 bytes after a header */
            size_t len = (size_t)arg * 4 + VSOCK_HDR_SIZE;
            if (len > size - i)
                len = size - i;
            if (len >= VSOCK_HDR_SIZE)
                vsock_mux_tx(&f.m, data + i, len);
            i += len;
            break;
        }
        case 1: { /* a plausible guest packet: small port space so packets meet connections */
            if (size - i < 12)
                goto done;
            struct vsock_hdr h = {
                .src_cid = 3,
                .dst_cid = 2,
                .src_port = data[i] % 4,
                .dst_port = (data[i + 1] & 0x80) ? VSOCK_EPHEMERAL_FIRST + data[i + 1] % 4
                                                 : data[i + 1] % 4,
                .type = VSOCK_TYPE_STREAM,
                .op = (uint16_t)(arg % 8),
                .flags = data[i + 2] % 4,
                .buf_alloc = (uint32_t)data[i + 3] << (data[i + 4] % 24),
                .fwd_cnt = (uint32_t)data[i + 5] << (data[i + 6] % 24),
                .len = ((uint32_t)data[i + 7] << 8 | data[i + 8]) * (data[i + 9] % 4 + 1),
            };
            i += 12;
            size_t avail = h.len > VSOCK_MAX_PKT_BYTES ? VSOCK_MAX_PKT_BYTES : h.len;
            vsock_hdr_encode(&h, pkt);
            memset(pkt + VSOCK_HDR_SIZE, 0xa5, avail);
            vsock_mux_tx(&f.m, pkt, VSOCK_HDR_SIZE + avail);
            break;
        }
        case 2: /* a host client asks for a guest port */
            f.open_fds++;
            if (vsock_mux_connect(&f.m, f.next_fd++, arg % 4) < 0)
                f.open_fds--;
            break;
        case 3: { /* host socket events */
            struct vsock_conn *c = pick(&f.m, arg >> 3);
            if (c)
                vsock_mux_host_event(&f.m, c, arg & 1, arg & 2, arg & 4);
            break;
        }
        case 4: /* the guest posts an rx buffer of some size */
            vsock_mux_rx(&f.m, pkt, VSOCK_HDR_SIZE + (size_t)arg * 300);
            break;
        case 5: /* time passes */
            f.m.now_ms += (uint64_t)arg * 50;
            vsock_mux_expire(&f.m);
            if (arg == 255)
                vsock_mux_reset(&f.m);
            break;
        case 6: /* the host's mood */
            f.write_room = (arg & 3) == 0 ? 0 : (arg & 3) == 1 ? 1 : (size_t)arg * 1000;
            f.read_avail = (size_t)(arg >> 2) * 2000;
            f.read_end = (arg & 0x40) ? 0 : (arg & 0x80) ? -ECONNRESET : -EAGAIN;
            f.connect_err = (arg & 0x20) ? -ECONNREFUSED : 0;
            break;
        }
        check(&f.m);
    }
done:
    while (vsock_mux_rx(&f.m, pkt, sizeof(pkt)) > 0)
        check(&f.m);
    vsock_mux_reset(&f.m);
    if (f.open_fds != 0 || f.m.nconns != 0)
        abort(); /* every fd closed, every connection freed */
    return 0;
}
