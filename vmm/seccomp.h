/* Per-thread seccomp allowlists (libseccomp): one for the event loop, one for vCPU threads. */
#ifndef AMBER_VMM_SECCOMP_H
#define AMBER_VMM_SECCOMP_H

#include <seccomp.h>
#include <stdbool.h>

#include "config/config.h"

/* Exit status of a process killed for a seccomp violation (128 + SIGSYS, as a shell shows). */
#define SECCOMP_VIOLATION_STATUS 159

/* Which thread a filter is for. */
enum seccomp_kind {
    SECCOMP_VMM,  /* the main thread: event loop, devices and the HTTP API, once booted */
    SECCOMP_VCPU, /* a vCPU thread: KVM_RUN and the register-access exits */
};

/*
 * Build the allowlist for kind into a new libseccomp context (not loaded). Anything outside it
 * raises SIGSYS (SCMP_ACT_TRAP), which seccomp_install()'s handler turns into a log line and
 * exit. cfg decides the conditional rules: openat O_RDWR only with a writable drive, rename
 * only with an exit file, unlink only with an API socket. Returns the context (release it
 * with seccomp_release) or NULL on error.
 */
scmp_filter_ctx seccomp_build(enum seccomp_kind kind, const struct vm_config *cfg);

/* How many distinct syscalls kind's allowlist admits (some with argument conditions). */
unsigned seccomp_allowed_count(enum seccomp_kind kind);

/* Name and one-line reason of the i-th allowed syscall of kind; false past the end. */
bool seccomp_allowed_at(enum seccomp_kind kind, unsigned i, const char **name, const char **reason);

/*
 * Install the SIGSYS handler that writes "amber: seccomp violation: syscall N (name)" to
 * stderr with async-signal-safe calls and ends the process with SECCOMP_VIOLATION_STATUS.
 * Process-wide; idempotent. Returns 0 or a negative errno.
 */
int seccomp_install_handler(void);

/*
 * Load kind's filter on the calling thread only (no TSYNC: each thread kind brings its own).
 * Sets PR_SET_NO_NEW_PRIVS first. With cfg->seccomp_filter set, that file (a raw classic-BPF
 * program, struct sock_filter[]) is loaded instead of the built-in list. Returns 0 or a
 * negative errno; the thread is unfiltered on error.
 */
int seccomp_install(enum seccomp_kind kind, const struct vm_config *cfg);

#endif
