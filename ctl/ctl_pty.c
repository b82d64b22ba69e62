/* amberctl exec -t: the host terminal in raw mode around a PTY exec, SIGWINCH sent as RESIZE, and
 * the terminal restored on every way out (return, error, or a terminating signal). */
#include "ctl/ctl_pty.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <unistd.h>

#include "proto/agent.h"

/* What a signal handler needs to put the terminal back: only async-signal-safe state. */
static struct termios saved_termios;
static volatile sig_atomic_t saved_fd = -1;

static const int fatal_signals[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGPIPE, SIGALRM};
#define N_FATAL (sizeof(fatal_signals) / sizeof(fatal_signals[0]))

static void restore_and_reraise(int sig)
{
    if (saved_fd >= 0)
        tcsetattr(saved_fd, TCSAFLUSH, &saved_termios);
    saved_fd = -1;
    signal(sig, SIG_DFL);
    raise(sig); /* the default action, now with the terminal as it was */
}

static uint16_t clamp_side(unsigned v, uint16_t def)
{
    if (!v)
        return def;
    return v > PROTO_MAX_WINSIZE ? PROTO_MAX_WINSIZE : (uint16_t)v;
}

int ctl_tty_begin(struct ctl_tty *t, struct agent_exec_spec *spec, struct agent_exec_io *io)
{
    struct winsize ws = {0};
    memset(t, 0, sizeof(*t));
    t->tty_fd = isatty(STDIN_FILENO) ? STDIN_FILENO : -1;
    t->winch_fd = -1;
    int size_fd = t->tty_fd >= 0 ? t->tty_fd : isatty(STDOUT_FILENO) ? STDOUT_FILENO : -1;
    if (size_fd >= 0)
        ioctl(size_fd, TIOCGWINSZ, &ws);
    spec->pty_cols = clamp_side(ws.ws_col, 80);
    spec->pty_rows = clamp_side(ws.ws_row, 24);
    if (size_fd >= 0) {
        sigset_t winch;
        sigemptyset(&winch);
        sigaddset(&winch, SIGWINCH);
        sigprocmask(SIG_BLOCK, &winch, &t->old_mask);
        t->mask_saved = true;
        t->winch_fd = signalfd(-1, &winch, SFD_NONBLOCK | SFD_CLOEXEC);
        io->resize_fd = t->winch_fd;
        io->size_fd = size_fd;
    }
    if (t->tty_fd < 0)
        return 0; /* not a terminal: the guest still gets a pty, ours stays as it is */
    if (tcgetattr(t->tty_fd, &saved_termios) < 0)
        return -errno;
    struct sigaction sa = {.sa_handler = restore_and_reraise};
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < N_FATAL; i++)
        sigaction(fatal_signals[i], &sa, &t->old_actions[i]);
    saved_fd = t->tty_fd;
    struct termios raw = saved_termios;
    cfmakeraw(&raw);
    if (tcsetattr(t->tty_fd, TCSADRAIN, &raw) < 0) { /* typed-ahead input goes to the guest */
        int e = errno;
        ctl_tty_end(t);
        return -e;
    }
    t->raw = true;
    return 0;
}

void ctl_tty_end(struct ctl_tty *t)
{
    if (t->tty_fd >= 0 && saved_fd >= 0) {
        tcsetattr(t->tty_fd, TCSAFLUSH, &saved_termios);
        saved_fd = -1;
        for (size_t i = 0; i < N_FATAL; i++)
            sigaction(fatal_signals[i], &t->old_actions[i], NULL);
    }
    t->raw = false;
    if (t->winch_fd >= 0)
        close(t->winch_fd);
    t->winch_fd = -1;
    if (t->mask_saved)
        sigprocmask(SIG_SETMASK, &t->old_mask, NULL);
    t->mask_saved = false;
}
