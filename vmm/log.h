/* Logging: one line per event to stderr and, when configured, to the API's logger FIFO. */
#ifndef AMBER_VMM_LOG_H
#define AMBER_VMM_LOG_H

#include <stddef.h>

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

/*
 * Write one line "amber[<id>]: <level>: <message>". Never blocks: the extra sink is
 * non-blocking and drops lines when full. Thread-safe (one write() per line).
 */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Set the id shown in every line (the sandbox id; may be ""). */
void log_set_id(const char *id);

/* Also send lines to fd (a non-blocking FIFO or file), or stop with -1. Returns the old fd. */
int log_set_sink(int fd);

/* Lines below this level are dropped (default LOG_INFO). */
void log_set_level(enum log_level level);

/*
 * Format a one-line reason into err (when err and errlen are non-zero) and return rc, so
 * error paths read `return errmsg(err, errlen, -EINVAL, "...", ...);`.
 */
int errmsg(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define log_err(...)   log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
