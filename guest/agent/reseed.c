/* amber-agent reseed: credit host randomness from stdin to the kernel pool and reseed the CRNG. */
#include "guest/agent/agent.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/random.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define RESEED_MIN_BYTES 32
#define RESEED_MAX_BYTES 512

/*
 * A restored clone starts with its parent's CRNG state, so until the kernel reseeds, clones
 * would draw the same numbers. The host sends fresh bytes; RNDADDENTROPY mixes and credits
 * them (a plain write to /dev/urandom mixes without crediting and does not reseed) and
 * RNDRESEEDCRNG makes the next read use them. Both need CAP_SYS_ADMIN (the agent is root).
 */
int reseed_main(int argc, char **argv)
{
    (void)argv;
    struct {
        struct rand_pool_info info;
        unsigned char buf[RESEED_MAX_BYTES];
    } req;
    size_t got = 0;
    if (argc != 1) {
        fprintf(stderr, "usage: amber-agent reseed < RANDOM_BYTES (%d to %d bytes)\n",
                RESEED_MIN_BYTES, RESEED_MAX_BYTES);
        return 2;
    }
    while (got < sizeof(req.buf)) {
        ssize_t n = read(0, req.buf + got, sizeof(req.buf) - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fprintf(stderr, "reseed: read: %s\n", strerror(errno));
            return 1;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    if (got < RESEED_MIN_BYTES) {
        fprintf(stderr, "reseed: %zu bytes of randomness, need at least %d\n", got,
                RESEED_MIN_BYTES);
        return 1;
    }
    int fd = open("/dev/urandom", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "reseed: /dev/urandom: %s\n", strerror(errno));
        return 1;
    }
    req.info.entropy_count = (int)(got * 8);
    req.info.buf_size = (int)got;
    int rc = 0;
    if (ioctl(fd, RNDADDENTROPY, &req.info) < 0) {
        fprintf(stderr, "reseed: RNDADDENTROPY: %s\n", strerror(errno));
        rc = 1;
    } else if (ioctl(fd, RNDRESEEDCRNG) < 0) {
        fprintf(stderr, "reseed: RNDRESEEDCRNG: %s\n", strerror(errno));
        rc = 1;
    }
    close(fd);
    return rc;
}
