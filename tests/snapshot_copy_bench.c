/* Measures the snapshot memory copy with 1..N threads: guest RAM to a sparse file, no KVM needed.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "board/snapshot.h"

#define REPEATS 5

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr,
                "usage: %s RAM_MIB DATA_MIB FILE THREADS...\n"
                "  RAM_MIB of guest RAM, DATA_MIB of it written (64 KiB of every 128 KiB),\n"
                "  copied to FILE %d times per thread count; prints median (min-max)\n",
                argv[0], REPEATS);
        return 2;
    }
    uint64_t ram = strtoull(argv[1], NULL, 0) << 20, data = strtoull(argv[2], NULL, 0) << 20;
    const char *path = argv[3];
    struct guest_mem m;
    if (mem_init(&m, ram)) {
        fprintf(stderr, "cannot map %s MiB\n", argv[1]);
        return 1;
    }
    for (uint64_t off = 0, done = 0; done < data && off < ram; off += 128 << 10, done += 64 << 10)
        for (uint64_t k = 0; k < (64 << 10); k += 8)
            *(uint64_t *)(m.map + off + k) = off + k + 1;
    for (int a = 4; a < argc; a++) {
        unsigned n = (unsigned)atoi(argv[a]);
        double ms[REPEATS];
        uint64_t written = 0;
        for (int r = 0; r < REPEATS; r++) {
            unlink(path);
            int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
            written = 0;
            double t0 = now_ms();
            int ret = fd < 0 ? -1 : snapshot_write_mem_threads(&m, fd, n, &written);
            ms[r] = now_ms() - t0;
            if (fd >= 0)
                close(fd);
            if (ret) {
                fprintf(stderr, "copy failed: %d\n", ret);
                return 1;
            }
        }
        qsort(ms, REPEATS, sizeof(ms[0]), cmp_double);
        printf("threads %u: %llu MiB written, %.1f ms (%.1f-%.1f), %.2f GiB/s of data\n", n,
               (unsigned long long)(written >> 20), ms[REPEATS / 2], ms[0], ms[REPEATS - 1],
               (double)written / (1 << 30) / (ms[REPEATS / 2] / 1e3));
    }
    unlink(path);
    mem_free(&m);
    return 0;
}
