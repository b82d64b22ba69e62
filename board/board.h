/* The board: everything amber plugs into one VM (devices and the console), in one struct. */
#ifndef AMBER_BOARD_BOARD_H
#define AMBER_BOARD_BOARD_H

#include <stdbool.h>
#include <termios.h>

#include "vmm/layout.h"

struct vm;
struct virtio_dev;
struct serial;
struct i8042;
struct pm;
struct vmgenid;

/* The console hand-off: host stdin into the UART, and the terminal state to restore. */
struct board_console {
    int stdin_fd;        /* console input watched on the loop, or -1 */
    int console_fd;      /* owned: the --console file, or stdout reopened non-blocking, or -1 */
    int console_out;     /* the fd the UART's ring drains into, or -1 */
    int stdout_flags;    /* stdout's flags to restore when O_NONBLOCK was set on it, or -1 */
    bool console_polled; /* console_out is watched for EPOLLOUT */
    bool stdin_watched;
    bool stdin_paused; /* stopped while the FIFO is full or the VM is paused */
    bool tty_raw;
    struct termios saved_tty;
    bool escape; /* Ctrl-A seen, waiting for 'x' */
};

/* One VM's devices; filled by devices_create (board/devices.h), emptied by vm_destroy. */
struct board {
    struct vm *vm;
    struct serial *serial;
    struct i8042 *i8042;
    struct pm *pm;
    struct vmgenid *vmgenid;
    struct board_console console;
    struct virtio_dev *virtio[VIRTIO_MAX_DEVICES]; /* in slot order */
    const char *drive_ids[VIRTIO_MAX_DEVICES];     /* drive id per slot, NULL for non-drives */
    unsigned nvirtio;
    int vsock_listen_fd; /* bound early by PUT /vsock, handed to the device, or -1 */
};

#endif
