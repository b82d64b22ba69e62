/* The VM generation ID: 16 random bytes in guest memory, renewed (and announced) on each restore.
 */
#ifndef AMBER_DEVICES_VMGENID_H
#define AMBER_DEVICES_VMGENID_H

#include <stddef.h>
#include <stdint.h>

#include "devices/irq.h"
#include "vmm/mem.h"

#define VMGENID_ID_BYTES      16
#define VMGENID_STATE_VERSION 1

/*
 * What a snapshot keeps of the device (one record, 32 bytes, host byte order like the other
 * legacy device records). gpa and gsi are what the guest's DSDT was built with.
 */
struct vmgenid_state {
    uint32_t version;             /* VMGENID_STATE_VERSION */
    uint32_t gsi;                 /* the Generic Event Device's interrupt line */
    uint64_t gpa;                 /* where the ID lives in guest memory */
    uint8_t id[VMGENID_ID_BYTES]; /* the ID the guest was given */
};

/* A source of random bytes: fill buf[0..len) and return 0, or return a negative errno. */
typedef int (*vmgenid_random_fn)(void *buf, size_t len);

struct vmgenid;

/*
 * Create the device whose ID lives at gpa in m (16 bytes, 8-byte aligned, in memory the e820
 * map reserves) and whose changes are announced by an edge on gsi through irq(opaque, gsi,
 * level). random supplies the IDs (NULL: getrandom(2)). A first ID is drawn and written to guest
 * memory at once. Loop thread, like every call below. Returns 0 with *out set, or -ENOMEM,
 * -EINVAL (gpa unaligned), -EFAULT (the ID is outside guest memory) or the random source's error.
 */
int vmgenid_create(struct guest_mem *m, uint64_t gpa, unsigned gsi, irq_line_fn irq, void *opaque,
                   vmgenid_random_fn random, struct vmgenid **out);

/* Free it. NULL is accepted. */
void vmgenid_destroy(struct vmgenid *v);

/* The current ID into id. */
void vmgenid_get(const struct vmgenid *v, uint8_t id[VMGENID_ID_BYTES]);

/* Fill s with the device's state for a snapshot. */
void vmgenid_save(const struct vmgenid *v, struct vmgenid_state *s);

/*
 * Check a saved state (from a hostile file) against this device: the version, and the address
 * and line the guest's tables name must be this device's. Returns 0, or -EBADMSG with one line
 * in err.
 */
int vmgenid_check(const struct vmgenid *v, const struct vmgenid_state *s, char *err, size_t errlen);

/*
 * A snapshot holding s (checked) was restored: draw a new ID that differs from s->id, write it
 * to guest memory and raise an edge on the line, so that the guest's Generic Event Device
 * notifies its VM generation ID driver, which reseeds the kernel's RNG. Call it once the
 * interrupt controllers' state is loaded (or the edge is lost) and before the vCPUs run.
 * Returns 0, -EFAULT, -EIO (the random source keeps repeating s->id) or the source's error.
 */
int vmgenid_restore(struct vmgenid *v, const struct vmgenid_state *s);

#endif
