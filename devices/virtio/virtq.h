/* Split virtqueues: the only code that walks guest descriptors, with every access checked. */
#ifndef AMBER_DEVICES_VIRTIO_VIRTQ_H
#define AMBER_DEVICES_VIRTIO_VIRTQ_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vmm/mem.h"

#define VIRTQ_MAX_SIZE 1024 /* largest queue we offer (power of two) */
#define VIRTQ_MAX_IOV  VIRTQ_MAX_SIZE

/* Descriptor flags and ring flags (virtio 1.x, 2.7.5 - 2.7.8). */
#define VIRTQ_DESC_F_NEXT          1
#define VIRTQ_DESC_F_WRITE         2
#define VIRTQ_DESC_F_INDIRECT      4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY     1

/* One queue's guest-programmed state (set through the transport) and our private indices. */
struct virtq {
    const struct guest_mem *mem;
    uint16_t size; /* QueueNum chosen by the driver, power of two <= max */
    bool ready;
    bool event_idx;     /* VIRTIO_F_EVENT_IDX negotiated */
    bool indirect_desc; /* VIRTIO_F_INDIRECT_DESC negotiated; without it INDIRECT is malformed */
    uint64_t desc_gpa, avail_gpa, used_gpa;
    uint16_t last_avail;     /* next avail ring entry we will consume */
    uint16_t used_idx;       /* next used slot we fill (elements written so far) */
    uint16_t used_published; /* used->idx as last published to the driver */
    uint16_t signalled_used; /* used_idx at the last interrupt (event idx) */
    bool signalled_valid;
    bool notify_off; /* virtq_enable_notify(false) in effect */
};

/*
 * A popped descriptor chain, split into device-readable (out) then device-writable (in)
 * host iovecs. Every iovec points inside guest RAM.
 */
struct virtq_chain {
    uint16_t head;
    unsigned nout, nin;
    uint64_t out_len, in_len;        /* total bytes */
    struct iovec iov[VIRTQ_MAX_IOV]; /* out first, then in */
};

/*
 * Check the ring addresses against guest RAM and the size against max_size. Called when
 * the driver sets QueueReady. Returns 0 or -EINVAL.
 */
int virtq_validate(const struct virtq *q, uint16_t max_size);

/* Forget all indices (device reset / queue reset). */
void virtq_reset(struct virtq *q);

/*
 * Take the next available chain. Returns 1 with *c filled, 0 if the ring is empty, or
 * -EINVAL if the guest published something malformed (bad index, address, length, loop,
 * chain too long, nested indirect, indirect without VIRTIO_F_INDIRECT_DESC, readable after
 * writable). On -EINVAL a line has been logged and the caller must put the device into
 * NEEDS_RESET.
 */
int virtq_pop(struct virtq *q, struct virtq_chain *c);

/*
 * Give back the chain the last virtq_pop returned, unused: the next virtq_pop walks it again
 * (from the guest's memory, checked anew). For a device that defers a request it popped, such
 * as a rate-limited one; nothing of the chain may have been pushed or kept.
 */
void virtq_unpop(struct virtq *q);

/*
 * Write a used element (head, written bytes) without publishing it: the driver cannot see it
 * until virtq_publish. Use it for entries that must appear together (the buffers of one merged
 * RX frame) or to batch many completions behind one index store. Every element written must
 * be published before the caller drops the device lock. Returns 0, -EINVAL if head is bad,
 * or -ENOSPC if a whole ring of elements is already waiting to be published.
 */
int virtq_push_elem(struct virtq *q, uint16_t head, uint32_t written);

/* Make every element written by virtq_push_elem visible: one store-release of used->idx. */
void virtq_publish(struct virtq *q);

/* virtq_push_elem then virtq_publish: return one chain to the guest with written bytes. */
int virtq_push(struct virtq *q, uint16_t head, uint32_t written);

/*
 * True if the driver wants an interrupt for what was published since the last call (honours
 * VIRTQ_AVAIL_F_NO_INTERRUPT, or used_event with EVENT_IDX). Updates the signalled mark.
 * Elements written but not yet published do not count.
 */
bool virtq_should_notify(struct virtq *q);

/* True if the avail ring holds entries we have not popped. */
bool virtq_has_work(const struct virtq *q);

/*
 * virtq_has_work for a device about to stop and wait for a kick: if the ring looks empty,
 * first make sure the driver will kick for its next entry (EVENT_IDX: publish avail_event,
 * full fence, look again), so an entry added meanwhile is never left without a kick. Without
 * the fence, our avail_event store can still sit in the store buffer when we read the avail
 * index, the driver reads the stale avail_event, and neither side moves.
 */
bool virtq_has_work_or_arm(struct virtq *q);

/*
 * One line of q's state for a stall report: size, ready, the driver's avail idx (read from
 * guest memory, "?" if the ring is not valid) against last_avail, used idx published and last
 * signalled, and the avail_event/flags the driver last saw. Always NUL-terminates buf.
 */
void virtq_describe(const struct virtq *q, char *buf, size_t len);

/*
 * The driver's avail index now, read from guest memory, into *idx. With EVENT_IDX, also publish
 * avail_event = that index, so the driver kicks us when it adds its next entry even though we
 * do not pop it. Returns 0, or -EINVAL for a ring outside guest RAM.
 */
int virtq_avail_idx_arm(struct virtq *q, uint16_t *idx);

/* The driver's avail index now, into *idx. Returns 0, or -EINVAL for a ring outside RAM. */
int virtq_avail_idx(const struct virtq *q, uint16_t *idx);

/*
 * With EVENT_IDX, publish avail_event = last_avail so the driver kicks us for the next
 * entry; without it, toggle VIRTQ_USED_F_NO_NOTIFY. Used by devices that poll.
 */
void virtq_enable_notify(struct virtq *q, bool enable);

/* Copy up to len bytes out of / into a chain's out / in iovecs from byte offset off.
 * Return the number of bytes copied. */
uint64_t virtq_chain_read(const struct virtq_chain *c, uint64_t off, void *dst, uint64_t len);
uint64_t virtq_chain_write(const struct virtq_chain *c, uint64_t off, const void *src,
                           uint64_t len);

#endif
