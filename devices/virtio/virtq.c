/* Split virtqueues (virtio 1.x, 2.7): descriptor walking, used ring updates, notification
 * suppression. Every guest address goes through mem_ptr(); nothing here trusts the guest. */
#include "devices/virtio/virtq.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "vmm/log.h"

/* Guest-visible layout (little-endian; amber runs on x86-64 only). */
struct virtq_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

#define VIRTQ_DESC_SIZE 16u
_Static_assert(sizeof(struct virtq_desc) == VIRTQ_DESC_SIZE, "descriptor layout");

/* Offsets inside the avail ring (flags, idx, ring[size], used_event). */
#define AVAIL_FLAGS 0u
#define AVAIL_IDX   2u
#define AVAIL_RING  4u
/* Offsets inside the used ring (flags, idx, {id,len}[size], avail_event). */
#define USED_FLAGS    0u
#define USED_IDX      2u
#define USED_RING     4u
#define USED_ELEM_LEN 8u

static uint64_t desc_bytes(uint16_t size)
{
    return (uint64_t)VIRTQ_DESC_SIZE * size;
}

static uint64_t avail_bytes(uint16_t size)
{
    return 6 + 2 * (uint64_t)size;
}

static uint64_t used_bytes(uint16_t size)
{
    return 6 + (uint64_t)USED_ELEM_LEN * size;
}

static bool is_pow2(uint32_t v)
{
    return v && !(v & (v - 1));
}

/*
 * Host pointer to a naturally aligned 16-bit ring field at gpa, or NULL. The alignment check
 * keeps the atomic accesses below well-defined even if a caller skipped virtq_validate.
 */
static uint16_t *ring_u16(const struct virtq *q, uint64_t gpa)
{
    if (gpa & 1)
        return NULL;
    return mem_ptr(q->mem, gpa, 2);
}

static bool ring_sane(const struct virtq *q)
{
    return q->mem && is_pow2(q->size) && q->size <= VIRTQ_MAX_SIZE;
}

/* The driver writes avail->idx concurrently; acquire pairs with its release so ring entries
 * behind the index are visible once we see it. */
static int load_avail_idx(const struct virtq *q, uint16_t *idx)
{
    uint16_t *p = ring_u16(q, q->avail_gpa + AVAIL_IDX);
    if (!p)
        return -EINVAL;
    *idx = __atomic_load_n(p, __ATOMIC_ACQUIRE);
    return 0;
}

int virtq_validate(const struct virtq *q, uint16_t max_size)
{
    if (!q->mem || !is_pow2(q->size) || q->size > max_size || q->size > VIRTQ_MAX_SIZE) {
        log_warn_rl("virtq: bad queue size %u (max %u)", q->size, max_size);
        return -EINVAL;
    }
    /* Alignment per spec 2.7: descriptors 16, avail 2, used 4. */
    if ((q->desc_gpa & 15) || (q->avail_gpa & 1) || (q->used_gpa & 3)) {
        log_warn_rl("virtq: misaligned rings desc=%#llx avail=%#llx used=%#llx",
                    (unsigned long long)q->desc_gpa, (unsigned long long)q->avail_gpa,
                    (unsigned long long)q->used_gpa);
        return -EINVAL;
    }
    if (!mem_ptr(q->mem, q->desc_gpa, desc_bytes(q->size)) ||
        !mem_ptr(q->mem, q->avail_gpa, avail_bytes(q->size)) ||
        !mem_ptr(q->mem, q->used_gpa, used_bytes(q->size))) {
        log_warn_rl("virtq: ring outside guest RAM desc=%#llx avail=%#llx used=%#llx size=%u",
                    (unsigned long long)q->desc_gpa, (unsigned long long)q->avail_gpa,
                    (unsigned long long)q->used_gpa, q->size);
        return -EINVAL;
    }
    return 0;
}

void virtq_reset(struct virtq *q)
{
    q->ready = false;
    q->last_avail = 0;
    q->used_idx = 0;
    q->used_published = 0;
    q->signalled_used = 0;
    q->signalled_valid = false;
    q->notify_off = false;
}

/* Walk state for one chain: which table we read descriptors from. */
struct walk {
    const struct virtq *q;
    const uint8_t *table; /* host pointer to the descriptor table in use */
    uint32_t table_len;   /* entries in that table */
    bool indirect;
};

static int chain_add(struct virtq_chain *c, const struct virtq *q, const struct virtq_desc *d)
{
    bool writable = d->flags & VIRTQ_DESC_F_WRITE;
    if (!writable && c->nin) {
        log_warn_rl("virtq: readable descriptor after writable one (wrong direction)");
        return -EINVAL;
    }
    /* The used ring reports lengths as u32, so a chain's total must fit one. */
    if ((uint64_t)d->len > UINT32_MAX - (c->out_len + c->in_len)) {
        log_warn_rl("virtq: chain longer than 4 GiB");
        return -EINVAL;
    }
    if (d->len == 0)
        return 0; /* nothing to transfer; no iovec, but still counted as a descriptor */
    void *p = mem_ptr(q->mem, d->addr, d->len);
    if (!p) {
        log_warn_rl("virtq: buffer %#llx+%u outside guest RAM", (unsigned long long)d->addr,
                    d->len);
        return -EINVAL;
    }
    if (c->nout + c->nin >= VIRTQ_MAX_IOV) {
        log_warn_rl("virtq: chain has too many buffers");
        return -EINVAL;
    }
    c->iov[c->nout + c->nin] = (struct iovec){.iov_base = p, .iov_len = d->len};
    if (writable) {
        c->nin++;
        c->in_len += d->len;
    } else {
        c->nout++;
        c->out_len += d->len;
    }
    return 0;
}

/* Switch the walk to the indirect table described by d. */
static int walk_enter_indirect(struct walk *w, const struct virtq_desc *d)
{
    if (w->indirect) {
        log_warn_rl("virtq: nested indirect descriptor");
        return -EINVAL;
    }
    if (d->flags & VIRTQ_DESC_F_NEXT) {
        log_warn_rl("virtq: indirect descriptor with NEXT set");
        return -EINVAL;
    }
    if (d->len == 0 || d->len % VIRTQ_DESC_SIZE || d->len / VIRTQ_DESC_SIZE > VIRTQ_MAX_SIZE) {
        log_warn_rl("virtq: bad indirect table length %u", d->len);
        return -EINVAL;
    }
    const uint8_t *t = mem_ptr(w->q->mem, d->addr, d->len);
    if (!t) {
        log_warn_rl("virtq: indirect table %#llx+%u outside guest RAM", (unsigned long long)d->addr,
                    d->len);
        return -EINVAL;
    }
    w->table = t;
    w->table_len = d->len / VIRTQ_DESC_SIZE;
    w->indirect = true;
    return 0;
}

/*
 * Walk the chain starting at head. Descriptors are copied out of guest memory once, so the
 * guest changing them mid-walk cannot make us act on two different values.
 */
static int walk_chain(const struct virtq *q, uint16_t head, struct virtq_chain *c)
{
    struct walk w = {.q = q, .table_len = q->size};
    w.table = mem_ptr(q->mem, q->desc_gpa, desc_bytes(q->size));
    if (!w.table) {
        log_warn_rl("virtq: descriptor table outside guest RAM");
        return -EINVAL;
    }
    c->head = head;
    c->nout = c->nin = 0;
    c->out_len = c->in_len = 0;

    uint32_t idx = head;
    uint32_t seen = 0; /* descriptors visited in the current table: bounds loops */
    for (;;) {
        struct virtq_desc d;
        memcpy(&d, w.table + (uint64_t)idx * VIRTQ_DESC_SIZE, sizeof(d));
        if (++seen > w.table_len) {
            log_warn_rl("virtq: descriptor chain loops or exceeds %u entries", w.table_len);
            return -EINVAL;
        }
        if (d.flags & VIRTQ_DESC_F_INDIRECT) {
            if (!q->indirect_desc) {
                log_warn_rl("virtq: indirect descriptor but VIRTIO_F_INDIRECT_DESC not negotiated");
                return -EINVAL;
            }
            int err = walk_enter_indirect(&w, &d);
            if (err)
                return err;
            idx = 0;
            seen = 0;
            continue;
        }
        int err = chain_add(c, q, &d);
        if (err)
            return err;
        if (!(d.flags & VIRTQ_DESC_F_NEXT))
            return 0;
        idx = d.next;
        if (idx >= w.table_len) {
            log_warn_rl("virtq: next index %u out of range (%u)", idx, w.table_len);
            return -EINVAL;
        }
    }
}

/* With EVENT_IDX, tell the driver which avail index should make it kick us next. */
static void publish_avail_event(struct virtq *q)
{
    uint16_t *p = ring_u16(q, q->used_gpa + USED_RING + (uint64_t)USED_ELEM_LEN * q->size);
    if (p)
        __atomic_store_n(p, q->last_avail, __ATOMIC_RELAXED);
}

int virtq_pop(struct virtq *q, struct virtq_chain *c)
{
    if (!ring_sane(q))
        return -EINVAL;
    uint16_t avail_idx;
    if (load_avail_idx(q, &avail_idx))
        return -EINVAL;
    if (avail_idx == q->last_avail) {
        if (!q->event_idx || q->notify_off)
            return 0;
        /* Re-arm, then look again: the driver may have added an entry after our first read
         * and before it could see the new avail_event, in which case it will not kick. */
        publish_avail_event(q);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        if (load_avail_idx(q, &avail_idx) || avail_idx == q->last_avail)
            return 0;
    }
    uint16_t pending = (uint16_t)(avail_idx - q->last_avail);
    if (pending > q->size) {
        log_warn_rl("virtq: avail idx %u is %u entries ahead of %u (size %u)", avail_idx, pending,
                    q->last_avail, q->size);
        return -EINVAL;
    }
    uint16_t *slot =
        ring_u16(q, q->avail_gpa + AVAIL_RING + 2 * (uint64_t)(q->last_avail & (q->size - 1)));
    if (!slot)
        return -EINVAL;
    uint16_t head = __atomic_load_n(slot, __ATOMIC_RELAXED);
    if (head >= q->size) {
        log_warn_rl("virtq: head index %u out of range (%u)", head, q->size);
        return -EINVAL;
    }
    int err = walk_chain(q, head, c);
    if (err)
        return err;
    q->last_avail++;
    if (q->event_idx && !q->notify_off)
        publish_avail_event(q);
    return 1;
}

void virtq_unpop(struct virtq *q)
{
    q->last_avail--;
}

int virtq_push_elem(struct virtq *q, uint16_t head, uint32_t written)
{
    if (!ring_sane(q) || head >= q->size) {
        log_warn_rl("virtq: push of bad head %u", head);
        return -EINVAL;
    }
    if ((uint16_t)(q->used_idx - q->used_published) >= q->size) {
        log_warn_rl("virtq: %u used elements written but not published", q->size);
        return -ENOSPC;
    }
    uint64_t elem =
        q->used_gpa + USED_RING + (uint64_t)USED_ELEM_LEN * (q->used_idx & (q->size - 1));
    uint32_t *e = (elem & 3) ? NULL : mem_ptr(q->mem, elem, USED_ELEM_LEN);
    if (!e) {
        log_warn_rl("virtq: used ring outside guest RAM");
        return -EINVAL;
    }
    __atomic_store_n(&e[0], (uint32_t)head, __ATOMIC_RELAXED);
    __atomic_store_n(&e[1], written, __ATOMIC_RELAXED);
    q->used_idx++;
    return 0;
}

void virtq_publish(struct virtq *q)
{
    if (q->used_idx == q->used_published || !ring_sane(q))
        return;
    uint16_t *idx = ring_u16(q, q->used_gpa + USED_IDX);
    if (!idx) {
        log_warn_rl("virtq: used ring outside guest RAM");
        return;
    }
    /* Release: every element must be visible before the index that publishes it. */
    __atomic_store_n(idx, q->used_idx, __ATOMIC_RELEASE);
    q->used_published = q->used_idx;
}

int virtq_push(struct virtq *q, uint16_t head, uint32_t written)
{
    int err = virtq_push_elem(q, head, written);
    if (err)
        return err;
    virtq_publish(q);
    return 0;
}

/* virtio 1.x 2.7.10: notify if new_idx moved past event since old. */
static bool need_event(uint16_t event, uint16_t new_idx, uint16_t old)
{
    return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old);
}

bool virtq_should_notify(struct virtq *q)
{
    if (!ring_sane(q))
        return false;
    /* Full fence: our used->idx store must be ordered before reading the driver's
     * suppression state, or both sides could decide the other will act. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (q->event_idx) {
        uint16_t old = q->signalled_used;
        bool valid = q->signalled_valid;
        q->signalled_used = q->used_published;
        q->signalled_valid = true;
        if (!valid)
            return true;
        uint16_t *ev = ring_u16(q, q->avail_gpa + AVAIL_RING + 2 * (uint64_t)q->size);
        if (!ev)
            return true;
        return need_event(__atomic_load_n(ev, __ATOMIC_RELAXED), q->used_published, old);
    }
    uint16_t *flags = ring_u16(q, q->avail_gpa + AVAIL_FLAGS);
    if (!flags)
        return true;
    return !(__atomic_load_n(flags, __ATOMIC_RELAXED) & VIRTQ_AVAIL_F_NO_INTERRUPT);
}

void virtq_describe(const struct virtq *q, char *buf, size_t len)
{
    uint16_t avail = 0;
    bool avail_ok = ring_sane(q) && load_avail_idx(q, &avail) == 0;
    char avail_s[8] = "?";
    if (avail_ok)
        snprintf(avail_s, sizeof(avail_s), "%u", avail);
    snprintf(buf, len,
             "size %u ready %d avail %s last_avail %u used %u published %u signalled %u%s "
             "event_idx %d notify_off %d",
             q->size, q->ready, avail_s, q->last_avail, q->used_idx, q->used_published,
             q->signalled_used, q->signalled_valid ? "" : "(none)", q->event_idx, q->notify_off);
}

int virtq_avail_idx(const struct virtq *q, uint16_t *idx)
{
    return ring_sane(q) ? load_avail_idx(q, idx) : -EINVAL;
}

int virtq_avail_idx_arm(struct virtq *q, uint16_t *idx)
{
    if (virtq_avail_idx(q, idx))
        return -EINVAL;
    uint16_t *p = ring_u16(q, q->used_gpa + USED_RING + (uint64_t)USED_ELEM_LEN * q->size);
    if (q->event_idx && p)
        __atomic_store_n(p, *idx, __ATOMIC_RELAXED);
    return 0;
}

bool virtq_has_work(const struct virtq *q)
{
    uint16_t idx;
    if (!ring_sane(q) || load_avail_idx(q, &idx))
        return false;
    return idx != q->last_avail;
}

bool virtq_has_work_or_arm(struct virtq *q)
{
    if (virtq_has_work(q))
        return true;
    if (!q->event_idx || q->notify_off || !ring_sane(q))
        return false; /* without EVENT_IDX the driver kicks unless told not to */
    publish_avail_event(q);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    return virtq_has_work(q);
}

void virtq_enable_notify(struct virtq *q, bool enable)
{
    if (!ring_sane(q))
        return;
    q->notify_off = !enable;
    if (q->event_idx) {
        if (enable)
            publish_avail_event(q);
    } else {
        uint16_t *flags = ring_u16(q, q->used_gpa + USED_FLAGS);
        if (flags)
            __atomic_store_n(flags, enable ? 0 : VIRTQ_USED_F_NO_NOTIFY, __ATOMIC_RELAXED);
    }
    /* The caller re-checks virtq_has_work next; order the store before that load. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

uint64_t virtq_chain_read(const struct virtq_chain *c, uint64_t off, void *dst, uint64_t len)
{
    uint8_t *out = dst;
    uint64_t done = 0;
    for (unsigned i = 0; i < c->nout && done < len; i++) {
        uint64_t l = c->iov[i].iov_len;
        if (off >= l) {
            off -= l;
            continue;
        }
        uint64_t n = l - off < len - done ? l - off : len - done;
        memcpy(out + done, (uint8_t *)c->iov[i].iov_base + off, n);
        done += n;
        off = 0;
    }
    return done;
}

uint64_t virtq_chain_write(const struct virtq_chain *c, uint64_t off, const void *src, uint64_t len)
{
    const uint8_t *in = src;
    uint64_t done = 0;
    for (unsigned i = c->nout; i < c->nout + c->nin && done < len; i++) {
        uint64_t l = c->iov[i].iov_len;
        if (off >= l) {
            off -= l;
            continue;
        }
        uint64_t n = l - off < len - done ? l - off : len - done;
        memcpy((uint8_t *)c->iov[i].iov_base + off, in + done, n);
        done += n;
        off = 0;
    }
    return done;
}
