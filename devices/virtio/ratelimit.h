/* Token-bucket rate limiters for virtio devices (Firecracker's RateLimiter), and their timer. */
#ifndef AMBER_DEVICES_VIRTIO_RATELIMIT_H
#define AMBER_DEVICES_VIRTIO_RATELIMIT_H

#include <stdbool.h>
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
