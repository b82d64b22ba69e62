/* amber-agent internals: options, the per-connection context and the operations it serves. */
#ifndef AMBER_GUEST_AGENT_AGENT_H
#define AMBER_GUEST_AGENT_AGENT_H

#include "proto/agent.h"

#include <stdbool.h>
#include <stdint.h>

#define AGENT_VERSION "0.1.0"

struct agent_opts {
    uint32_t port;         /* vsock port */
    const char *unix_path; /* --listen unix:PATH (host testing), or NULL for vsock */
    bool init;             /* acting as PID 1: mounts, reaping, power-off */
    bool test_mode;        /* unix listener: shutdown ends the agent instead of the machine */
    int idle_timeout_ms;   /* longest wait for a frame outside exec */
};

/* One accepted connection, served by its own forked handler process. */
struct agent_conn {
    int fd;
    uint32_t id; /* the request's stream id, echoed on every reply */
    struct proto_rx rx;
    const struct agent_opts *opts;
};

/* Log one line "amber-agent: <message>" to stderr. */
void agent_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Send one frame (header + payload), retrying short writes. Returns 0 or -errno. */
int conn_send(struct agent_conn *c, uint8_t type, const void *payload, size_t len);
/* Send an ERROR frame with errno err (positive) and a message. Returns 0 or -errno. */
int conn_send_error(struct agent_conn *c, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Fill the reader from the socket once (poll up to timeout_ms). 0 ok, -ETIMEDOUT, -ECONNRESET
 * at end of stream, or -errno. */
int conn_fill(struct agent_conn *c, int timeout_ms);
/* Wait for the next complete frame. Returns 1, or a negative error (bad frame, EOF, timeout). */
int conn_next_frame(struct agent_conn *c, struct proto_frame *f, int timeout_ms);

/* Serve one connection to completion (reads the request, runs it, replies). Returns 0 or
 * -errno; the caller closes c->fd. Never exits. If the request asks for shutdown, *shutdown
 * is set to PROTO_POWEROFF/PROTO_REBOOT after the reply was sent (else left at -1). */
int serve_conn(struct agent_conn *c, int *shutdown);

/* Run an exec request on the connection: streams stdio and sends STARTED then EXIT. */
int exec_serve(struct agent_conn *c, const struct proto_exec_req *req);

/* PID 1 duties. */
/* Mount proc, sys, devtmpfs, devpts, /tmp and /run (already mounted is fine). */
void init_mounts(void);
/* Load the virtio and vsock modules that are not loaded yet, from /lib/modules. */
void init_load_modules(void);
/* Kill every other process, sync, and power off (action PROTO_POWEROFF) or reboot. Only
 * returns if the reboot syscall failed. */
void init_power(int action);

/* `amber-agent vsock-send PORT [CID]`: connect to CID (default 2, the host) on PORT, copy stdin
 * to the connection (half-closing it at EOF) and the connection to stdout. Returns the exit
 * status: 0, 1 on a connection error, 2 on bad usage. */
int vsock_send_main(int argc, char **argv);

/* Read "amber.agent_port=N" from the kernel command line; returns the default if absent. */
uint32_t agent_cmdline_port(uint32_t def);

#endif
