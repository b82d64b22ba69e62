/* Logging to stderr and an optional non-blocking sink. The sink settings are the one piece of
 * process-wide state amber keeps, because every thread logs. */
#include "vmm/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static char log_id[72];
static atomic_int log_sink = -1;
static atomic_int log_level = LOG_INFO;

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

void log_msg(enum log_level level, const char *fmt, ...)
{
    if ((int)level > atomic_load(&log_level))
        return;
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
