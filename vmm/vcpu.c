/* vCPU threads: x86 state at creation, the KVM_RUN loop, exit dispatch and pause kicks. */
#include "vmm/vcpu.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "vmm/log.h"
#include "vmm/mem.h"
#include "vmm/seccomp.h"
#include "vmm/x86/cpuid.h"

#define MSR_MAX_BOOT 32

/* The stall report waits here for the register samples it asked for (vcpu_sample_wait). */
static pthread_mutex_t sample_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sample_cond = PTHREAD_COND_INITIALIZER;

/* LAPIC register offsets and delivery modes for LINT0/LINT1. */
#define APIC_LVT0        0x350
#define APIC_LVT1        0x360
#define APIC_MODE_EXTINT 0x7
#define APIC_MODE_NMI    0x4
#define APIC_MODE_SHIFT  8

static void kick_handler(int sig)
{
    (void)sig; /* only here to make KVM_RUN return -EINTR */
}

int vcpu_install_kick_handler(void)
{
    struct sigaction sa = {.sa_handler = kick_handler};
    sigemptyset(&sa.sa_mask);
    return sigaction(VCPU_KICK_SIGNAL, &sa, NULL) < 0 ? -errno : 0;
}

static int set_cpuid(struct vcpu *v, const struct kvm_cpuid2 *supported, char *err, size_t errlen)
{
    unsigned max = supported->nent + 8;
    struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + max * sizeof(c->entries[0]));
    if (!c)
        return -ENOMEM;
    unsigned flags = v->env->tsc_deadline ? CPUID_F_TSC_DEADLINE : 0;
    int ret = cpuid_build(supported, v->index, v->env->nvcpus, flags, c, max);
    if (ret == 0 && ioctl(v->fd, KVM_SET_CPUID2, c) < 0) {
        ret = -errno;
        snprintf(err, errlen, "vcpu%u: KVM_SET_CPUID2: %s", v->index, strerror(errno));
    } else if (ret < 0) {
        snprintf(err, errlen, "vcpu%u: cannot build CPUID: %s", v->index, strerror(-ret));
    }
    free(c);
    return ret;
}

static int set_msrs(struct vcpu *v, char *err, size_t errlen)
{
    struct {
        struct kvm_msrs hdr;
        struct kvm_msr_entry entries[MSR_MAX_BOOT];
    } msrs;
    memset(&msrs, 0, sizeof(msrs));
    size_t want = msr_boot_list(msrs.entries, MSR_MAX_BOOT);
    if (want > MSR_MAX_BOOT) {
        snprintf(err, errlen, "vcpu%u: %zu boot MSRs, room for %d", v->index, want, MSR_MAX_BOOT);
        return -E2BIG;
    }
    msrs.hdr.nmsrs = (uint32_t)want;
    int n = ioctl(v->fd, KVM_SET_MSRS, &msrs);
    if (n < 0 || (uint32_t)n != msrs.hdr.nmsrs) {
        uint32_t bad = n < 0 ? 0 : msrs.entries[n].index;
        snprintf(err, errlen, "vcpu%u: KVM_SET_MSRS failed at MSR %#x", v->index, bad);
        return n < 0 ? -errno : -EINVAL;
    }
    return 0;
}

static int set_fpu_and_lapic(struct vcpu *v, char *err, size_t errlen)
{
    struct kvm_fpu fpu = {.fcw = 0x37f, .mxcsr = 0x1f80};
    if (ioctl(v->fd, KVM_SET_FPU, &fpu) < 0) {
        snprintf(err, errlen, "vcpu%u: KVM_SET_FPU: %s", v->index, strerror(errno));
        return -errno;
    }

    /* LINT0 takes the legacy PIC's ExtINT, LINT1 takes NMIs, as on real boards. */
    struct kvm_lapic_state lapic;
    if (ioctl(v->fd, KVM_GET_LAPIC, &lapic) < 0) {
        snprintf(err, errlen, "vcpu%u: KVM_GET_LAPIC: %s", v->index, strerror(errno));
        return -errno;
    }
    uint32_t lvt0, lvt1;
    memcpy(&lvt0, &lapic.regs[APIC_LVT0], 4);
    memcpy(&lvt1, &lapic.regs[APIC_LVT1], 4);
    lvt0 = (lvt0 & ~(7u << APIC_MODE_SHIFT)) | (APIC_MODE_EXTINT << APIC_MODE_SHIFT);
    lvt1 = (lvt1 & ~(7u << APIC_MODE_SHIFT)) | (APIC_MODE_NMI << APIC_MODE_SHIFT);
    memcpy(&lapic.regs[APIC_LVT0], &lvt0, 4);
    memcpy(&lapic.regs[APIC_LVT1], &lvt1, 4);
    if (ioctl(v->fd, KVM_SET_LAPIC, &lapic) < 0) {
        snprintf(err, errlen, "vcpu%u: KVM_SET_LAPIC: %s", v->index, strerror(errno));
        return -errno;
    }
    return 0;
}

int vcpu_create(struct vcpu *v, const struct vcpu_env *env, unsigned index,
                const struct kvm_cpuid2 *supported, char *err, size_t errlen)
{
    memset(v, 0, sizeof(*v));
    v->env = env;
    v->index = index;
    v->fd = ioctl(env->vm_fd, KVM_CREATE_VCPU, (unsigned long)index);
    if (v->fd < 0) {
        snprintf(err, errlen, "KVM_CREATE_VCPU %u: %s", index, strerror(errno));
        return -errno;
    }
    void *run = mmap(NULL, (size_t)env->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
    if (run == MAP_FAILED) {
        int ret = -errno;
        snprintf(err, errlen, "vcpu%u: mmap kvm_run: %s", index, strerror(errno));
        close(v->fd);
        v->fd = -1;
        return ret;
    }
    v->run = run;
    /* Before the thread starts: the ioctl takes the vCPU's mutex, which KVM_RUN holds. The
     * stall report works without it (it says so). */
    int stats_rc = vcpu_stats_open(&v->stats, v->fd);
    if (stats_rc)
        log_debug("vcpu%u: no KVM stats fd: %s", index, strerror(-stats_rc));

    int ret = set_cpuid(v, supported, err, errlen);
    if (!ret)
        ret = set_msrs(v, err, errlen);
    if (!ret)
        ret = set_fpu_and_lapic(v, err, errlen);
    if (ret) {
        vcpu_stats_close(&v->stats);
        munmap(v->run, (size_t)env->run_size);
        close(v->fd);
        v->fd = -1;
        v->run = NULL;
    }
    return ret;
}

int vcpu_get_sregs(struct vcpu *v, struct kvm_sregs *sregs)
{
    return ioctl(v->fd, KVM_GET_SREGS, sregs) < 0 ? -errno : 0;
}

int vcpu_set_regs(struct vcpu *v, const struct kvm_regs *regs, const struct kvm_sregs *sregs)
{
    if (ioctl(v->fd, KVM_SET_SREGS, sregs) < 0)
        return -errno;
    if (ioctl(v->fd, KVM_SET_REGS, regs) < 0)
        return -errno;
    return 0;
}

static const char *exit_name(uint32_t reason)
{
    switch (reason) {
    case KVM_EXIT_UNKNOWN:
        return "KVM_EXIT_UNKNOWN";
    case KVM_EXIT_EXCEPTION:
        return "KVM_EXIT_EXCEPTION";
    case KVM_EXIT_HYPERCALL:
        return "KVM_EXIT_HYPERCALL";
    case KVM_EXIT_DEBUG:
        return "KVM_EXIT_DEBUG";
    case KVM_EXIT_HLT:
        return "KVM_EXIT_HLT";
    case KVM_EXIT_FAIL_ENTRY:
        return "KVM_EXIT_FAIL_ENTRY";
    case KVM_EXIT_INTERNAL_ERROR:
        return "KVM_EXIT_INTERNAL_ERROR";
    case KVM_EXIT_SHUTDOWN:
        return "KVM_EXIT_SHUTDOWN";
    case KVM_EXIT_SYSTEM_EVENT:
        return "KVM_EXIT_SYSTEM_EVENT";
    case KVM_EXIT_IO:
        return "KVM_EXIT_IO";
    case KVM_EXIT_MMIO:
        return "KVM_EXIT_MMIO";
    case KVM_EXIT_INTR:
        return "KVM_EXIT_INTR";
    default:
        return "unknown exit";
    }
}

/* End the VM for why, with a printf-style one-line detail. */
static void vcpu_end_vm(struct vcpu *v, enum vm_exit why, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void vcpu_end_vm(struct vcpu *v, enum vm_exit why, const char *fmt, ...)
{
    char detail[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    v->env->request_exit(v->env->opaque, why, detail);
}

static void fatal_exit(struct vcpu *v, const char *what)
{
    struct kvm_regs regs;
    unsigned long long rip = 0;
    if (ioctl(v->fd, KVM_GET_REGS, &regs) == 0)
        rip = regs.rip;
    if (v->run->exit_reason == KVM_EXIT_INTERNAL_ERROR)
        vcpu_end_vm(v, VM_EXIT_ERROR, "vcpu%u: unhandled %s (suberror %u) at RIP %#llx", v->index,
                    what, v->run->internal.suberror, rip);
    else
        vcpu_end_vm(v, VM_EXIT_ERROR, "vcpu%u: unhandled %s (reason %u) at RIP %#llx", v->index,
                    what, v->run->exit_reason, rip);
}

/* Log what a vCPU looked like when the guest triple-faulted: enough to place the fault with the
 * guest kernel's System.map (RIP, stack, page tables, descriptor tables, pending events).
 * Intel keeps that state; on AMD, KVM has already reset the vCPU, and the line says so. */
static void log_fault_state(struct vcpu *v)
{
    struct kvm_regs r;
    struct kvm_sregs s;
    struct kvm_vcpu_events e;
    if (ioctl(v->fd, KVM_GET_REGS, &r) < 0 || ioctl(v->fd, KVM_GET_SREGS, &s) < 0) {
        log_warn("vcpu%u: cannot read registers after the triple fault: %s", v->index,
                 strerror(errno));
        return;
    }
    if (r.rip == 0xfff0 && s.cs.selector == 0xf000) {
        /* AMD: KVM re-initialises the vCPU on the shutdown intercept, before we can look. */
        log_warn("vcpu%u: triple fault; KVM reset the vCPU before reporting it (AMD), so its "
                 "registers are gone",
                 v->index);
        return;
    }
    log_warn("vcpu%u: triple fault at rip %#llx rsp %#llx rflags %#llx cs %#x ss %#x cr0 %#llx "
             "cr2 %#llx cr3 %#llx cr4 %#llx efer %#llx idt %#llx/%#x gdt %#llx/%#x",
             v->index, r.rip, r.rsp, r.rflags, s.cs.selector, s.ss.selector, s.cr0, s.cr2, s.cr3,
             s.cr4, s.efer, s.idt.base, s.idt.limit, s.gdt.base, s.gdt.limit);
    if (ioctl(v->fd, KVM_GET_VCPU_EVENTS, &e) == 0)
        log_warn("vcpu%u: events: exception %s nr %u error %#x, interrupt %s nr %u, nmi %s, "
                 "shadow %#x",
                 v->index, e.exception.injected ? "injected" : "none", e.exception.nr,
                 e.exception.error_code, e.interrupt.injected ? "injected" : "none", e.interrupt.nr,
                 e.nmi.injected ? "injected" : "none", e.interrupt.shadow);
}

/* Handle one exit. Returns false when the vCPU must stop running. */
static bool handle_exit(struct vcpu *v)
{
    struct kvm_run *run = v->run;
    switch (run->exit_reason) {
    case KVM_EXIT_IO: {
        uint8_t *data = (uint8_t *)run + run->io.data_offset;
        bool is_write = run->io.direction == KVM_EXIT_IO_OUT;
        /* String I/O (rep ins/outs) arrives as `count` back-to-back elements. */
        for (uint32_t i = 0; i < run->io.count; i++)
            bus_dispatch(v->env->pio, run->io.port, data + (size_t)i * run->io.size, run->io.size,
                         is_write);
        return true;
    }
    case KVM_EXIT_MMIO:
        if (run->mmio.len > sizeof(run->mmio.data))
            return true;
        bus_dispatch(v->env->mmio, run->mmio.phys_addr, run->mmio.data, run->mmio.len,
                     run->mmio.is_write);
        return true;
    case KVM_EXIT_INTR:
        return true;
    case KVM_EXIT_HLT:
        /* With the in-kernel LAPIC, HLT is handled by KVM; a stray one just resumes. */
        return true;
    case KVM_EXIT_SHUTDOWN:
        log_fault_state(v);
        vcpu_end_vm(v, VM_EXIT_REBOOT, "guest reset (triple fault on vcpu%u)", v->index);
        return false;
    case KVM_EXIT_SYSTEM_EVENT:
        if (run->system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN) {
            vcpu_end_vm(v, VM_EXIT_POWEROFF, "guest powered off");
            return false;
        }
        if (run->system_event.type == KVM_SYSTEM_EVENT_RESET) {
            vcpu_end_vm(v, VM_EXIT_REBOOT, "guest rebooted (system reset)");
            return false;
        }
        fatal_exit(v, "KVM_EXIT_SYSTEM_EVENT");
        return false;
    default:
        fatal_exit(v, exit_name(run->exit_reason));
        return false;
    }
}

/*
 * KVM finishes a PIO or MMIO instruction (register write-back, RIP advance) only on the next
 * KVM_RUN. If a pause was asked for while this exit was handled (the kick set immediate_exit),
 * re-enter now: KVM completes the instruction and returns -EINTR at once, so the state a
 * snapshot reads is consistent. Best effort: a kick landing after this check parks the vCPU
 * with the instruction unfinished, and a restore then executes it again (docs/snapshot.md).
 */
static void complete_io_before_pause(struct vcpu *v)
{
    for (int i = 0; i < 4; i++) {
        uint32_t reason = v->run->exit_reason;
        if ((reason != KVM_EXIT_IO && reason != KVM_EXIT_MMIO) || !v->run->immediate_exit)
            return;
        if (ioctl(v->fd, KVM_RUN, 0) < 0)
            return; /* -EINTR: done */
        /* A string instruction needs another round trip: handle it and try again. */
        if (!handle_exit(v))
            return;
    }
}

/* Read the instruction bytes at the sample's RIP, up to the end of its page (KVM_TRANSLATE walks
 * the guest's page tables; mem_read checks the address against guest RAM). */
static void sample_insn(struct vcpu *v, struct vcpu_sample *s)
{
    struct kvm_translation tr = {.linear_address = s->rip};
    if (ioctl(v->fd, KVM_TRANSLATE, &tr) < 0 || !tr.valid)
        return;
    s->rip_mapped = true;
    s->rip_gpa = tr.physical_address;
    uint64_t to_page_end = 4096 - (tr.physical_address & 4095);
    unsigned len = to_page_end < VCPU_SAMPLE_INSN ? (unsigned)to_page_end : VCPU_SAMPLE_INSN;
    if (v->env->mem && mem_read(v->env->mem, tr.physical_address, s->insn, len) == 0)
        s->insn_len = len;
}

/* Answer the stall report's request for a register sample (vcpu_sample_request). */
static void take_sample(struct vcpu *v, uint64_t req)
{
    struct vcpu_sample s = {.cpl = UINT32_MAX, .mp_state = UINT32_MAX};
    struct kvm_regs r;
    struct kvm_sregs sr;
    struct kvm_mp_state mp;
    struct kvm_vcpu_events ev;
    if (ioctl(v->fd, KVM_GET_REGS, &r) == 0) {
        s.rip = r.rip;
        s.rsp = r.rsp;
        s.rflags = r.rflags;
        sample_insn(v, &s);
    }
    if (ioctl(v->fd, KVM_GET_SREGS, &sr) == 0) {
        s.cpl = sr.cs.dpl;
        s.cr0 = sr.cr0;
        s.cr3 = sr.cr3;
        s.cr4 = sr.cr4;
        s.efer = sr.efer;
    }
    if (ioctl(v->fd, KVM_GET_MP_STATE, &mp) == 0)
        s.mp_state = mp.mp_state;
    if (ioctl(v->fd, KVM_GET_VCPU_EVENTS, &ev) == 0) {
        s.have_events = true;
        s.exc_injected = ev.exception.injected;
        s.exc_pending = (ev.flags & KVM_VCPUEVENT_VALID_PAYLOAD) && ev.exception.pending;
        s.exc_nr = ev.exception.nr;
        s.exc_has_error = ev.exception.has_error_code;
        s.exc_error = ev.exception.error_code;
        s.irq_injected = ev.interrupt.injected;
        s.irq_nr = ev.interrupt.nr;
        s.nmi_injected = ev.nmi.injected;
    }
    pthread_mutex_lock(&sample_lock);
    v->sample = s;
    atomic_store(&v->sample_done, req);
    pthread_cond_broadcast(&sample_cond);
    pthread_mutex_unlock(&sample_lock);
}

static void *vcpu_thread(void *arg)
{
    struct vcpu *v = arg;
    const struct vcpu_env *env = v->env;
    /* Before the first KVM_RUN: no guest code runs beside an unfiltered vCPU thread. */
    int rc = env->cfg->seccomp ? seccomp_install(SECCOMP_VCPU, env->cfg) : 0;
    if (rc) {
        vcpu_end_vm(v, VM_EXIT_ERROR, "vcpu%u: cannot install the seccomp filter: %s", v->index,
                    strerror(-rc));
        pause_leave(env->barrier);
        return NULL;
    }
    for (;;) {
        uint64_t req = atomic_load(&v->sample_req);
        if (req != atomic_load_explicit(&v->sample_done, memory_order_relaxed))
            take_sample(v, req);
        atomic_store_explicit(&v->at_barrier, true, memory_order_relaxed);
        enum pause_outcome next = pause_checkpoint(env->barrier, &v->run->immediate_exit);
        atomic_store_explicit(&v->at_barrier, false, memory_order_relaxed);
        if (next == PAUSE_STOP)
            break;
        if (next == PAUSE_RESUMED)
            atomic_fetch_add_explicit(&v->resumes, 1, memory_order_relaxed);
        /* Back from a pause: tell the guest's watchdogs the gap was one (as QEMU does on
         * resume; off the pause path). A guest without kvmclock answers EINVAL: harmless. */
        if (next == PAUSE_RESUMED)
            ioctl(v->fd, KVM_KVMCLOCK_CTRL, 0);
        if (ioctl(v->fd, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue; /* kicked */
            vcpu_end_vm(v, VM_EXIT_ERROR, "vcpu%u: KVM_RUN: %s", v->index, strerror(errno));
            break;
        }
        atomic_store_explicit(&v->last_exit, v->run->exit_reason, memory_order_relaxed);
        atomic_store_explicit(&v->last_addr,
                              v->run->exit_reason == KVM_EXIT_IO     ? v->run->io.port
                              : v->run->exit_reason == KVM_EXIT_MMIO ? v->run->mmio.phys_addr
                                                                     : 0,
                              memory_order_relaxed);
        atomic_store_explicit(&v->in_exit, true, memory_order_relaxed);
        bool go_on = handle_exit(v);
        if (go_on)
            complete_io_before_pause(v);
        atomic_store_explicit(&v->in_exit, false, memory_order_relaxed);
        atomic_fetch_add_explicit(&v->exits, 1, memory_order_relaxed);
        if (!go_on)
            break;
    }
    pause_leave(env->barrier);
    return NULL;
}

void vcpu_dump(const struct vcpu *v)
{
    uint32_t reason = atomic_load_explicit(&v->last_exit, memory_order_relaxed);
    const char *where = atomic_load_explicit(&v->in_exit, memory_order_relaxed) ? "handling it now"
                        : atomic_load_explicit(&v->at_barrier, memory_order_relaxed)
                            ? "at the pause barrier"
                            : "in KVM_RUN";
    log_info("state: vcpu%u: %llu exits, last %s at %#llx, %s; back from %llu pauses", v->index,
             (unsigned long long)atomic_load_explicit(&v->exits, memory_order_relaxed),
             exit_name(reason),
             (unsigned long long)atomic_load_explicit(&v->last_addr, memory_order_relaxed), where,
             (unsigned long long)atomic_load_explicit(&v->resumes, memory_order_relaxed));
    char kvm[512];
    vcpu_stats_format(&v->stats, kvm, sizeof(kvm));
    log_info("state: vcpu%u kvm: %s", v->index, kvm);
    uint64_t req = atomic_load(&v->sample_req);
    if (req == 0 || atomic_load(&v->sample_done) != req) {
        log_info("state: vcpu%u regs: no sample (%s)", v->index,
                 req == 0                                                     ? "none asked"
                 : atomic_load_explicit(&v->at_barrier, memory_order_relaxed) ? "parked"
                                                                              : "did not answer");
        return;
    }
    pthread_mutex_lock(&sample_lock);
    struct vcpu_sample smp = v->sample;
    pthread_mutex_unlock(&sample_lock);
    log_info("state: vcpu%u regs: rip %#llx rsp %#llx rflags %#llx (IF %d) cpl %u mp_state %u",
             v->index, (unsigned long long)smp.rip, (unsigned long long)smp.rsp,
             (unsigned long long)smp.rflags, (int)((smp.rflags >> 9) & 1), smp.cpl, smp.mp_state);
    char more[256];
    vcpu_sample_format(&smp, more, sizeof(more));
    char *line = more, *nl;
    while (line) {
        nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        log_info("state: vcpu%u %s", v->index, line);
        line = nl ? nl + 1 : NULL;
    }
}

void vcpu_sample_request(struct vcpu *v)
{
    if (!v->started)
        return;
    atomic_fetch_add(&v->sample_req, 1);
    pthread_kill(v->thread, VCPU_KICK_SIGNAL);
}

void vcpu_sample_wait(struct vcpu *vcpus, unsigned n, unsigned timeout_ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&sample_lock);
    for (;;) {
        bool waiting = false;
        for (unsigned i = 0; i < n; i++) {
            struct vcpu *v = &vcpus[i];
            /* A parked vCPU answers only when released: not worth waiting for. */
            waiting |= v->started && atomic_load(&v->sample_done) != atomic_load(&v->sample_req) &&
                       !atomic_load_explicit(&v->at_barrier, memory_order_relaxed);
        }
        if (!waiting || pthread_cond_timedwait(&sample_cond, &sample_lock, &deadline) != 0)
            break;
    }
    pthread_mutex_unlock(&sample_lock);
}

#ifdef AMBER_TEST_HOOKS
/* build/test-hooks/amber only: --id vcpu-start-fail-N makes vCPU N's thread fail to start, so
 * that tests/e2e/test_start.py can check that teardown stops the vCPUs already running. */
static bool test_hook_fail_start(const struct vcpu *v)
{
    static const char prefix[] = "vcpu-start-fail-";
    const char *id = v->env->cfg->id;
    return strncmp(id, prefix, sizeof(prefix) - 1) == 0 &&
           strtoul(id + sizeof(prefix) - 1, NULL, 10) == v->index;
}
#endif

int vcpu_start(struct vcpu *v)
{
#ifdef AMBER_TEST_HOOKS
    if (test_hook_fail_start(v))
        return -EAGAIN;
#endif
    int ret = pthread_create(&v->thread, NULL, vcpu_thread, v);
    if (ret)
        return -ret;
    v->started = true;
    char name[16];
    snprintf(name, sizeof(name), "vcpu%u", v->index);
    pthread_setname_np(v->thread, name);
    return 0;
}

void vcpu_kick(struct vcpu *v)
{
    if (!v->run)
        return;
    v->run->immediate_exit = 1;
    if (v->started)
        pthread_kill(v->thread, VCPU_KICK_SIGNAL);
}

void vcpu_destroy(struct vcpu *v)
{
    if (v->started) {
        pthread_join(v->thread, NULL);
        v->started = false;
    }
    vcpu_stats_close(&v->stats);
    if (v->run) {
        munmap(v->run, (size_t)v->env->run_size);
        v->run = NULL;
    }
    if (v->fd >= 0) {
        close(v->fd);
        v->fd = -1;
    }
}
