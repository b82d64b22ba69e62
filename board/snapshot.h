/* Snapshot and restore of a whole VM: the state file, the memory file and their checks. */
#ifndef AMBER_BOARD_SNAPSHOT_H
#define AMBER_BOARD_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "vmm/mem.h"
#include "vmm/snapshot_fmt.h"
#include "vmm/x86/cpu_state.h"
#include "vmm/x86/vm_state.h"

struct board;
struct loop;

/* Record tags of the SNAP_SEC_META section. */
enum snap_meta_tag {
    META_CONFIG_JSON = 1, /* the VM's configuration (Firecracker's FullVmConfiguration shape) */
    META_MEM_BYTES = 2,   /* u64: guest RAM, and the memory file's size */
    META_NVCPUS = 3,      /* u32 */
    META_NVIRTIO = 4,     /* u32: virtio-mmio slots in use */
};

/* Record tags of the SNAP_SEC_LEGACY section. */
enum snap_legacy_tag {
    LEGACY_SERIAL = 1,  /* struct serial_state */
    LEGACY_I8042 = 2,   /* struct i8042_state */
    LEGACY_PM = 3,      /* empty: the power device has no state */
    LEGACY_VMGENID = 4, /* struct vmgenid_state; absent in files from before the device */
};

struct snapshot_create_params {
    const char *snapshot_path;
    const char *mem_file_path;
    bool fsync; /* fsync both files before answering (off by default, as in Firecracker) */
};

struct snapshot_stats {
    uint64_t state_bytes;
    uint64_t mem_bytes_written; /* data written to the memory file (resident, non-zero pages) */
    uint64_t mem_bytes;         /* guest RAM, the memory file's size */
    uint64_t total_ns;
};

/*
 * Write the paused VM's state to p->snapshot_path and its RAM to p->mem_file_path (a sparse
 * file: only resident, non-zero pages carry data). The VM must be paused and stays paused;
 * nothing in it changes, whatever happens. Loop thread. Returns 0, or a negative errno with
 * err set (-EBUSY if not paused, -ENOSPC when a file system is full; a failed create removes
 * neither file but leaves no valid state file: the state file is written last).
 */
int snapshot_create(struct board *b, const struct snapshot_create_params *p,
                    struct snapshot_stats *st, char *err, size_t errlen);

/*
 * Write guest RAM m to fd (already truncated to zero) as a sparse file of m->size bytes: pages
 * not resident (anonymous RAM) or all zero become holes. Adds the bytes written to *written.
 * Returns 0 or a negative errno.
 */
int snapshot_write_mem(const struct guest_mem *m, int fd, uint64_t *written);

/* A snapshot state file read into memory and checked (snapr_open). */
struct snapshot_file {
    uint8_t *buf;
    size_t len;
    struct snap_reader r;
};

/* Read and check path (at most SNAP_MAX_FILE_BYTES). Returns 0 or a negative errno, err set. */
int snapshot_file_read(struct snapshot_file *f, const char *path, char *err, size_t errlen);

/* Free what snapshot_file_read allocated. */
void snapshot_file_free(struct snapshot_file *f);

/*
 * Parse the META section into cfg (which holds the restoring process's own flags and no boot
 * configuration): the machine, drives, network interfaces, vsock and entropy of the saved VM.
 * Checks that the vCPU count agrees with the vCPU sections the file holds and that RAM matches
 * META_MEM_BYTES. *mem_bytes gets guest RAM. Pure except for cfg. 0 or -EBADMSG with err set.
 */
int snapshot_load_config(const struct snap_reader *r, struct vm_config *cfg, uint64_t *mem_bytes,
                         char *err, size_t errlen);

/* A memory file must hold exactly mem_bytes. Returns 0, or -EINVAL with err set. */
int snapshot_check_mem_file(int fd, uint64_t mem_bytes, char *err, size_t errlen);

/*
 * Check every section against vm (made by vm_create_restored from the same config), then load
 * them: VM state, each vCPU, legacy devices, each virtio device (back-ends start, vsock sends
 * its transport reset), and kvmclock last per mode; then the VM generation ID changes and its
 * interrupt is raised (devices/vmgenid.h), so the guest reseeds its RNG when it runs. Nothing
 * reaches KVM before every check passed. *clock_native tells whether KVM_CLOCK_REALTIME was used.
 * Loop thread, vCPUs not started. Returns 0 or a negative errno with err set.
 */
int snapshot_restore(struct board *b, const struct snap_reader *r, enum clock_mode mode,
                     bool *clock_native, char *err, size_t errlen);

#endif
