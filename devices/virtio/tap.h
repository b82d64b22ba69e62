/* TAP back-end helpers: open a TAP with a virtio-net header, set its offloads. */
#ifndef AMBER_DEVICES_VIRTIO_TAP_H
#define AMBER_DEVICES_VIRTIO_TAP_H

#include <stddef.h>

/* Bytes of virtio_net_hdr_v1 (with num_buffers) the TAP reads and writes before each frame. */
#define TAP_VNET_HDR_LEN 12

/*
 * Attach to (or create) TAP interface ifname as IFF_TAP | IFF_NO_PI | IFF_VNET_HDR with a
 * TAP_VNET_HDR_LEN header, non-blocking and close-on-exec. Returns the fd, or -errno with a
 * message naming the TAP in err (missing /dev/net/tun, busy TAP, no permission).
 */
int tap_open(const char *ifname, char *err, size_t errlen);

/* TUNSETOFFLOAD with TUN_F_* flags: which offloaded frames the kernel may hand us. 0 or -errno. */
int tap_set_offload(int fd, unsigned tun_flags);

#endif
