/* vCPU threads: creation and x86 register setup, the KVM_RUN loop, exit dispatch and kicks. */
#ifndef AMBER_VMM_VCPU_H
#define AMBER_VMM_VCPU_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "vmm/bus.h"
#include "vmm/pause.h"
#include "vmm/vcpu_stats.h"

/* Why the VM stopped; the first reason recorded wins. */
enum vm_exit {
    VM_EXIT_NONE,
    VM_EXIT_POWEROFF, /* guest ACPI power-off */
    VM_EXIT_REBOOT,   /* i8042 reset, triple fault or KVM system reset */
    VM_EXIT_SIGNAL,   /* SIGTERM/SIGINT/SIGHUP */
    VM_EXIT_ERROR,    /* an exit amber cannot handle, or a fatal host error */
};

/*
 * What a vCPU needs of its VM. vm.c fills one in for all its vCPUs, and vcpu.c knows no
 * struct vm: the VM depends on its vCPUs, not the other way round.
 */
struct guest_mem;

struct vcpu_env {
    int vm_fd;
    int run_size; /* bytes to mmap for each vCPU's kvm_run */
    unsigned nvcpus;
    bool tsc_deadline; /* the guest gets the TSC-deadline timer */
    const struct vm_config *cfg;
    struct bus *pio, *mmio; /* where port and MMIO exits are dispatched */
    struct pause_barrier *barrier;
    const struct guest_mem *mem; /* guest RAM, read by the stall report's sample */
    /* End the VM for why, with a one-line detail (the VM's vm_request_exit); any thread. */
    void (*request_exit)(void *opaque, enum vm_exit why, const char *detail);
    void *opaque;
};

#define VCPU_KICK_SIGNAL SIGUSR1

struct vcpu {
    const struct vcpu_env *env;
    unsigned index;
    int fd;
    struct kvm_run *run;
    pthread_t thread;
    bool started;
    /* For the stall report: written by the vCPU thread, read without a lock by the loop. */
    _Atomic uint64_t exits;     /* exits handled in userspace */
    _Atomic uint32_t last_exit; /* KVM_EXIT_* of the latest one */
    _Atomic uint64_t last_addr; /* its port or MMIO address */
    _Atomic bool in_exit;       /* handling an exit now (false: in KVM_RUN or parked) */
    _Atomic bool at_barrier;    /* in pause_checkpoint now (parked, or passing through) */
    _Atomic uint64_t resumes;   /* pauses this vCPU was parked for and released from */
    struct vcpu_stats stats;    /* KVM's own counters for this vCPU (opened at create) */
    /* A register sample for the stall report, taken by the vCPU thread itself (the only one
     * that can: KVM_RUN holds the vCPU's mutex). The report bumps sample_req and kicks; the
     * thread answers at its next turn of the loop and sets sample_done to the request. */
    _Atomic uint64_t sample_req, sample_done;
    struct vcpu_sample sample; /* under vcpu.c's sample lock */
};

/*
 * Install the (empty) kick signal handler, without SA_RESTART so KVM_RUN returns -EINTR.
 * Call once per process before any vCPU thread starts. Returns 0 or a negative errno.
 */
int vcpu_install_kick_handler(void);

/*
 * Create vCPU `index`: KVM_CREATE_VCPU, map kvm_run, set CPUID (from `supported`, with this
 * vCPU's topology), the boot MSRs, the FPU and the LAPIC's LINT0/LINT1 modes.
 * Returns 0 or a negative errno with a message in err.
 */
int vcpu_create(struct vcpu *v, const struct vcpu_env *env, unsigned index,
                const struct kvm_cpuid2 *supported, char *err, size_t errlen);

/* Load the boot vCPU's registers. Returns 0 or a negative errno. */
int vcpu_set_regs(struct vcpu *v, const struct kvm_regs *regs, const struct kvm_sregs *sregs);

/* Read the vCPU's special registers (the boot code edits them). Returns 0 or -errno. */
int vcpu_get_sregs(struct vcpu *v, struct kvm_sregs *sregs);

/* Start the vCPU's thread (named "vcpu<N>"). Returns 0 or a negative errno. */
int vcpu_start(struct vcpu *v);

/*
 * Make the vCPU leave KVM_RUN soon: set immediate_exit and signal its thread. Used by the
 * pause barrier with the barrier lock held; async-signal-safe work only.
 */
void vcpu_kick(struct vcpu *v);

/*
 * Log three "state: vcpuN ..." lines: exits handled in userspace, the latest exit's reason and
 * address, where the thread is (KVM_RUN, an exit, the pause barrier) and how many pauses it
 * came back from; KVM's own counters for this vCPU (exits, injected interrupts, halts,
 * emulated instructions...); and the register sample asked by vcpu_sample_request, or why
 * there is none. Any thread; the figures are racy.
 */
void vcpu_dump(const struct vcpu *v);

/*
 * Ask the vCPU's thread for a register sample (RIP, RSP, RFLAGS, CPL, MP state): bumps the
 * request and sends the kick signal, leaving immediate_exit alone, so a vCPU in KVM_RUN leaves
 * it once and goes back in. Any thread. vcpu_dump prints the sample if it came in time.
 */
void vcpu_sample_request(struct vcpu *v);

/* Wait up to timeout_ms for the samples asked of vcpus[0..n) (those not parked). */
void vcpu_sample_wait(struct vcpu *vcpus, unsigned n, unsigned timeout_ms);

/* Join the thread (after the barrier was told to stop) and release the vCPU's fd and map. */
void vcpu_destroy(struct vcpu *v);

#endif
