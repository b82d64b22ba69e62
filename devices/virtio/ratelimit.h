/* Token-bucket rate limiters for virtio devices (Firecracker's RateLimiter), and their timer. */
#ifndef AMBER_DEVICES_VIRTIO_RATELIMIT_H
#define AMBER_DEVICES_VIRTIO_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "vmm/loop.h"

/*
 * One bucket. It starts full (budget == size) with one_time_burst extra tokens; the budget
 * refills at size tokens per refill_ns, up to size. A request of n tokens passes when the
 * burst and budget together hold n, or, for n > size, as soon as the budget is full: it then
 * leaves the budget below zero (a debt that refilling pays back), so a request larger than the
 * bucket is slowed to the refill rate instead of blocked for ever. size 0: no limit.
 */
struct token_bucket {
    uint64_t size;
    uint64_t refill_ns;
    int64_t budget;
    uint64_t burst;
    uint64_t last_ns; /* refill has been credited up to this time */
};

/* A bandwidth (bytes) and an ops (requests) bucket; a request must pass both. */
struct rate_limiter {
    struct token_bucket bw, ops;
};

/*
 * Set the buckets named in mask (RL_SET_BANDWIDTH, RL_SET_OPS) from cfg, full, with their
 * one-time burst, as of now_ns; the others keep their state. rl_set(rl, cfg, ~0u, now) sets up
 * a fresh limiter. Times are CLOCK_MONOTONIC nanoseconds here and below (the clock is the
 * caller's: tests pass their own).
 */
void rl_set(struct rate_limiter *rl, const struct rl_config *cfg, unsigned mask, uint64_t now_ns);

/* True if either bucket limits anything. */
bool rl_enabled(const struct rate_limiter *rl);

/*
 * Take bytes from the bandwidth bucket and ops from the ops bucket if both can give them now;
 * otherwise take nothing. Returns true if the request may go.
 */
bool rl_consume(struct rate_limiter *rl, uint64_t now_ns, uint64_t bytes, uint64_t ops);

/* Take bytes and ops whatever the buckets hold (the budget may go below zero): for a cost that
 * is known only after the work is done, such as the length of a received frame. */
void rl_charge(struct rate_limiter *rl, uint64_t now_ns, uint64_t bytes, uint64_t ops);

/* Nanoseconds from now_ns until rl_consume(bytes, ops) would succeed; 0 if it would now. */
uint64_t rl_wait_ns(struct rate_limiter *rl, uint64_t now_ns, uint64_t bytes, uint64_t ops);

/*
 * A bucket as a snapshot holds it (docs/snapshot.md, "Rate limiters"): 40 bytes, little-endian.
 * elapsed_ns is the refill time earned but not yet credited at the save, so a restore carries
 * on from the same point whatever time passed between the two (as Firecracker does).
 */
struct rl_snap_bucket {
    uint64_t size; /* 0: the bucket is off, and every other field is 0 too */
    uint64_t refill_ns;
    int64_t budget;      /* tokens left; below zero, a debt */
    uint64_t burst;      /* one-time burst left */
    uint64_t elapsed_ns; /* at most refill_ns */
};

struct rl_snap {
    struct rl_snap_bucket bw, ops;
};

/*
 * Deepest debt a saved bucket may hold. A debt comes from one request larger than the bucket
 * (rl_consume) or one received frame (rl_charge); no chain amber accepts reaches 2^42 bytes
 * (VIRTQ_MAX_IOV descriptors of at most 4 GiB each).
 */
#define RL_SNAP_DEBT_MAX (INT64_C(1) << 42)

/* Credit the refill earned up to now_ns, then describe rl's buckets in *out. */
void rl_snap_save(struct rate_limiter *rl, uint64_t now_ns, struct rl_snap *out);

/*
 * Check a saved limiter from an untrusted file against cfg_rl, the limiter the configuration
 * in the same file set up (fresh from rl_set, so full): each bucket's size and refill time
 * equal to it, an off bucket all zero, budget within -RL_SNAP_DEBT_MAX..size, burst left no
 * more than the configured one, elapsed_ns no more than refill_ns. Pure. Returns 0 or -EBADMSG
 * with a one-line reason naming the bucket in why.
 */
int rl_snap_check(const struct rate_limiter *cfg_rl, const struct rl_snap *s, char *why,
                  size_t whylen);

/* Load a checked limiter: the same budget and burst, and refill counted from now_ns less
 * elapsed_ns. */
void rl_snap_load(struct rate_limiter *rl, const struct rl_snap *s, uint64_t now_ns);

/*
 * The one-shot timer that brings a throttled queue back: a disarmed timerfd watched on loop
 * calling fn(opaque, events). fn must call rl_timer_ack first. Loop thread, before seccomp (it
 * creates an fd). Returns 0 or -errno (fd stays -1).
 */
struct rl_timer {
    int fd;
};
int rl_timer_init(struct rl_timer *t, struct loop *loop, loop_fn fn, void *opaque);

/* Fire once after delay_ns (at least 1 ns), replacing any earlier arming. Any thread. */
void rl_timer_arm(struct rl_timer *t, uint64_t delay_ns);

/* Consume the expiry count so the loop does not call fn again for it. */
void rl_timer_ack(struct rl_timer *t);

/* Stop watching and close the timer (no-op if init failed or never ran). Loop thread. */
void rl_timer_fini(struct rl_timer *t, struct loop *loop);

#endif
