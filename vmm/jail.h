/* Process confinement at start: fds, environment, namespaces, cgroup, chroot, rlimits, ids. */
#ifndef AMBER_VMM_JAIL_H
#define AMBER_VMM_JAIL_H

#include "config/config.h"

/*
 * Confine the process as cfg asks, before anything of the VM is opened. Always: close every
 * inherited fd above 2, clear the environment and set PR_SET_NO_NEW_PRIVS. Then, as
 * configured, in this order: join --cgroup, join --netns, enter a --new-pid-ns (fork: the
 * child goes on as pid 1 of the namespace, the parent waits, forwarding SIGTERM/SIGINT/SIGHUP),
 * enter a --new-mount-ns, make /dev/kvm and /dev/net/tun inside --chroot and chroot there,
 * set the rlimits, open /dev/kvm while still privileged (jail_take_kvm_fd hands it over), and
 * drop to --uid/--gid with no supplementary groups, checking that no capability is left and
 * that the new ids can open /dev/net/tun when a --net needs it.
 * Returns 0 in the process that goes on to run the VM; 1 in the --new-pid-ns parent once its
 * child has ended, with the child's exit status in *exit_status (the caller returns it); or a
 * negative errno after logging why (the caller exits with status 2).
 */
int jail_enter(const struct vm_config *cfg, int *exit_status);

/*
 * The /dev/kvm descriptor jail_enter opened before dropping to --uid/--gid (so the dropped ids
 * need no access to the device node, and no client path can name it). Hands it over once: the
 * caller owns it. Returns the fd, or -1 if none was opened (no --uid, or no /dev/kvm).
 */
int jail_take_kvm_fd(void);

#endif
