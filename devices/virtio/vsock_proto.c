/* virtio-vsock wire format and CONNECT line: decode, validate and encode, no I/O. */
#include "devices/virtio/vsock_proto.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static uint16_t get_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint64_t get_le64(const uint8_t *p)
{
    return (uint64_t)get_le32(p) | ((uint64_t)get_le32(p + 4) << 32);
}

static void put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
    put_le32(p, (uint32_t)v);
    put_le32(p + 4, (uint32_t)(v >> 32));
}

enum vsock_verdict vsock_hdr_parse(const uint8_t *raw, uint64_t payload_avail, uint64_t guest_cid,
                                   struct vsock_hdr *h, const char **why)
{
    h->src_cid = get_le64(raw + 0);
    h->dst_cid = get_le64(raw + 8);
    h->src_port = get_le32(raw + 16);
    h->dst_port = get_le32(raw + 20);
    h->len = get_le32(raw + 24);
    h->type = get_le16(raw + 28);
    h->op = get_le16(raw + 30);
    h->flags = get_le32(raw + 32);
    h->buf_alloc = get_le32(raw + 36);
    h->fwd_cnt = get_le32(raw + 40);
    *why = NULL;

    if (h->src_cid != guest_cid) {
        *why = "src_cid is not the guest's cid";
        return VSOCK_PKT_DROP;
    }
    if (h->dst_cid != VSOCK_HOST_CID) {
        *why = "dst_cid is not the host";
        return VSOCK_PKT_DROP;
    }
    enum vsock_verdict bad = h->op == VSOCK_OP_RST ? VSOCK_PKT_DROP : VSOCK_PKT_RST;
    if (h->type != VSOCK_TYPE_STREAM) {
        *why = "socket type is not STREAM";
        return bad;
    }
    if (h->op < VSOCK_OP_REQUEST || h->op > VSOCK_OP_CREDIT_REQUEST) {
        *why = "unknown op";
        return bad;
    }
    if (h->op == VSOCK_OP_RW) {
        if (h->len == 0) {
            *why = "RW without payload";
            return bad;
        }
        if (h->len > VSOCK_MAX_PKT_BYTES) {
            *why = "payload larger than 64 KiB";
            return bad;
        }
        if (h->len > payload_avail) {
            *why = "len larger than the descriptor chain";
            return bad;
        }
    }
    return VSOCK_PKT_OK;
}

void vsock_hdr_encode(const struct vsock_hdr *h, uint8_t *out)
{
    put_le64(out + 0, h->src_cid);
    put_le64(out + 8, h->dst_cid);
    put_le32(out + 16, h->src_port);
    put_le32(out + 20, h->dst_port);
    put_le32(out + 24, h->len);
    put_le16(out + 28, h->type);
    put_le16(out + 30, h->op);
    put_le32(out + 32, h->flags);
    put_le32(out + 36, h->buf_alloc);
    put_le32(out + 40, h->fwd_cnt);
}

int vsock_connect_parse(const char *buf, size_t len, uint32_t *port)
{
    static const char verb[] = "CONNECT ";
    const char *nl = memchr(buf, '\n', len);
    if (!nl)
        return len < VSOCK_CONNECT_MAX ? -EAGAIN : -EINVAL;
    size_t line = (size_t)(nl - buf) + 1;
    if (line != len || line > VSOCK_CONNECT_MAX)
        return -EINVAL;
    size_t vlen = sizeof(verb) - 1;
    if (line < vlen + 2 || memcmp(buf, verb, vlen) != 0)
        return -EINVAL;
    size_t ndigits = line - 1 - vlen;
    if (ndigits > 10)
        return -EINVAL;
    uint64_t v = 0;
    for (size_t i = 0; i < ndigits; i++) {
        char ch = buf[vlen + i];
        if (ch < '0' || ch > '9')
            return -EINVAL;
        v = v * 10 + (uint64_t)(ch - '0');
    }
    if (v > UINT32_MAX)
        return -EINVAL;
    *port = (uint32_t)v;
    return 0;
}

size_t vsock_ok_format(uint32_t port, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "OK %u\n", port);
    return n < 0 ? 0 : (size_t)n;
}
