/* agent client internals shared by agent_client.c and agent_exec.c. */
#ifndef AMBER_CTL_AGENT_CLIENT_PRIV_H
#define AMBER_CTL_AGENT_CLIENT_PRIV_H

#include "ctl/agent_client.h"
#include "proto/agent.h"

#define AC_DEFAULT_TIMEOUT_MS 10000

/* Record err (positive errno) and a message; returns -err. err may be NULL. */
int ac_fail(struct agent_error *e, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Send one whole frame on a blocking or non-blocking socket (polls on EAGAIN). 0 or -errno. */
int ac_send(int fd, uint8_t type, const void *payload, size_t len);
/* Wait up to timeout_ms of silence for the next frame. 1, or -errno/-ETIMEDOUT/-ECONNRESET. */
int ac_next(int fd, struct proto_rx *rx, struct proto_frame *f, int timeout_ms);
/* Turn an ERROR frame into -errno with its message in e. */
int ac_error_frame(const struct proto_frame *f, struct agent_error *e);
/* Write all of buf to fd, a socket (MSG_NOSIGNAL) or any other fd, polling if it is
 * non-blocking. Returns 0 or -errno. Shared by the agent and HTTP clients. */
int ac_write_all(int fd, const void *buf, size_t len);
/* Effective timeout of an address. */
int ac_timeout(const struct agent_addr *a);

#endif
