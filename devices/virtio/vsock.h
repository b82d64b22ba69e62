/* virtio-vsock device (id 19) with Firecracker's hybrid Unix-socket back-end. */
#ifndef AMBER_DEVICES_VIRTIO_VSOCK_H
#define AMBER_DEVICES_VIRTIO_VSOCK_H

#include <stddef.h>
#include <stdint.h>

#include "devices/virtio/virtio.h"
#include "config/config.h"
#include "vmm/loop.h"
#include "vmm/mem.h"

/*
 * Create the listening socket for host-initiated connections at uds_path: a stale socket file
 * there is unlinked first (any other kind of file is an error), then bind, chmod 0600, listen.
 * Non-blocking and close-on-exec. Returns the fd, or -errno with a reason in err. This is what
 * PUT /vsock calls, so the path exists before the VM does; a repeated PUT closes the old fd
 * and calls this again.
 */
int vsock_listen(const char *uds_path, char *err, size_t errlen);

/*
 * Create the vsock device on transport d (virtio_dev_init is done here) using listen_fd from
 * vsock_listen(cfg->uds_path). The device takes ownership of listen_fd in every case (it is
 * closed on failure). cfg->cid must be >= 3. Guest-initiated connections to port P go to the
 * Unix socket "<uds_path>_P". Returns 0, or -errno with a reason in err.
 */
int vsock_create_fd(struct virtio_dev *d, const struct vsock_config *cfg, int listen_fd,
                    const struct guest_mem *mem, struct loop *loop, uint64_t mmio_base,
                    unsigned gsi, char *err, size_t errlen);

/* vsock_listen(cfg->uds_path) followed by vsock_create_fd. Returns 0 or -errno. */
int vsock_create(struct virtio_dev *d, const struct vsock_config *cfg, const struct guest_mem *mem,
                 struct loop *loop, uint64_t mmio_base, unsigned gsi, char *err, size_t errlen);

#endif
