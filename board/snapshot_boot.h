/* Booting a VM from a snapshot (PUT /snapshot/load and --restore). */
#ifndef AMBER_BOARD_SNAPSHOT_BOOT_H
#define AMBER_BOARD_SNAPSHOT_BOOT_H

#include <stdbool.h>
#include <stddef.h>

#include "api/api.h"
#include "vmm/x86/vm_state.h"

struct board;
struct vm;
struct loop;

/*
 * Restore p->snapshot_path with p->mem_file_path into vm: read and check the state file, load
 * its configuration into cfg (a fresh process's, with no boot configuration), apply the
 * network and vsock overrides, check the memory file's size, build the VM around a private
 * map of the memory file, load every section, and start the vCPUs (parked when !resume_vm).
 * vsock_fd (a socket bound early, or -1) is consumed. On failure nothing is left of vm.
 * Returns 0 or a negative errno with err set (-EBADMSG/-EPROTONOSUPPORT for a bad file).
 */
int snapshot_boot(struct board *b, struct vm *vm, struct vm_config *cfg, struct loop *loop,
                  int vsock_fd, const struct api_snapshot_load *p, char *err, size_t errlen);

/* The kvmclock mode for clock_realtime (AMBER_SNAPSHOT_CLOCK_SW=1 forces amber's own path). */
enum clock_mode snapshot_clock_mode(bool clock_realtime);

#endif
