/* TAP back-end helpers: /dev/net/tun attach with a vnet header, offload control. */
#include "devices/virtio/tap.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

int tap_open(const char *ifname, char *err, size_t errlen)
{
    if (!ifname[0] || strlen(ifname) >= IFNAMSIZ) {
        snprintf(err, errlen, "TAP name '%s' is empty or longer than %d bytes", ifname,
                 IFNAMSIZ - 1);
        return -EINVAL;
    }
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        int rc = -errno;
        snprintf(err, errlen, "TAP %s: cannot open /dev/net/tun: %s%s", ifname, strerror(-rc),
                 rc == -ENOENT ? " (is the tun module loaded?)" : "");
        return rc;
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    memcpy(ifr.ifr_name, ifname, strlen(ifname));
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    int rc;
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        rc = -errno;
        const char *hint = rc == -EBUSY    ? " (already attached to another process?)"
                           : rc == -EPERM  ? " (needs CAP_NET_ADMIN or a TAP owned by this user)"
                           : rc == -EINVAL ? " (exists but is not a TAP with these flags?)"
                                           : "";
        snprintf(err, errlen, "TAP %s: TUNSETIFF failed: %s%s", ifname, strerror(-rc), hint);
        goto fail;
    }
    int hdr_len = TAP_VNET_HDR_LEN;
    if (ioctl(fd, TUNSETVNETHDRSZ, &hdr_len) < 0) {
        rc = -errno;
        snprintf(err, errlen, "TAP %s: TUNSETVNETHDRSZ failed: %s", ifname, strerror(-rc));
        goto fail;
    }
    return fd;
fail:
    close(fd);
    return rc;
}

int tap_set_offload(int fd, unsigned tun_flags)
{
    return ioctl(fd, TUNSETOFFLOAD, (unsigned long)tun_flags) < 0 ? -errno : 0;
}
