/* The VM lifecycle state machine the API enforces: not started -> running <-> paused -> stopped. */
#include "api/state.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

bool vmstate_next(enum vm_state s, enum vm_event ev, enum vm_state *next)
{
    enum vm_state to;
    switch (ev) {
    case VM_EV_START:
        if (s != VM_NOT_STARTED)
            return false;
        to = VM_RUNNING;
        break;
    case VM_EV_PAUSE:
        if (s != VM_RUNNING)
            return false;
        to = VM_PAUSED;
        break;
    case VM_EV_RESUME:
        if (s != VM_PAUSED)
            return false;
        to = VM_RUNNING;
        break;
    case VM_EV_STOP:
        if (s == VM_STOPPED)
            return false;
        to = VM_STOPPED;
        break;
    default:
        return false;
    }
    *next = to;
    return true;
}

const char *vmstate_name(enum vm_state s)
{
    switch (s) {
    case VM_NOT_STARTED:
        return "Not started";
    case VM_RUNNING:
        return "Running";
    case VM_PAUSED:
        return "Paused";
    case VM_STOPPED:
        return "Stopped";
    }
    return "Unknown";
}

void vmstatus_init(struct vm_status *st)
{
    memset(st, 0, sizeof(*st));
    st->state = VM_NOT_STARTED;
}

int vmstatus_apply(struct vm_status *st, enum vm_event ev, uint64_t now_ns,
                   const struct timespec *now_real)
{
    enum vm_state next;
    if (!vmstate_next(st->state, ev, &next))
        return -EINVAL;
    if (ev == VM_EV_START)
        st->started_ns = now_ns;
    if (ev == VM_EV_PAUSE) {
        st->paused_ns = now_ns;
        st->paused_at = *now_real;
        st->npauses++;
    }
    if (ev == VM_EV_RESUME)
        st->nresumes++;
    st->state = next;
    return 0;
}

void vmstatus_record_latency(struct vm_status *st, bool is_pause, uint64_t us)
{
    uint64_t *last = is_pause ? &st->pause_last_us : &st->resume_last_us;
    uint64_t *max = is_pause ? &st->pause_max_us : &st->resume_max_us;
    *last = us;
    if (us > *max)
        *max = us;
}

uint64_t vmstate_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void vmstate_format_time(const struct timespec *ts, char *buf, size_t len)
{
    struct tm tm;
    time_t sec = ts->tv_sec;
    gmtime_r(&sec, &tm);
    /* Not strftime: it calls tzset(), which reads /etc/localtime (open/read/lseek) on first
     * use, outside the seccomp allowlist of the running VMM. */
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long)(ts->tv_nsec / 1000));
}
