/* Logging to stderr and an optional non-blocking sink. The sink settings are the one piece of
 * process-wide state amber keeps, because every thread logs. */
#include "vmm/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include "vmm/clock.h"

/* Warnings are what a hostile guest can trigger at will (bad rings, odd status writes): they
 * are rate-limited to a burst of LOG_WARN_BURST, then one per LOG_WARN_INTERVAL_MS, so that a
 * guest cannot flood the host's log. Errors, info and debug lines are never dropped. */
#define LOG_WARN_BURST       32
#define LOG_WARN_INTERVAL_MS 500LL

static char log_id[72];
static atomic_int log_sink = -1;
static atomic_int log_level = LOG_INFO;
static atomic_llong warn_tat_ms; /* rate limiter: theoretical arrival time of the next warning */
static atomic_uint warn_dropped;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_set_id(const char *id)
{
    snprintf(log_id, sizeof(log_id), "%s", id ? id : "");
}

int log_set_sink(int fd)
{
    return atomic_exchange(&log_sink, fd);
}

void log_set_level(enum log_level level)
{
    atomic_store(&log_level, level);
}

/* Generic cell rate: true if one more warning fits the burst at this time. Lock-free. */
static bool warn_allowed(void)
{
    long long now = (long long)clock_now_ms();
    long long tat = atomic_load(&warn_tat_ms);
    for (;;) {
        long long base = tat > now ? tat : now;
        if (base - now > LOG_WARN_INTERVAL_MS * LOG_WARN_BURST)
            return false;
        if (atomic_compare_exchange_weak(&warn_tat_ms, &tat, base + LOG_WARN_INTERVAL_MS))
            return true;
    }
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if ((int)level > atomic_load(&log_level))
        return;
    if (level == LOG_WARN) {
        if (!warn_allowed()) {
            atomic_fetch_add(&warn_dropped, 1);
            return;
        }
        unsigned dropped = atomic_exchange(&warn_dropped, 0);
        if (dropped)
            log_msg(LOG_INFO, "%u warnings were dropped by the log rate limit", dropped);
    }
    char line[1024];
    int n;
    if (log_id[0])
        n = snprintf(line, sizeof(line), "amber[%s]: %s: ", log_id, level_names[level]);
    else
        n = snprintf(line, sizeof(line), "amber: %s: ", level_names[level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    if (write(STDERR_FILENO, line, len) < 0) {
        /* nowhere left to report it */
    }
    int sink = atomic_load(&log_sink);
    if (sink >= 0 && write(sink, line, len) < 0) {
        /* a full FIFO drops the line rather than block */
    }
}

int errmsg(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}
