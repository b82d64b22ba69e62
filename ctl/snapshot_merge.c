/* Laying a Diff snapshot's memory file over its base: the data runs of one copied into the other.
 */
#include "ctl/snapshot_merge.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAGE_BYTES 4096ULL
#define COPY_BYTES (1ULL << 20)

/* The next data run of fd at or after pos: [*start, *end), or *start == size when none. */
static int next_run(int fd, uint64_t pos, uint64_t size, uint64_t *start, uint64_t *end)
{
    off_t d = lseek(fd, (off_t)pos, SEEK_DATA);
    if (d < 0) {
        if (errno != ENXIO)
            return -errno;
        *start = *end = size;
        return 0;
    }
    off_t h = lseek(fd, d, SEEK_HOLE);
    if (h < 0)
        return -errno;
    *start = (uint64_t)d;
    *end = (uint64_t)h < size ? (uint64_t)h : size;
    return 0;
}

static int copy_run(int base_fd, int diff_fd, uint8_t *buf, uint64_t start, uint64_t end)
{
    for (uint64_t off = start; off < end;) {
        uint64_t want = end - off < COPY_BYTES ? end - off : COPY_BYTES;
        ssize_t n = pread(diff_fd, buf, want, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        for (ssize_t done = 0; done < n;) {
            ssize_t w = pwrite(base_fd, buf + done, (size_t)(n - done), (off_t)(off + done));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0)
                return w < 0 ? -errno : -EIO;
            done += w;
        }
        off += (uint64_t)n;
    }
    return 0;
}

/* Check that the two files fit together; *size gets their size. */
static int check_pair(int base_fd, int diff_fd, uint64_t *size, char *err, size_t errlen)
{
    struct stat b, d;
    if (fstat(base_fd, &b) < 0 || fstat(diff_fd, &d) < 0) {
        snprintf(err, errlen, "cannot stat: %s", strerror(errno));
        return -errno;
    }
    if (!S_ISREG(b.st_mode) || !S_ISREG(d.st_mode)) {
        snprintf(err, errlen, "both memory files must be regular files");
        return -EINVAL;
    }
    if (b.st_dev == d.st_dev && b.st_ino == d.st_ino) {
        snprintf(err, errlen, "the base and the diff are the same file");
        return -EINVAL;
    }
    if (b.st_size != d.st_size || b.st_size <= 0 || (uint64_t)b.st_size % PAGE_BYTES) {
        snprintf(err, errlen,
                 "the base holds %lld bytes and the diff %lld: a Diff lays over the memory file "
                 "of the same VM (same RAM size, a multiple of 4 KiB)",
                 (long long)b.st_size, (long long)d.st_size);
        return -EINVAL;
    }
    *size = (uint64_t)b.st_size;
    return 0;
}

int snapshot_merge(int base_fd, int diff_fd, uint64_t *copied, char *err, size_t errlen)
{
    uint64_t size, start, end;
    *copied = 0;
    int ret = check_pair(base_fd, diff_fd, &size, err, errlen);
    if (ret)
        return ret;
    /* Every run is checked before the first byte moves: a file that is no Diff leaves the
     * base as it was. */
    for (uint64_t pos = 0; pos < size; pos = end) {
        if ((ret = next_run(diff_fd, pos, size, &start, &end)) != 0) {
            snprintf(err, errlen, "cannot find the diff's data (SEEK_DATA): %s", strerror(-ret));
            return ret;
        }
        if (start % PAGE_BYTES || end % PAGE_BYTES) {
            snprintf(err, errlen,
                     "the diff's data run at byte %llu does not start and end on 4 KiB pages: "
                     "not a Diff memory file, or a file system that does not keep its holes",
                     (unsigned long long)start);
            return -EINVAL;
        }
    }
    uint8_t *buf = malloc(COPY_BYTES);
    if (!buf)
        return -ENOMEM;
    for (uint64_t pos = 0; pos < size && !ret; pos = end) {
        ret = next_run(diff_fd, pos, size, &start, &end);
        if (!ret && start < end)
            ret = copy_run(base_fd, diff_fd, buf, start, end);
        if (!ret)
            *copied += end - start;
    }
    free(buf);
    if (ret)
        snprintf(err, errlen, "cannot copy the diff into the base: %s", strerror(-ret));
    return ret;
}
