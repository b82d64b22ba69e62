/* virtio-vsock wire format (virtio 1.x, 5.10) and the host CONNECT line: pure parse/encode. */
#ifndef AMBER_DEVICES_VIRTIO_VSOCK_PROTO_H
#define AMBER_DEVICES_VIRTIO_VSOCK_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define VSOCK_HDR_SIZE      44
#define VSOCK_HOST_CID      2
#define VSOCK_MAX_PKT_BYTES (64u * 1024) /* largest payload accepted or produced */
#define VSOCK_CONNECT_MAX   32           /* longest "CONNECT <port>\n" line, newline included */

#define VSOCK_TYPE_STREAM 1

enum vsock_op {
    VSOCK_OP_INVALID = 0,
    VSOCK_OP_REQUEST = 1,
    VSOCK_OP_RESPONSE = 2,
    VSOCK_OP_RST = 3,
    VSOCK_OP_SHUTDOWN = 4,
    VSOCK_OP_RW = 5,
    VSOCK_OP_CREDIT_UPDATE = 6,
    VSOCK_OP_CREDIT_REQUEST = 7,
};

/* SHUTDOWN flags: the sender will receive no more (RCV) / send no more (SEND). */
#define VSOCK_SHUTDOWN_RCV  1u
#define VSOCK_SHUTDOWN_SEND 2u
#define VSOCK_SHUTDOWN_BOTH (VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND)

/* struct virtio_vsock_hdr in host byte order. */
struct vsock_hdr {
    uint64_t src_cid, dst_cid;
    uint32_t src_port, dst_port;
    uint32_t len;
    uint16_t type, op;
    uint32_t flags;
    uint32_t buf_alloc, fwd_cnt;
};

/* What to do with a guest packet after vsock_hdr_parse. */
enum vsock_verdict {
    VSOCK_PKT_OK = 0, /* well-formed: hand it to the connection layer */
    VSOCK_PKT_DROP,   /* ignore silently-ish (log): wrong addressing or an RST we cannot answer */
    VSOCK_PKT_RST,    /* malformed but addressed to us: answer with RST */
};

/*
 * Decode the 44-byte little-endian header in raw[0..VSOCK_HDR_SIZE) into *h and judge it
 * against the guest's cid and payload_avail, the bytes the chain holds after the header.
 * Checks: src_cid == guest_cid and dst_cid == host (else DROP); type STREAM, known op, and
 * for RW 0 < len <= min(payload_avail, VSOCK_MAX_PKT_BYTES) (else RST, or DROP for an RST).
 * *why is set to a static reason string for anything but OK.
 */
enum vsock_verdict vsock_hdr_parse(const uint8_t *raw, uint64_t payload_avail, uint64_t guest_cid,
                                   struct vsock_hdr *h, const char **why);

/* Encode *h as 44 little-endian bytes into out. */
void vsock_hdr_encode(const struct vsock_hdr *h, uint8_t *out);

/*
 * Parse a host client's "CONNECT <port>\n" line held in buf[0..len). Strict: the literal
 * "CONNECT", one space, 1-10 decimal digits fitting in u32, then '\n' as the last byte.
 * Returns 0 with *port set, -EAGAIN if no newline yet and len < VSOCK_CONNECT_MAX (read more),
 * or -EINVAL (malformed, too long, or bytes after the newline).
 */
int vsock_connect_parse(const char *buf, size_t len, uint32_t *port);

/* Format "OK <port>\n" into out (at least 16 bytes); returns its length. */
size_t vsock_ok_format(uint32_t port, char *out, size_t outlen);

#endif
