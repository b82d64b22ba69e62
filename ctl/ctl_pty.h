/* amberctl exec -t: the host terminal's side of a PTY exec (raw mode, window size, SIGWINCH). */
#ifndef AMBER_CTL_CTL_PTY_H
#define AMBER_CTL_CTL_PTY_H

#include "ctl/agent_client.h"

#include <signal.h>
#include <stdbool.h>

/* The state ctl_tty_end() restores. */
struct ctl_tty {
    int tty_fd;   /* our stdin when it is a terminal, else -1 */
    int winch_fd; /* signalfd for SIGWINCH, or -1 */
    bool raw, mask_saved;
    sigset_t old_mask;
    struct sigaction old_actions[6];
};

/*
 * Prepare a PTY exec: set spec's pty size from our terminal (80x24 when there is none), and when
 * stdin is a terminal put it in raw mode, with SIGHUP/INT/QUIT/TERM/PIPE/ALRM handlers that
 * restore it before dying as the signal would. io->resize_fd/size_fd get a SIGWINCH signalfd and
 * the terminal. Returns 0 or -errno (nothing left changed on failure).
 */
int ctl_tty_begin(struct ctl_tty *t, struct agent_exec_spec *spec, struct agent_exec_io *io);

/* Undo ctl_tty_begin: the terminal's mode, the handlers, the signal mask. Safe to call twice. */
void ctl_tty_end(struct ctl_tty *t);

#endif
