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

/* Besides the per-site limits (log_*_rl, for every line a guest can trigger), all warnings
 * together are held to a burst of LOG_WARN_BURST, then one per LOG_WARN_INTERVAL_MS, as a
 * backstop. Errors, info and debug lines through plain log_msg are never dropped. */
#define LOG_WARN_BURST       32
#define LOG_WARN_INTERVAL_MS 500LL

static char log_id[72];
static atomic_int log_sink = -1;
static atomic_int log_level = LOG_INFO;
static struct log_ratelimit warn_limit;

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

bool log_ratelimit_allow(struct log_ratelimit *rl, unsigned burst, uint64_t interval_ms,
                         uint64_t now_ms, unsigned *suppressed)
{
    long long now = (long long)now_ms, interval = (long long)interval_ms;
    long long tat = atomic_load(&rl->tat_ms);
    for (;;) {
        long long base = tat > now ? tat : now;
        if (base - now > interval * ((long long)burst - 1)) {
            atomic_fetch_add(&rl->suppressed, 1);
            return false;
        }
        if (atomic_compare_exchange_weak(&rl->tat_ms, &tat, base + interval))
            break;
    }
    *suppressed = atomic_exchange(&rl->suppressed, 0);
    return true;
}

static void vlog(enum log_level level, const char *fmt, va_list ap)
{
    char line[1024];
    int n;
    if (log_id[0])
        n = snprintf(line, sizeof(line), "amber[%s]: %s: ", log_id, level_names[level]);
    else
        n = snprintf(line, sizeof(line), "amber: %s: ", level_names[level]);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
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

/* The warning backstop; false when the line must be dropped. */
static bool warn_allowed(void)
{
    unsigned dropped;
    if (!log_ratelimit_allow(&warn_limit, LOG_WARN_BURST, LOG_WARN_INTERVAL_MS, clock_now_ms(),
                             &dropped))
        return false;
    if (dropped)
        log_msg(LOG_INFO, "%u warnings were dropped by the log rate limit", dropped);
    return true;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if ((int)level > atomic_load(&log_level))
        return;
    if (level == LOG_WARN && !warn_allowed())
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(level, fmt, ap);
    va_end(ap);
}

void log_msg_limited(struct log_ratelimit *rl, enum log_level level, const char *fmt, ...)
{
    if ((int)level > atomic_load(&log_level))
        return;
    unsigned suppressed = 0;
    if (!log_ratelimit_allow(rl, LOG_RL_BURST, LOG_RL_INTERVAL_MS, clock_now_ms(), &suppressed))
        return;
    if (level == LOG_WARN && !warn_allowed())
        return;
    if (suppressed)
        log_msg(level == LOG_WARN ? LOG_INFO : level, "%u lines like \"%.80s\" suppressed",
                suppressed, fmt);
    va_list ap;
    va_start(ap, fmt);
    vlog(level, fmt, ap);
    va_end(ap);
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
