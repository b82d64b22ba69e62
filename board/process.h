/* The VMM process: event loop, signals, the optional API and the VM, from start to exit. */
#ifndef AMBER_BOARD_PROCESS_H
#define AMBER_BOARD_PROCESS_H

#include "config/config.h"

/*
 * Run amber with a parsed configuration until the guest or a signal ends it. Boots at once
 * when cfg names a kernel, otherwise waits for the API's InstanceStart. argv is kept for a
 * restart on guest reboot. Returns the process exit status (0 guest power-off, reboot or
 * signal; 1 VMM failure; 2 bad input) after printing one line saying why amber ended.
 */
int vmm_main(struct vm_config *cfg, char **argv);

#endif
