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

/* Civil date from days since 1970-01-01 (proleptic Gregorian; Howard Hinnant's algorithm). */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

void vmstate_format_time(const struct timespec *ts, char *buf, size_t len)
{
    /* Neither gmtime_r nor strftime: glibc's first call to either runs tzset, which reads
     * /etc/localtime (open/read/lseek) outside the running VMM's seccomp allowlist. */
    int64_t sec = ts->tv_sec;
    int64_t days = sec >= 0 ? sec / 86400 : -((-sec + 86399) / 86400);
    int64_t rem = sec - days * 86400;
    int64_t y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    snprintf(buf, len, "%04lld-%02u-%02uT%02u:%02u:%02u.%06ldZ", (long long)y, m, d,
             (unsigned)(rem / 3600), (unsigned)(rem % 3600 / 60), (unsigned)(rem % 60),
             (long)(ts->tv_nsec / 1000));
}
