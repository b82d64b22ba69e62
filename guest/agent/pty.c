/* amber-agent: pseudo-terminals for PTY requests: opening one, the child's controlling tty, and
 * RESIZE (TIOCSWINSZ, which also sends SIGWINCH to the terminal's foreground process group). */
#include "guest/agent/agent.h"

#include <errno.h>
#include <fcntl.h>
#include <pty.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

int pty_open(uint16_t cols, uint16_t rows, int fds[3])
{
    struct winsize ws = {.ws_row = rows, .ws_col = cols};
    int master = -1, slave = -1;
    fds[0] = fds[1] = fds[2] = -1;
    if (openpty(&master, &slave, NULL, NULL, &ws) < 0)
        return -errno;
    /* Only the command may hold the slave: once it and its children are gone, reading the
     * master fails with EIO, which is how the agent sees the terminal's end. */
    int in = fcntl(master, F_DUPFD_CLOEXEC, 0);
    if (in < 0 || fcntl(master, F_SETFD, FD_CLOEXEC) < 0 || fcntl(slave, F_SETFD, FD_CLOEXEC) < 0) {
        int e = errno;
        if (in >= 0)
            close(in);
        close(master);
        close(slave);
        return -e;
    }
    fds[0] = slave;
    fds[1] = in;
    fds[2] = master;
    return 0;
}

void pty_child_setup(int slave)
{
    /* After setsid(): the slave becomes the new session's controlling terminal. */
    ioctl(slave, TIOCSCTTY, 0);
    setenv("TERM", "xterm", 1); /* not PID 1's TERM=linux; the request's ENV may override it */
}

int pty_resize(int master, const uint8_t *payload, size_t len)
{
    uint16_t cols = 0, rows = 0;
    int r = proto_winsize_decode(payload, len, &cols, &rows);
    if (r < 0)
        return r;
    if (master < 0)
        return 0; /* the terminal already closed: nothing left to size */
    struct winsize ws = {.ws_row = rows, .ws_col = cols};
    return ioctl(master, TIOCSWINSZ, &ws) < 0 ? -errno : 0;
}
