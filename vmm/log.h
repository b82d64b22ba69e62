/* Logging: one line per event to stderr and, when configured, to the API's logger FIFO. */
#ifndef AMBER_VMM_LOG_H
#define AMBER_VMM_LOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

/*
 * Rate limits for lines a guest can trigger at will. Each call site of the log_*_rl macros has
 * its own token bucket: a burst of LOG_RL_BURST lines, then one per LOG_RL_INTERVAL_MS; the
 * next line let through after a refusal is preceded by "N lines like ... suppressed".
 */
#define LOG_RL_BURST       10
#define LOG_RL_INTERVAL_MS 1000

/* One bucket (generic cell rate). Zeroed static storage is a full bucket. */
struct log_ratelimit {
    atomic_llong tat_ms;    /* theoretical arrival time of the next line */
    atomic_uint suppressed; /* lines refused since the last one let through */
};

/*
 * Whether one more line fits rl at now_ms, given a burst of burst lines and one more per
 * interval_ms. Lock-free and thread-safe. Counts a refusal in rl; when the line fits, stores in
 * *suppressed how many were refused since the last line let through (and resets that count).
 */
bool log_ratelimit_allow(struct log_ratelimit *rl, unsigned burst, uint64_t interval_ms,
                         uint64_t now_ms, unsigned *suppressed);

/*
 * log_msg through rl (LOG_RL_BURST / LOG_RL_INTERVAL_MS, now): a line below the log level
 * costs no token; a refused line is only counted. The log_*_rl macros give each call site its
 * own rl.
 */
void log_msg_limited(struct log_ratelimit *rl, enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_msg_rl(level, ...)                                                                     \
    do {                                                                                           \
        static struct log_ratelimit log_rl_site_;                                                  \
        log_msg_limited(&log_rl_site_, level, __VA_ARGS__);                                        \
    } while (0)

#define log_err_rl(...)   log_msg_rl(LOG_ERROR, __VA_ARGS__)
#define log_warn_rl(...)  log_msg_rl(LOG_WARN, __VA_ARGS__)
#define log_info_rl(...)  log_msg_rl(LOG_INFO, __VA_ARGS__)
#define log_debug_rl(...) log_msg_rl(LOG_DEBUG, __VA_ARGS__)

#endif
