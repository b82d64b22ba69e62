/* Host-side client for amber-agent (proto/PROTOCOL.md): one connection per request. */
#ifndef AMBER_CTL_AGENT_CLIENT_H
#define AMBER_CTL_AGENT_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Where the agent is. */
struct agent_addr {
    const char *path; /* Unix socket path */
    bool hybrid;      /* true: Firecracker hybrid vsock ("CONNECT port\n"); false: the agent's
                         own Unix listener (amber-agent --listen unix:PATH) */
    uint32_t port;    /* guest vsock port for hybrid (default 1024 when 0) */
    int timeout_ms;   /* connect + handshake, and the longest silence on file ops; 0 = 10 s */
};

/* Why a call failed: errno-style code and a message (the agent's when it sent one). */
struct agent_error {
    int err;
    char msg[256];
};

struct agent_ping_info {
    uint32_t proto_version;
    char agent_version[128]; /* escaped: at most 4 bytes per guest byte */
    uint64_t uptime_ms;
};

struct agent_exec_spec {
    const char *const *argv; /* NULL-terminated, or NULL when shell is set */
    const char *shell;       /* run via /bin/sh -c */
    const char *const *env;  /* NULL-terminated "K=V" list, may be NULL */
    const char *cwd;         /* may be NULL */
    const char *user;        /* name or uid, may be NULL */
    uint64_t timeout_ms;     /* 0 = none; the agent kills the process group when it passes */
    uint16_t pty_cols;       /* both > 0: run on a pseudo-terminal of this size (PTY request; */
    uint16_t pty_rows;       /* all output then arrives on stdout_fd) */
};

/* The fds exec pumps: stdin_fd -1 sends EOF at once; stdout_fd/stderr_fd -1 discard. */
struct agent_exec_io {
    int stdin_fd;
    int stdout_fd;
    int stderr_fd;
    /* pty only (ignored unless spec->pty_cols and pty_rows are set, so a zeroed struct is safe
     * for a plain exec): when resize_fd is readable (e.g. a SIGWINCH signalfd) it is drained and
     * size_fd's window size (TIOCGWINSZ) is sent as RESIZE. -1: no resizes. */
    int resize_fd;
    int size_fd;
};

struct agent_exec_result {
    int exit_code; /* valid when signal == 0 */
    int signal;    /* the terminating signal, or 0 */
    uint64_t duration_ms;
    bool timed_out;
    uint32_t pid; /* the command's pid in the guest */
};

/*
 * Open a connection to the agent (hybrid handshake included). Returns a connected blocking
 * fd, or -errno (-ETIMEDOUT, -ECONNREFUSED, -EPROTO for a bad handshake reply) with err set.
 */
int agent_connect(const struct agent_addr *a, struct agent_error *err);

/*
 * Make guest text safe to print: copy n bytes of in to out[cap] with every byte below 0x20,
 * 0x7f and above, and the backslash written as \xNN, so no escape sequence, newline or
 * invalid UTF-8 reaches a terminal or a JSON document. Stops at the first NUL; truncates at a
 * whole escape; always NUL-terminates (cap > 0). Returns out.
 */
char *agent_text_escape(const void *in, size_t n, char *out, size_t cap);

/*
 * The permission bits for a host file copied out of the guest, whose agent claimed guest_mode:
 * guest_mode & 0777 & ~umask_bits. Never setuid, setgid or sticky, never more than the
 * operator's umask allows.
 */
unsigned agent_host_mode(uint32_t guest_mode, unsigned umask_bits);

/* Ping: fills *info (agent_version already escaped with agent_text_escape). Returns 0 or -errno
 * (err filled; may be NULL). */
int agent_ping(const struct agent_addr *a, struct agent_ping_info *info, struct agent_error *err);

/*
 * Run a command and pump stdio concurrently until it ends (stdin is read only as fast as the
 * agent takes it). Fills *res. Returns 0 once the command ended (whatever its exit status),
 * or -errno if it could not run or the connection broke (err filled).
 */
int agent_exec(const struct agent_addr *a, const struct agent_exec_spec *spec,
               const struct agent_exec_io *io, struct agent_exec_result *res,
               struct agent_error *err);

/* Copy a guest file to out_fd; *mode gets the mode the agent claims, unchecked: pass it through
 * agent_host_mode before applying it (may be NULL). 0 or -errno; err->msg is escaped. */
int agent_read_file(const struct agent_addr *a, const char *guest_path, int out_fd, uint32_t *mode,
                    struct agent_error *err);

/* Create or replace a guest file with mode (permission bits) from in_fd until EOF.
 * Returns 0 or -errno. */
int agent_write_file(const struct agent_addr *a, const char *guest_path, uint32_t mode, int in_fd,
                     struct agent_error *err);

/* Ask the guest to power off (reboot false) or reboot. 0 once the agent acknowledged. */
int agent_shutdown(const struct agent_addr *a, bool reboot, struct agent_error *err);

#endif
