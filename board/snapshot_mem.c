/* Snapshot files on disk: guest RAM as a sparse memory file, and the state file read back. */
#include "board/snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define PAGE_BYTES  4096ull
#define CHUNK_BYTES (2ull << 20) /* mincore and write-batching granularity */

static bool page_is_zero(const uint8_t *p)
{
    const uint64_t *w = (const uint64_t *)p;
    for (size_t i = 0; i < PAGE_BYTES / 8; i += 8) {
        if (w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7])
            return false;
    }
    return true;
}

static int write_all(int fd, const uint8_t *p, uint64_t len, uint64_t off)
{
    while (len) {
        ssize_t n = pwrite(fd, p, len > (1u << 30) ? (1u << 30) : len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EIO;
        p += n;
        off += (uint64_t)n;
        len -= (uint64_t)n;
    }
    return 0;
}

int snapshot_write_mem(const struct guest_mem *m, int fd, uint64_t *written)
{
    if (ftruncate(fd, (off_t)m->map_size) < 0)
        return -errno;
    unsigned char vec[CHUNK_BYTES / PAGE_BYTES];
    for (uint64_t chunk = 0; chunk < m->map_size; chunk += CHUNK_BYTES) {
        uint64_t len = m->map_size - chunk < CHUNK_BYTES ? m->map_size - chunk : CHUNK_BYTES;
        uint64_t npages = len / PAGE_BYTES;
        const uint8_t *base = m->map + chunk;
        /* Anonymous RAM: a page never touched is not resident and reads as zero, so skip it
         * without faulting it in. A file-backed (restored) page that left the page cache
         * still holds data in the old file: read those. */
        if (m->file_backed || mincore((void *)base, len, vec) < 0)
            memset(vec, 1, npages);
        uint64_t run_start = 0, run_len = 0;
        for (uint64_t i = 0; i <= npages; i++) {
            bool data = i < npages && (vec[i] & 1) && !page_is_zero(base + i * PAGE_BYTES);
            if (data) {
                if (!run_len)
                    run_start = i;
                run_len++;
                continue;
            }
            if (run_len) {
                int ret = write_all(fd, base + run_start * PAGE_BYTES, run_len * PAGE_BYTES,
                                    chunk + run_start * PAGE_BYTES);
                if (ret)
                    return ret;
                *written += run_len * PAGE_BYTES;
                run_len = 0;
            }
        }
    }
    return 0;
}

int snapshot_file_read(struct snapshot_file *f, const char *path, char *err, size_t errlen)
{
    memset(f, 0, sizeof(*f));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int ret = -errno;
        snprintf(err, errlen, "cannot open snapshot '%s': %s", path, strerror(errno));
        return ret;
    }
    struct stat st;
    int ret = 0;
    if (fstat(fd, &st) < 0) {
        ret = -errno;
        snprintf(err, errlen, "cannot stat snapshot '%s': %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode) || st.st_size <= 0 || (uint64_t)st.st_size > SNAP_MAX_FILE_BYTES) {
        snprintf(err, errlen, "snapshot '%s' is not a regular file of 1 byte to %u MiB", path,
                 SNAP_MAX_FILE_BYTES >> 20);
        ret = -EINVAL;
        goto out;
    }
    f->len = (size_t)st.st_size;
    f->buf = malloc(f->len);
    if (!f->buf) {
        ret = -ENOMEM;
        goto out;
    }
    size_t got = 0;
    while (got < f->len) {
        ssize_t n = read(fd, f->buf + got, f->len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            snprintf(err, errlen, "cannot read snapshot '%s': %s", path,
                     n < 0 ? strerror(errno) : "file shrank");
            ret = n < 0 ? -errno : -EIO;
            goto out;
        }
        got += (size_t)n;
    }
    ret = snapr_open(&f->r, f->buf, f->len, err, errlen);
out:
    close(fd);
    if (ret)
        snapshot_file_free(f);
    return ret;
}

void snapshot_file_free(struct snapshot_file *f)
{
    free(f->buf);
    memset(f, 0, sizeof(*f));
}

int snapshot_check_mem_file(int fd, uint64_t mem_bytes, char *err, size_t errlen)
{
    struct stat st;
    if (fstat(fd, &st) < 0) {
        snprintf(err, errlen, "cannot stat the memory file: %s", strerror(errno));
        return -EINVAL;
    }
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != mem_bytes) {
        snprintf(err, errlen,
                 "memory file holds %llu bytes, the snapshot's guest RAM is %llu bytes",
                 (unsigned long long)st.st_size, (unsigned long long)mem_bytes);
        return -EINVAL;
    }
    return 0;
}
