/* The virtual machine: KVM handles, guest memory, buses, devices, vCPUs and their lifecycle. */
#ifndef AMBER_VMM_VM_H
#define AMBER_VMM_VM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "devices/virtio/virtio.h"
#include "vmm/bus.h"
#include "vmm/config.h"
#include "vmm/layout.h"
#include "vmm/loop.h"
#include "vmm/mem.h"
#include "vmm/pause.h"

struct serial;
struct i8042;
struct pm;
struct vcpu;

/* Why the VM stopped; the first reason recorded wins. */
enum vm_exit {
    VM_EXIT_NONE,
    VM_EXIT_POWEROFF, /* guest ACPI power-off */
    VM_EXIT_REBOOT,   /* i8042 reset, triple fault or KVM system reset */
    VM_EXIT_SIGNAL,   /* SIGTERM/SIGINT/SIGHUP */
    VM_EXIT_ERROR,    /* an exit amber cannot handle, or a fatal host error */
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

    struct serial *serial;
    struct i8042 *i8042;
    struct pm *pm;
    int stdin_fd;       /* console input watched on the loop, or -1 */
    void *devices_priv; /* devices.c's console and slot bookkeeping */

    struct virtio_dev *virtio[VIRTIO_MAX_DEVICES];
    unsigned nvirtio;
    int vsock_listen_fd; /* bound early by PUT /vsock, handed to the device, or -1 */

    struct vcpu *vcpus;
    unsigned nvcpus;
    struct pause_barrier barrier;
    bool paused;
    bool running; /* vCPU threads started */

    atomic_int exit_reason; /* enum vm_exit */
    char exit_detail[256];  /* the one-line reason printed at exit */
    uint64_t boot_ns;       /* CLOCK_MONOTONIC at vm_start */
};

/*
 * Build the VM from cfg: open KVM (checking every capability used), map guest RAM, create the
 * irqchip, PIT and vCPUs, create devices, load the kernel/initrd and write the boot data and
 * ACPI tables. Nothing runs yet. On error returns a negative errno with a one-line message in
 * err, and everything already made is released. -EINVAL/-ENOENT/-ENOEXEC mean bad input.
 */
int vm_create(struct vm *vm, const struct vm_config *cfg, struct loop *loop, int vsock_listen_fd,
              char *err, size_t errlen);

/*
 * vm_create for a restore: the same KVM objects, devices and vCPUs, but guest RAM is a private
 * copy-on-write map of mem_fd (not closed here) and no kernel is loaded. The caller then loads
 * the snapshot's state (vmm/snapshot.h) before vm_start. Returns as vm_create.
 */
int vm_create_restored(struct vm *vm, const struct vm_config *cfg, struct loop *loop,
                       int vsock_listen_fd, int mem_fd, char *err, size_t errlen);

/* Start the vCPU threads. Returns 0 or a negative errno. */
int vm_start(struct vm *vm, char *err, size_t errlen);

/*
 * Pause: park every vCPU at the barrier (bounded by timeout_ms), then quiesce devices.
 * Runs on the loop thread. Returns 0, -EALREADY if paused, or -ETIMEDOUT (VM left running).
 */
int vm_pause(struct vm *vm, unsigned timeout_ms);

/*
 * Resume: devices first (replaying missed kicks), then the vCPUs, which are released on the
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

/* Stop and join the vCPU threads, destroy devices, unmap memory and close KVM. Idempotent. */
void vm_destroy(struct vm *vm);

/* Raise or lower a legacy interrupt line (KVM_IRQ_LINE). Thread-safe. */
void vm_irq_line(void *vm, unsigned gsi, int level);

#endif
