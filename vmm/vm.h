/* The virtual machine: KVM handles, guest memory, buses, vCPUs and their lifecycle. */
#ifndef AMBER_VMM_VM_H
#define AMBER_VMM_VM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/bus.h"
#include "config/config.h"
#include "vmm/layout.h"
#include "vmm/loop.h"
#include "vmm/mem.h"
#include "vmm/pause.h"
#include "vmm/vcpu.h"

/*
 * What the board (board/devices.c) hangs on the VM, so that the VM can pause, resume and tear
 * down devices it knows nothing about. Each hook gets the opaque pointer given to
 * vm_set_hooks; a NULL hook is skipped. All run on the loop thread.
 */
struct vm_hooks {
    /* vm_pause, every vCPU parked: stop device work within timeout_ms. Returns 0, or
     * -ETIMEDOUT with every device running again (the pause is then withdrawn). */
    int (*quiesce)(void *opaque, unsigned timeout_ms);
    void (*resume)(void *opaque);  /* vm_resume, vCPUs still parked: restart, replay kicks */
    void (*destroy)(void *opaque); /* vm_destroy, vCPUs joined, guest memory still mapped */
};

/* A virtio-mmio device the guest is told about (command line and ACPI DSDT). */
struct vm_mmio_dev {
    uint64_t base;
    unsigned gsi;
};

struct vm {
    const struct vm_config *cfg;
    struct loop *loop;

    int kvm_fd;
    int vm_fd;
    int run_size; /* bytes to mmap for each vCPU's kvm_run */
    unsigned max_vcpus;
    bool tsc_deadline; /* KVM_CAP_TSC_DEADLINE_TIMER: guests get the TSC-deadline timer */

    struct guest_mem mem;
    struct bus pio;
    struct bus mmio;

    const struct vm_hooks *hooks; /* the board's, or NULL */
    void *hooks_opaque;

    struct vm_mmio_dev mmio_dev[VIRTIO_MAX_DEVICES]; /* in slot order */
    unsigned nmmio_dev;
    uint64_t vmgenid_gpa; /* the VM generation ID the ACPI tables describe, or 0 */
    unsigned vmgenid_gsi; /* its Generic Event Device's interrupt line */

    struct vcpu *vcpus;
    struct vcpu_env vcpu_env; /* what they need of this VM */
    unsigned nvcpus;
    struct pause_barrier barrier;
    bool paused;
    uint64_t frozen_clock_ns; /* build/test-hooks/amber's AMBER_TEST_FREEZE_CLOCK (vm.c) */
    bool running;             /* vCPU threads started */

    atomic_int exit_reason; /* enum vm_exit */
    char exit_detail[256];  /* the one-line reason printed at exit */
    uint64_t boot_ns;       /* CLOCK_MONOTONIC at vm_start */
};

/*
 * Build the VM from cfg: open KVM (checking every capability used), map guest RAM, create the
 * irqchip, PIT and vCPUs. No devices and no guest yet: the board adds its devices (registering
 * hooks with vm_set_hooks and slots with vm_add_mmio_dev), then loads the guest with
 * loader_boot (vmm/loader.h). On error returns a negative errno with a one-line message in err,
 * and everything already made is released. -EINVAL means bad input.
 */
int vm_create(struct vm *vm, const struct vm_config *cfg, struct loop *loop, char *err,
              size_t errlen);

/* Register the board's hooks (kept by pointer) and their opaque argument. */
void vm_set_hooks(struct vm *vm, const struct vm_hooks *hooks, void *opaque);

/*
 * Announce a virtio-mmio device at base raising gsi, in slot order, for the guest's command
 * line and ACPI tables. Returns 0, or -ENOSPC past VIRTIO_MAX_DEVICES.
 */
int vm_add_mmio_dev(struct vm *vm, uint64_t base, unsigned gsi);

/*
 * Announce a VM generation ID at gpa (16 bytes, in reserved guest memory) whose changes are
 * signalled by an edge on gsi, for the ACPI tables (acpi_config.vmgenid).
 */
void vm_add_vmgenid(struct vm *vm, uint64_t gpa, unsigned gsi);

/*
 * vm_create for a restore: the same KVM objects and vCPUs, but guest RAM is a private
 * copy-on-write map of mem_fd (not closed here), and the caller skips loader_boot: it adds the
 * board's devices, loads the snapshot's state (board/snapshot.h), then calls vm_start.
 * Returns as vm_create.
 */
int vm_create_restored(struct vm *vm, const struct vm_config *cfg, struct loop *loop, int mem_fd,
                       char *err, size_t errlen);

/* Start the vCPU threads. Returns 0 or a negative errno. */
int vm_start(struct vm *vm, char *err, size_t errlen);

/*
 * Pause: park every vCPU at the barrier, then run the quiesce hook, both within timeout_ms.
 * Runs on the loop thread. Returns 0, -EALREADY if paused, -ETIMEDOUT if a vCPU did not
 * stop, or -EBUSY if a device's in-flight I/O did not finish (either way the pause is
 * withdrawn and the VM runs on as before).
 */
int vm_pause(struct vm *vm, unsigned timeout_ms);

/*
 * Resume: the resume hook first (devices replay missed kicks), then the vCPUs, released on the
 * loop's next turn so that the caller's answer goes out first. The VM counts as running at
 * once; a pause before that turn keeps the vCPUs parked. Loop thread.
 */
int vm_resume(struct vm *vm);

/*
 * Record why the VM ends (first caller wins) and ask the loop to quit. Thread-safe; vCPU
 * threads call it on power-off, reboot or a fatal exit.
 */
void vm_request_exit(struct vm *vm, enum vm_exit why, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Stop and join the vCPU threads, run the destroy hook (the board's devices), unmap memory and
 * close KVM. Idempotent.
 */
void vm_destroy(struct vm *vm);

/* Raise or lower a legacy interrupt line (KVM_IRQ_LINE). Thread-safe. */
void vm_irq_line(void *vm, unsigned gsi, int level);

#endif
