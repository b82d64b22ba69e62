/* Guest CPUID (topology, hypervisor and KVM leaves) and the MSRs every vCPU starts with. */
#ifndef AMBER_VMM_X86_CPUID_H
#define AMBER_VMM_X86_CPUID_H

#include <stddef.h>
#include <stdint.h>
#include <linux/kvm.h>

#define CPUID_KVM_SIGNATURE   0x40000000u
#define CPUID_KVM_FEATURES    0x40000001u
#define KVM_FEAT_CLOCKSOURCE2 (1u << 3)
#define KVM_FEAT_CLOCK_STABLE (1u << 24)

/* cpuid_build flags: what KVM offers outside KVM_GET_SUPPORTED_CPUID. */
#define CPUID_F_TSC_DEADLINE (1u << 0) /* KVM_CAP_TSC_DEADLINE_TIMER: its LAPIC has the mode */

/*
 * Build the CPUID table for vCPU vcpu_index (0-based; it is also the APIC id) of nvcpus from
 * supported (KVM_GET_SUPPORTED_CPUID). All vCPUs are cores of one socket, one thread per core.
 * Leaves 1, 4, 6, 0xb, 0x1f, 0x80000008, 0x8000001e and the KVM leaves 0x40000000/1 are fixed
 * up (APIC ids, logical counts, cache sharing, x2APIC topology, hypervisor bit, KVM signature and
 * kvmclock features); every other leaf is kept as KVM reported it. Leaf 1's TSC-deadline bit
 * is set exactly when flags has CPUID_F_TSC_DEADLINE (KVM never reports it as supported CPUID).
 * out must have room for max_entries entries. Returns 0 (out->nent set), -EINVAL for bad
 * arguments (nvcpus 0 or above 255, vcpu_index >= nvcpus, unknown flags), or -ENOSPC if
 * max_entries is too small.
 */
int cpuid_build(const struct kvm_cpuid2 *supported, unsigned vcpu_index, unsigned nvcpus,
                unsigned flags, struct kvm_cpuid2 *out, unsigned max_entries);

/* Bits needed to number nvcpus cores in an APIC id: ceil(log2(nvcpus)), 0 for one. */
unsigned cpuid_core_shift(unsigned nvcpus);

/*
 * The MSRs to set on every vCPU before it first runs (SYSENTER/SYSCALL MSRs and
 * KERNEL_GS_BASE zero, IA32_MISC_ENABLE with fast strings, MTRRs on with write-back default).
 * Writes at most max entries to out and returns how many the full list has (a return larger
 * than max means out was too small).
 */
size_t msr_boot_list(struct kvm_msr_entry *out, size_t max);

#endif
