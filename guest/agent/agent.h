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
    char run_dir[96];      /* background commands' control sockets and records (bg.c) */
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

/* A spawned command: its pid, a pidfd, and the parent's ends of its stdio pipes (nonblocking). */
struct exec_child {
    pid_t pid;
    int pidfd, in_fd, out_fd, err_fd;
    uint64_t start_ms; /* CLOCK_MONOTONIC */
    bool pty;          /* in_fd and out_fd are a pseudo-terminal's master; err_fd is -1 */
};

/* Spawn req's command in a new session. Returns 0 and fills *out, or -errno after sending an
 * ERROR frame on c (unknown user, bad cwd, fork or pipe failure). */
int exec_spawn(struct agent_conn *c, const struct proto_exec_req *req, struct exec_child *out);
/* Send EXIT for a waitpid() status. Returns 0 or -errno. */
int exec_send_exit(struct agent_conn *c, int status, bool timed_out, uint64_t duration_ms);

/* Background commands (bg.c, bg_handoff.c): the largest handoff (request frame plus the bytes
 * that followed it) and the largest listing record. */
#define BG_MAX_HANDOFF (64u * 1024u)
#define BG_INFO_MAX    (64u * 1024u)

/* "<run_dir>/<pid><suffix>" into out[size]. Returns 0 or -ENAMETOOLONG. */
int bg_path(const struct agent_opts *o, uint32_t pid, const char *suffix, char *out, size_t size);
/* A SOCK_SEQPACKET connection to the Unix socket path. Returns the fd or -errno. */
int bg_sock_connect(const char *path);

/* Supervise a background command (EXEC with BACKGROUND=1) until it has exited and its exit was
 * delivered or nobody came for it: keeps the tail of its output, serves attach and kill on a
 * control socket in opts->run_dir, and streams to every attached client. Takes ownership of
 * ch's fds; c becomes the first client. Returns 0 or -errno. */
int bg_serve(struct agent_conn *c, const struct proto_exec_req *req, struct exec_child *ch);
/* ATTACH and KILL: hand the connection (the request frame, what followed it, and the socket)
 * to the supervisor of that pid; ESRCH when there is none. Returns 0 or -errno. */
int bg_forward(struct agent_conn *c, const struct proto_frame *f, uint32_t pid);
/* LIST_PROCS: one ENTRY per background command still known, then EOF. Returns 0 or -errno. */
int bg_list(struct agent_conn *c);

/* STAT, LIST_DIR, REMOVE, RENAME, MKDIR (fileops.c): decode f and answer it. Returns 0 or
 * -errno. */
int fileops_serve(struct agent_conn *c, const struct proto_frame *f);

/* WATCH (watch.c): RESULT{SIZE: directories watched}, then an ENTRY{EVENT, PATH, TYPE} per
 * inotify event until the client sends EOF (answered with EOF) or leaves. Returns 0 or -errno. */
int watch_serve(struct agent_conn *c, const struct proto_frame *f);

/* Pseudo-terminals (pty.c). */
/* Open a pty of cols x rows: fds[0] the slave (for the command), fds[1] and fds[2] two fds of
 * the master (stdin and output sides), all close-on-exec. Returns 0 or -errno. */
int pty_open(uint16_t cols, uint16_t rows, int fds[3]);
/* In the command's child, after setsid(): make slave the controlling terminal; TERM=xterm. */
void pty_child_setup(int slave);
/* Apply a RESIZE (or PTY) payload's COLS and ROWS to the pty master (ignored when master < 0).
 * Returns 0, -EBADMSG/-EINVAL for a bad size, or -errno from TIOCSWINSZ. */
int pty_resize(int master, const uint8_t *payload, size_t len);

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
/* `amber-agent reseed`: 32-512 random bytes on stdin are credited to the kernel pool
 * (RNDADDENTROPY) and the CRNG reseeded (RNDRESEEDCRNG). Returns the exit status. */
int reseed_main(int argc, char **argv);

/* Read "amber.agent_port=N" from the kernel command line; returns the default if absent. */
uint32_t agent_cmdline_port(uint32_t def);

#endif
