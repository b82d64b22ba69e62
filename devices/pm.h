/* The ACPI hardware-reduced sleep registers: power-off through SLP_TYP 5 + SLP_EN. */
#ifndef AMBER_DEVICES_PM_H
#define AMBER_DEVICES_PM_H

#include <stdbool.h>
#include <stdint.h>

#include "devices/irq.h"

/*
 * One bus range: offset 0 is the sleep control register (LAYOUT_ACPI_SLEEP_CTL), offset 1 the
 * sleep status register (LAYOUT_ACPI_SLEEP_STS, reads 0, writes ignored).
 */
#define PM_PORT_LEN 2

/* The S5 (soft-off) sleep type the DSDT's \_S5 package must advertise. */
#define PM_SLP_TYP_S5    5
#define PM_SLP_TYP_SHIFT 2
#define PM_SLP_TYP_MASK  0x1c
#define PM_SLP_EN        0x20

struct pm;

/*
 * Create the power device. poweroff(opaque) runs (on the vCPU thread, no lock held) for each
 * control-register write with SLP_EN set and SLP_TYP == 5. Returns NULL when out of memory.
 */
struct pm *pm_create(dev_notify_fn poweroff, void *opaque);

/* Free it. NULL is accepted. */
void pm_destroy(struct pm *p);

/* The bus handler (vmm/bus.h) for [LAYOUT_ACPI_SLEEP_CTL, +PM_PORT_LEN); opaque is the pm. */
void pm_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write);

#endif
