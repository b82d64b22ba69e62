/* The monotonic clock in the units amber's timers and latencies use: one definition for all. */
#ifndef AMBER_VMM_CLOCK_H
#define AMBER_VMM_CLOCK_H

#include <stdint.h>
#include <time.h>

/* CLOCK_MONOTONIC in nanoseconds. Never fails on Linux; async-signal-safe. */
static inline uint64_t clock_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* CLOCK_MONOTONIC in milliseconds. */
static inline uint64_t clock_now_ms(void)
{
    return clock_now_ns() / 1000000u;
}

#endif
