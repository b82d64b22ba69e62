/* Snapshot files on disk: guest RAM as a sparse memory file, and the state file read back. */
#include "board/snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>
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

/* The chunks [first, end) of m, as snapshot_write_mem describes. */
static int write_range(const struct guest_mem *m, int fd, uint64_t first, uint64_t end,
                       uint64_t *written)
{
    unsigned char vec[CHUNK_BYTES / PAGE_BYTES];
    for (uint64_t chunk = first; chunk < end; chunk += CHUNK_BYTES) {
        uint64_t len = end - chunk < CHUNK_BYTES ? end - chunk : CHUNK_BYTES;
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

struct copy_job {
    const struct guest_mem *m;
    int fd;
    uint64_t first, end, written;
    int ret;
    bool threaded;
    pthread_t thread;
};

static void *copy_thread(void *arg)
{
    struct copy_job *j = arg;
    j->ret = write_range(j->m, j->fd, j->first, j->end, &j->written);
    return NULL;
}

int snapshot_write_mem_threads(const struct guest_mem *m, int fd, unsigned nthreads,
                               uint64_t *written)
{
    if (ftruncate(fd, (off_t)m->map_size) < 0)
        return -errno;
    uint64_t nchunks = (m->map_size + CHUNK_BYTES - 1) / CHUNK_BYTES;
    if (nthreads > SNAPSHOT_MAX_COPY_THREADS)
        nthreads = SNAPSHOT_MAX_COPY_THREADS;
    if (nthreads > nchunks)
        nthreads = (unsigned)nchunks;
    if (nthreads <= 1)
        return write_range(m, fd, 0, m->map_size, written);
    struct copy_job jobs[SNAPSHOT_MAX_COPY_THREADS];
    int ret = 0;
    for (unsigned i = 0; i < nthreads; i++) {
        uint64_t first = nchunks * i / nthreads * CHUNK_BYTES;
        uint64_t end = nchunks * (i + 1) / nthreads * CHUNK_BYTES;
        jobs[i] = (struct copy_job){
            .m = m, .fd = fd, .first = first, .end = end < m->map_size ? end : m->map_size};
        /* The last range runs here; the others in threads (or here, if one cannot start). */
        jobs[i].threaded =
            i + 1 < nthreads && pthread_create(&jobs[i].thread, NULL, copy_thread, &jobs[i]) == 0;
        if (!jobs[i].threaded)
            copy_thread(&jobs[i]);
    }
    for (unsigned i = 0; i < nthreads; i++) {
        if (jobs[i].threaded)
            pthread_join(jobs[i].thread, NULL);
        *written += jobs[i].written;
        if (jobs[i].ret && !ret)
            ret = jobs[i].ret;
    }
    return ret;
}

int snapshot_write_mem(const struct guest_mem *m, int fd, uint64_t *written)
{
    return snapshot_write_mem_threads(m, fd, 1, written);
}

static bool bit_set(const uint64_t *bits, uint64_t pg)
{
    return bits[pg / 64] >> (pg % 64) & 1;
}

int snapshot_write_mem_pages(const struct guest_mem *m, int fd, const uint64_t *bits,
                             uint64_t *written)
{
    if (ftruncate(fd, (off_t)m->map_size) < 0)
        return -errno;
    uint64_t npages = m->map_size / PAGE_BYTES;
    for (uint64_t pg = 0; pg < npages;) {
        if (!bit_set(bits, pg)) {
            pg++;
            continue;
        }
        uint64_t end = pg + 1;
        while (end < npages && bit_set(bits, end) && end - pg < CHUNK_BYTES / PAGE_BYTES)
            end++;
        /* Zero pages too: in a Diff a hole means "unchanged", so a page the guest zeroed must
         * be written as data. */
        int ret = write_all(fd, m->map + pg * PAGE_BYTES, (end - pg) * PAGE_BYTES, pg * PAGE_BYTES);
        if (ret)
            return ret;
        *written += (end - pg) * PAGE_BYTES;
        pg = end;
    }
    return 0;
}

int snapshot_check_holes(int fd, const uint64_t *bits, uint64_t npages, char *err, size_t errlen)
{
    uint64_t size = npages * PAGE_BYTES, pos = 0;
    while (pos < size) {
        off_t data = lseek(fd, (off_t)pos, SEEK_DATA);
        if (data < 0 && errno != ENXIO) {
            snprintf(err, errlen, "cannot look for holes: %s", strerror(errno));
            return -errno;
        }
        uint64_t dstart = data < 0 ? size : (uint64_t)data;
        off_t hole = data < 0 ? (off_t)size : lseek(fd, data, SEEK_HOLE);
        if (hole < 0) {
            snprintf(err, errlen, "cannot look for holes: %s", strerror(errno));
            return -errno;
        }
        uint64_t dend = (uint64_t)hole < size ? (uint64_t)hole : size;
        /* [pos, dstart) is a hole: no page in it may be dirty; [dstart, dend) data: all must. */
        for (uint64_t pg = pos / PAGE_BYTES; pg < (dend + PAGE_BYTES - 1) / PAGE_BYTES; pg++) {
            bool want = pg * PAGE_BYTES >= dstart;
            if (bit_set(bits, pg) != want || (dstart % PAGE_BYTES) || (dend % PAGE_BYTES)) {
                snprintf(err, errlen,
                         "the file system does not keep 4 KiB holes (page %llu reads as %s); "
                         "a Diff memory file needs one that does (ext4, xfs, tmpfs, btrfs)",
                         (unsigned long long)pg, want ? "data" : "a hole");
                return -EOPNOTSUPP;
            }
        }
        pos = dend;
    }
    return 0;
}

int snapshot_kvm_dirty_log(int vm_fd, const struct guest_mem *m, uint64_t *bits)
{
    if (!m->dirty)
        return -EINVAL;
    for (unsigned i = 0; i < m->nregions; i++) {
        const struct mem_region *r = &m->region[i];
        uint64_t pages = r->size / MEM_PAGE_BYTES, words = (pages + 63) / 64;
        uint64_t first = (uint64_t)(r->host - m->map) / MEM_PAGE_BYTES;
        uint64_t *slot_bits = calloc(words, sizeof(uint64_t));
        if (!slot_bits)
            return -ENOMEM;
        struct kvm_dirty_log log = {.slot = i, .dirty_bitmap = slot_bits};
        if (ioctl(vm_fd, KVM_GET_DIRTY_LOG, &log) < 0) {
            int ret = -errno;
            free(slot_bits);
            return ret;
        }
        for (uint64_t w = 0; w < words; w++) {
            for (uint64_t v = slot_bits[w]; v; v &= v - 1) {
                uint64_t pg = first + w * 64 + (uint64_t)__builtin_ctzll(v);
                if (pg < m->dirty_words * 64)
                    bits[pg / 64] |= 1ULL << (pg % 64);
            }
        }
        free(slot_bits);
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
