/* The ACPI power device: turns the guest's S5 request into the VMM's power-off callback. */
#include "devices/pm.h"

#include <stdlib.h>
#include <string.h>

#include "vmm/log.h"

struct pm {
    /* No mutable state, so no lock: the callback must tolerate concurrent calls. */
    dev_notify_fn poweroff;
    void *opaque;
};

struct pm *pm_create(dev_notify_fn poweroff, void *opaque)
{
    struct pm *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->poweroff = poweroff;
    p->opaque = opaque;
    return p;
}

void pm_destroy(struct pm *p)
{
    free(p);
}

void pm_io(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
    struct pm *p = opaque;

    if (!is_write) {
        memset(data, 0, len); /* no wake status, and the control register reads as 0 */
        return;
    }
    if (offset != 0)
        return; /* the status register is write-1-to-clear and nothing is ever set */
    uint8_t ctl = data[0];
    if (!(ctl & PM_SLP_EN))
        return;
    unsigned slp_typ = (ctl & PM_SLP_TYP_MASK) >> PM_SLP_TYP_SHIFT;
    if (slp_typ != PM_SLP_TYP_S5) {
        log_debug_rl("pm: ignoring sleep request with SLP_TYP %u", slp_typ);
        return;
    }
    if (p->poweroff)
        p->poweroff(p->opaque);
}
