/* The agent's in-memory log: a bounded ring of recent lines, shared by every agent process. */
#ifndef AMBER_GUEST_AGENT_LOGRING_H
#define AMBER_GUEST_AGENT_LOGRING_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct agent_opts;

/*
 * Size: LOGRING_LINES lines of at most LOGRING_LINE_MAX bytes each (longer lines are cut), the
 * newest replacing the oldest: 512 x 248 bytes, 128 KiB with the slot headers. docs/pause.md
 * ("The agent's log ring") documents it.
 */
#define LOGRING_LINES    512u
#define LOGRING_LINE_MAX 248u

/* One line. `seq` is 0 while empty or being written, else the line's number + 1. */
struct logring_slot {
    _Atomic uint64_t seq;
    uint16_t len;
    char text[LOGRING_LINE_MAX];
};

/*
 * The ring, placed in memory shared by the agent and every process it forks. Writers take a
 * line number with one atomic add and own that slot until they publish `seq`; no lock, so a
 * writer that dies mid-line costs one line and blocks nobody.
 */
struct logring {
    _Atomic uint64_t next; /* number of the next line */
    struct logring_slot slot[LOGRING_LINES];
};

/* Empty the ring. */
void logring_reset(struct logring *r);

/* Append one line of `len` bytes (no newline needed; one trailing newline is dropped; cut to
 * LOGRING_LINE_MAX). Safe from any number of threads and processes at once. */
void logring_add(struct logring *r, const char *text, size_t len);

/*
 * Write the ring's lines, oldest first, into out[size] as "text\n" each, after a first line
 * "amber-agent log: lines A-B of N written (K lost to wrap)". A line being rewritten while it is
 * read is left out and counted as lost. Returns the bytes written (at most size; the dump is cut
 * at a line boundary when out is too small).
 */
size_t logring_dump(struct logring *r, char *out, size_t size);

/* The largest dump logring_dump can produce. */
#define LOGRING_DUMP_MAX ((size_t)LOGRING_LINES * (LOGRING_LINE_MAX + 1) + 128)

/*
 * The agent's own ring: map it shared (before any fork) on the first call; later calls return
 * the same one. NULL if it cannot be mapped (the agent then logs to stderr only).
 */
struct logring *agent_logring(void);

/*
 * Log one line "[seconds since boot] pid: message" into the agent's ring only (not the console):
 * for events too frequent for the console (every connection, every request).
 */
void agent_trace(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Serve the ring to the host: fork a process that listens on vsock port opts->port + 1 (or, with
 * --listen unix:PATH, on the Unix socket PATH.log) and, to every client that connects, writes a
 * dump of the ring and closes. Returns the server's pid, or a negative errno (the agent works on
 * without it).
 */
int logring_serve_start(const struct agent_opts *opts);

#endif
