/* One vCPU's own KVM counters (KVM_GET_STATS_FD), for the stall report: which vCPU does what. */
#ifndef AMBER_VMM_VCPU_STATS_H
#define AMBER_VMM_VCPU_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The counters the report prints, in this order (KVM's names). */
#define VCPU_STATS_NAMES                                                                           \
    X(exits)                                                                                       \
    X(halt_exits)                                                                                  \
    X(halt_wakeup)                                                                                 \
    X(irq_injections)                                                                              \
    X(nmi_injections)                                                                              \
    X(irq_window_exits)                                                                            \
    X(signal_exits)                                                                                \
    X(io_exits)                                                                                    \
    X(mmio_exits)                                                                                  \
    X(insn_emulation)                                                                              \
    X(insn_emulation_fail)                                                                         \
    X(hypercalls)                                                                                  \
    X(pf_taken)                                                                                    \
    X(blocking)

enum vcpu_stat {
#define X(name) VCPU_STAT_##name,
    VCPU_STATS_NAMES
#undef X
        VCPU_STAT_COUNT
};

/* All zero (as in a calloc'd vCPU) is a closed one. */
struct vcpu_stats {
    bool open;                        /* fd is ours */
    int fd;                           /* the stats fd */
    bool have[VCPU_STAT_COUNT];       /* KVM lists this counter */
    uint64_t offset[VCPU_STAT_COUNT]; /* its byte offset in the fd */
};

/*
 * Parse the binary statistics behind stats_fd (KVM's header and descriptors, read with pread,
 * every offset and size checked) and note where each counter of VCPU_STATS_NAMES lives. Takes
 * ownership of stats_fd (closed by vcpu_stats_close). Returns 0, or a negative errno for a
 * malformed file (s is then closed, and so is stats_fd).
 */
int vcpu_stats_parse(struct vcpu_stats *s, int stats_fd);

/* KVM_GET_STATS_FD on vcpu_fd, then vcpu_stats_parse. Call before the vCPU thread starts: the
 * ioctl takes the vCPU's mutex, which KVM_RUN holds. Returns 0 or a negative errno. */
int vcpu_stats_open(struct vcpu_stats *s, int vcpu_fd);

/*
 * Format the current values as "name N name N ..." into out[size] (counters KVM does not list
 * are left out). Any thread, no vCPU lock: it only preads the stats fd. Returns 0, or a
 * negative errno with out holding "unavailable (reason)".
 */
int vcpu_stats_format(const struct vcpu_stats *s, char *out, size_t size);

/* Close the stats fd (safe on a closed or never opened one). */
void vcpu_stats_close(struct vcpu_stats *s);

#define VCPU_SAMPLE_INSN 16 /* instruction bytes kept from the guest's RIP */

/*
 * What a vCPU thread reads of itself for the stall report: registers, the event KVM is about to
 * deliver, and the bytes at RIP (KVM_TRANSLATE, then guest RAM), which place a guest spinning
 * in exits that never reach amber (insn_emulation without mmio_exits: issue 13).
 */
struct vcpu_sample {
    uint64_t rip, rsp, rflags, cr0, cr3, cr4, efer;
    uint32_t cpl, mp_state; /* UINT32_MAX: unknown */
    bool have_events;       /* KVM_GET_VCPU_EVENTS answered */
    bool exc_injected, exc_pending, exc_has_error, irq_injected, nmi_injected;
    uint8_t exc_nr, irq_nr;
    uint32_t exc_error;
    bool rip_mapped;   /* KVM_TRANSLATE found RIP in the guest's page tables */
    uint64_t rip_gpa;  /* then: its guest-physical address */
    unsigned insn_len; /* bytes read at rip_gpa (to the page's end, at most VCPU_SAMPLE_INSN) */
    uint8_t insn[VCPU_SAMPLE_INSN];
};

/*
 * Format the sample's second and third report lines into out[size]: "cr0 .. cr3 .. cr4 ..
 * efer .. event ..." and "insn at gpa ..: 0f 01 ..." (or why there are no bytes). Lines are
 * separated by '\n'. Truncates to size; returns 0, or -ENOSPC when it had to.
 */
int vcpu_sample_format(const struct vcpu_sample *s, char *out, size_t size);

#endif
