/* The VM lifecycle state machine the API enforces: not started -> running <-> paused -> stopped. */
#ifndef AMBER_API_STATE_H
#define AMBER_API_STATE_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

enum vm_state { VM_NOT_STARTED, VM_RUNNING, VM_PAUSED, VM_STOPPED };
enum vm_event { VM_EV_START, VM_EV_PAUSE, VM_EV_RESUME, VM_EV_STOP };

/* What the API knows about the VM's lifecycle, with the timestamps GET / and metrics report. */
struct vm_status {
    enum vm_state state;
    uint64_t started_ns;                    /* CLOCK_MONOTONIC at start */
    uint64_t paused_ns;                     /* CLOCK_MONOTONIC at the last pause */
    struct timespec paused_at;              /* CLOCK_REALTIME at the last pause */
    uint64_t pause_last_us, pause_max_us;   /* backend pause latency */
    uint64_t resume_last_us, resume_max_us; /* backend resume latency */
    uint64_t npauses, nresumes;
};

/*
 * The transition table. Returns true and sets *next when ev is allowed in s:
 * NOT_STARTED -START-> RUNNING; RUNNING -PAUSE-> PAUSED; PAUSED -RESUME-> RUNNING;
 * NOT_STARTED/RUNNING/PAUSED -STOP-> STOPPED. Everything else is refused (false).
 */
bool vmstate_next(enum vm_state s, enum vm_event ev, enum vm_state *next);

/* Firecracker's names: "Not started", "Running", "Paused"; amber adds "Stopped". */
const char *vmstate_name(enum vm_state s);

/* Zero st (state NOT_STARTED). */
void vmstatus_init(struct vm_status *st);

/*
 * Apply ev at monotonic time now_ns (realtime *now_real), updating timestamps. Returns 0, or
 * -EINVAL if the transition is not allowed (st is unchanged then).
 */
int vmstatus_apply(struct vm_status *st, enum vm_event ev, uint64_t now_ns,
                   const struct timespec *now_real);

/* Record a pause (is_pause) or resume latency in microseconds. */
void vmstatus_record_latency(struct vm_status *st, bool is_pause, uint64_t us);

/* Format ts as ISO-8601 UTC with microseconds ("2026-11-29T23:10:05.123456Z") into buf (>= 32). */
void vmstate_format_time(const struct timespec *ts, char *buf, size_t len);

#endif
