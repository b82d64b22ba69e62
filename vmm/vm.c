/* The VM's lifecycle: KVM setup with capability checks, guest RAM, vCPUs, pause and teardown. */
#include "vmm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "vmm/clock.h"
#include "vmm/jail.h"
#include "vmm/log.h"
#include "vmm/vcpu.h"

#define KVM_API_EXPECTED 12
#define TSS_ADDR         0xfffbd000ULL
#define IDENTITY_MAP     0xfffbc000ULL

struct kvm_cap_need {
    int cap;
    const char *name;
};

/* Every capability amber relies on; a missing one is named in the error. */
static const struct kvm_cap_need caps_needed[] = {
    {KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
    {KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"},
    {KVM_CAP_PIT2, "KVM_CAP_PIT2"},
    {KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD"},
    {KVM_CAP_IRQFD, "KVM_CAP_IRQFD"},
    {KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR"},
    {KVM_CAP_SET_IDENTITY_MAP_ADDR, "KVM_CAP_SET_IDENTITY_MAP_ADDR"},
    {KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},
    {KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"},
    {KVM_CAP_KVMCLOCK_CTRL, "KVM_CAP_KVMCLOCK_CTRL"},
    {KVM_CAP_MP_STATE, "KVM_CAP_MP_STATE"},
};

static int kvm_open_checked(struct vm *vm, char *err, size_t errlen)
{
    vm->kvm_fd = jail_take_kvm_fd(); /* opened before --uid/--gid dropped privileges */
    if (vm->kvm_fd < 0)
        vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (vm->kvm_fd < 0) {
        int ret = -errno;
        snprintf(err, errlen, "cannot open /dev/kvm: %s%s", strerror(errno),
                 ret == -EACCES ? " (give amber's user read-write access to /dev/kvm, e.g. the "
                                  "kvm group, or start it as root with --uid/--gid)"
                                : "");
        return ret;
    }
    int version = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
    if (version != KVM_API_EXPECTED) {
        snprintf(err, errlen, "/dev/kvm speaks API version %d, amber needs %d", version,
                 KVM_API_EXPECTED);
        return -ENOTSUP;
    }
    for (size_t i = 0; i < sizeof(caps_needed) / sizeof(caps_needed[0]); i++) {
        if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, caps_needed[i].cap) <= 0) {
            snprintf(err, errlen, "KVM lacks a capability amber needs: %s", caps_needed[i].name);
            return -ENOTSUP;
        }
    }
    int max = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
    if (max <= 0)
        max = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
    vm->max_vcpus = max > 0 ? (unsigned)max : 1;
    vm->tsc_deadline = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_DEADLINE_TIMER) > 0;
    vm->run_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (vm->run_size <= 0) {
        snprintf(err, errlen, "KVM_GET_VCPU_MMAP_SIZE failed: %s", strerror(errno));
        return -ENOTSUP;
    }
    vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
    if (vm->vm_fd < 0) {
        int ret = -errno;
        snprintf(err, errlen, "KVM_CREATE_VM: %s", strerror(errno));
        return ret;
    }
    return 0;
}

static int setup_memory(struct vm *vm, int mem_fd, char *err, size_t errlen)
{
    /* Guest RAM is MAP_NORESERVE, so neither mmap nor KVM refuses a guest the host could never
     * back; the guest would find out later, at the OOM killer. Refuse it here instead. */
    struct sysinfo si;
    if (sysinfo(&si) == 0) {
        uint64_t host_mib = (((uint64_t)si.totalram + si.totalswap) * si.mem_unit) >> 20;
        if (vm->cfg->mem_mib > host_mib) {
            snprintf(err, errlen,
                     "guest memory %llu MiB is more than the host's %llu MiB of RAM and swap",
                     (unsigned long long)vm->cfg->mem_mib, (unsigned long long)host_mib);
            return -ENOMEM;
        }
    }
    int ret = mem_init(&vm->mem, vm->cfg->mem_mib << 20);
    if (ret) {
        snprintf(err, errlen, "cannot allocate %llu MiB of guest memory: %s",
                 (unsigned long long)vm->cfg->mem_mib, strerror(-ret));
        return ret;
    }
    if (mem_fd >= 0 && (ret = mem_map_file(&vm->mem, mem_fd)) != 0) {
        snprintf(err, errlen, "cannot map the memory file: %s", strerror(-ret));
        return ret;
    }
    /* Before the loader writes a byte: what amber writes is tracked by amber (mem_ptr), what
     * the guest writes by KVM's dirty log (KVM_MEM_LOG_DIRTY_PAGES below). */
    if (vm->cfg->track_dirty_pages && (ret = mem_track_dirty(&vm->mem)) != 0) {
        snprintf(err, errlen, "cannot allocate the dirty page bitmap: %s", strerror(-ret));
        return ret;
    }
    for (unsigned i = 0; i < vm->mem.nregions; i++) {
        const struct mem_region *r = &vm->mem.region[i];
        struct kvm_userspace_memory_region kr = {
            .slot = i,
            .guest_phys_addr = r->gpa,
            .memory_size = r->size,
            .userspace_addr = (uint64_t)(uintptr_t)r->host,
            .flags = vm->cfg->track_dirty_pages ? KVM_MEM_LOG_DIRTY_PAGES : 0,
        };
        if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &kr) < 0) {
            ret = -errno;
            snprintf(err, errlen, "KVM_SET_USER_MEMORY_REGION (%llu MiB at %#llx): %s",
                     (unsigned long long)(r->size >> 20), (unsigned long long)r->gpa,
                     strerror(errno));
            return ret;
        }
    }
    return 0;
}

static int setup_irqchip(struct vm *vm, char *err, size_t errlen)
{
    if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)TSS_ADDR) < 0) {
        snprintf(err, errlen, "KVM_SET_TSS_ADDR: %s", strerror(errno));
        return -errno;
    }
    uint64_t map_addr = IDENTITY_MAP;
    if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &map_addr) < 0) {
        snprintf(err, errlen, "KVM_SET_IDENTITY_MAP_ADDR: %s", strerror(errno));
        return -errno;
    }
    if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
        snprintf(err, errlen, "KVM_CREATE_IRQCHIP: %s", strerror(errno));
        return -errno;
    }
    struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
    if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
        snprintf(err, errlen, "KVM_CREATE_PIT2: %s", strerror(errno));
        return -errno;
    }
    return 0;
}

/* The vCPUs' way to end the VM (struct vcpu_env). */
static void request_exit(void *opaque, enum vm_exit why, const char *detail)
{
    vm_request_exit(opaque, why, "%s", detail);
}

static int create_vcpus(struct vm *vm, char *err, size_t errlen)
{
    unsigned max_entries = 256;
    struct kvm_cpuid2 *supported =
        calloc(1, sizeof(*supported) + max_entries * sizeof(supported->entries[0]));
    if (!supported)
        return -ENOMEM;
    supported->nent = max_entries;
    if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, supported) < 0) {
        int ret = -errno;
        snprintf(err, errlen, "KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
        free(supported);
        return ret;
    }

    vm->vcpus = calloc(vm->nvcpus, sizeof(*vm->vcpus));
    if (!vm->vcpus) {
        free(supported);
        return -ENOMEM;
    }
    for (unsigned i = 0; i < vm->nvcpus; i++)
        vm->vcpus[i].fd = -1;
    int ret = 0;
    vm->vcpu_env = (struct vcpu_env){.vm_fd = vm->vm_fd,
                                     .run_size = vm->run_size,
                                     .nvcpus = vm->nvcpus,
                                     .tsc_deadline = vm->tsc_deadline,
                                     .cfg = vm->cfg,
                                     .pio = &vm->pio,
                                     .mmio = &vm->mmio,
                                     .barrier = &vm->barrier,
                                     .mem = &vm->mem,
                                     .request_exit = request_exit,
                                     .opaque = vm};
    for (unsigned i = 0; i < vm->nvcpus && !ret; i++)
        ret = vcpu_create(&vm->vcpus[i], &vm->vcpu_env, i, supported, err, errlen);
    free(supported);
    return ret;
}

/* vm_create, or with mem_fd >= 0 the shell of a restored VM: RAM mapped from mem_fd (the
 * snapshot supplies every register and byte, so nobody calls loader_boot on it). */
static int vm_build(struct vm *vm, const struct vm_config *cfg, struct loop *loop, int mem_fd,
                    char *err, size_t errlen)
{
    memset(vm, 0, sizeof(*vm));
    vm->cfg = cfg;
    vm->loop = loop;
    vm->kvm_fd = vm->vm_fd = -1;
    vm->nvcpus = cfg->vcpus;
    atomic_init(&vm->exit_reason, VM_EXIT_NONE);

    int ret = kvm_open_checked(vm, err, errlen);
    if (ret)
        goto err;
    if (vm->nvcpus == 0 || vm->nvcpus > vm->max_vcpus) {
        snprintf(err, errlen, "%u vCPUs requested, KVM allows 1 to %u", vm->nvcpus, vm->max_vcpus);
        ret = -EINVAL;
        goto err;
    }
    ret = pause_init(&vm->barrier, vm->nvcpus);
    if (ret)
        goto err;
    ret = setup_memory(vm, mem_fd, err, errlen);
    if (ret)
        goto err;
    ret = setup_irqchip(vm, err, errlen);
    if (ret)
        goto err;
    ret = create_vcpus(vm, err, errlen);
    if (ret)
        goto err;
    return 0;
err:
    vm_destroy(vm);
    return ret;
}

int vm_create(struct vm *vm, const struct vm_config *cfg, struct loop *loop, char *err,
              size_t errlen)
{
    return vm_build(vm, cfg, loop, -1, err, errlen);
}

int vm_create_restored(struct vm *vm, const struct vm_config *cfg, struct loop *loop, int mem_fd,
                       char *err, size_t errlen)
{
    if (mem_fd < 0)
        return -EINVAL;
    return vm_build(vm, cfg, loop, mem_fd, err, errlen);
}

void vm_set_hooks(struct vm *vm, const struct vm_hooks *hooks, void *opaque)
{
    vm->hooks = hooks;
    vm->hooks_opaque = opaque;
}

int vm_add_mmio_dev(struct vm *vm, uint64_t base, unsigned gsi)
{
    if (vm->nmmio_dev == VIRTIO_MAX_DEVICES)
        return -ENOSPC;
    vm->mmio_dev[vm->nmmio_dev++] = (struct vm_mmio_dev){.base = base, .gsi = gsi};
    return 0;
}

void vm_add_vmgenid(struct vm *vm, uint64_t gpa, unsigned gsi)
{
    vm->vmgenid_gpa = gpa;
    vm->vmgenid_gsi = gsi;
}

/* Run one of the board's hooks, if it registered one. */
#define RUN_HOOK(vm, name)                                                                         \
    do {                                                                                           \
        if ((vm)->hooks && (vm)->hooks->name)                                                      \
            (vm)->hooks->name((vm)->hooks_opaque);                                                 \
    } while (0)

static void kick_one(void *arg, unsigned i)
{
    struct vm *vm = arg;
    vcpu_kick(&vm->vcpus[i]);
}

int vm_start(struct vm *vm, char *err, size_t errlen)
{
    vm->boot_ns = clock_now_ns();
    for (unsigned i = 0; i < vm->nvcpus; i++) {
        int ret = vcpu_start(&vm->vcpus[i]);
        if (ret) {
            snprintf(err, errlen, "cannot start vcpu%u thread: %s", i, strerror(-ret));
            return ret;
        }
    }
    vm->running = true;
    return 0;
}

#ifdef AMBER_TEST_HOOKS
/*
 * build/test-hooks/amber only, an experiment for issue 13 (docs/pause.md): with
 * AMBER_TEST_FREEZE_CLOCK=1 in its environment, kvmclock stands still across a pause as it does
 * under QEMU's stop/cont (KVM_GET_CLOCK once every vCPU is parked, KVM_SET_CLOCK at resume,
 * before any is released). amber itself lets the guest's clock run on.
 */
static bool test_hook_freeze_clock(void)
{
    const char *v = getenv("AMBER_TEST_FREEZE_CLOCK");
    return v && !strcmp(v, "1");
}

static void test_hook_clock_stop(struct vm *vm)
{
    struct kvm_clock_data clk = {0};
    vm->frozen_clock_ns = 0;
    if (test_hook_freeze_clock() && ioctl(vm->vm_fd, KVM_GET_CLOCK, &clk) == 0)
        vm->frozen_clock_ns = clk.clock;
}

static void test_hook_clock_cont(struct vm *vm)
{
    struct kvm_clock_data clk = {.clock = vm->frozen_clock_ns};
    if (vm->frozen_clock_ns && ioctl(vm->vm_fd, KVM_SET_CLOCK, &clk) < 0)
        log_warn("test hook: KVM_SET_CLOCK: %s", strerror(errno));
    vm->frozen_clock_ns = 0;
}
#endif

int vm_pause(struct vm *vm, unsigned timeout_ms)
{
    if (vm->paused)
        return -EALREADY;
    uint64_t deadline_ms = clock_now_ms() + timeout_ms;
    int ret = pause_request(&vm->barrier, vm->nvcpus, kick_one, vm, timeout_ms);
    if (ret)
        return ret;
    /* Every vCPU is parked: no MMIO can race with the devices while they quiesce. */
    uint64_t now = clock_now_ms();
    if (vm->hooks && vm->hooks->quiesce &&
        vm->hooks->quiesce(vm->hooks_opaque,
                           now < deadline_ms ? (unsigned)(deadline_ms - now) : 0)) {
        pause_release(&vm->barrier); /* the devices run again already */
        return -EBUSY;
    }
    vm->paused = true;
#ifdef AMBER_TEST_HOOKS
    test_hook_clock_stop(vm);
#endif
    return 0;
}

/* The deferred half of vm_resume, unless a pause came in between (the vCPUs stay parked). */
static void release_vcpus(void *arg)
{
    struct vm *vm = arg;
    if (!vm->paused)
        pause_release(&vm->barrier);
}

int vm_resume(struct vm *vm)
{
    if (!vm->paused)
        return -EALREADY;
    RUN_HOOK(vm, resume);
#ifdef AMBER_TEST_HOOKS
    test_hook_clock_cont(vm); /* the vCPUs are still parked: release_vcpus comes later */
#endif
    vm->paused = false;
    /* Woken vCPU threads preempt the loop thread, and the API answer would wait behind them
     * for a scheduler slice: wake them on the loop's next turn, after the answer is sent. */
    if (loop_post(vm->loop, release_vcpus, vm) < 0)
        pause_release(&vm->barrier);
    return 0;
}

void vm_request_exit(struct vm *vm, enum vm_exit why, const char *fmt, ...)
{
    int expected = VM_EXIT_NONE;
    if (!atomic_compare_exchange_strong(&vm->exit_reason, &expected, (int)why))
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(vm->exit_detail, sizeof(vm->exit_detail), fmt, ap);
    va_end(ap);
    loop_quit(vm->loop, why == VM_EXIT_ERROR ? 1 : 0);
}

void vm_irq_line(void *opaque, unsigned gsi, int level)
{
    struct vm *vm = opaque;
    struct kvm_irq_level irq = {.irq = gsi, .level = (uint32_t)level};
    if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &irq) < 0)
        log_warn("KVM_IRQ_LINE gsi %u: %s", gsi, strerror(errno));
}

void vm_destroy(struct vm *vm)
{
    if (vm->vcpus) {
        /* Whether or not vm_start finished: a vCPU it started before failing runs guest code
         * and must be kicked out of KVM_RUN and told to stop, or the join below never returns.
         * The barrier exists whenever vm->vcpus does; unstarted vCPUs are not kicked. */
        pause_stop(&vm->barrier, vm->nvcpus, kick_one, vm);
        for (unsigned i = 0; i < vm->nvcpus; i++)
            vcpu_destroy(&vm->vcpus[i]);
        free(vm->vcpus);
        vm->vcpus = NULL;
        pause_destroy(&vm->barrier);
    }
    vm->running = false;
    RUN_HOOK(vm, destroy);
    vm->hooks = NULL;
    vm->nmmio_dev = 0;
    mem_free(&vm->mem);
    if (vm->vm_fd >= 0)
        close(vm->vm_fd);
    if (vm->kvm_fd >= 0)
        close(vm->kvm_fd);
    vm->vm_fd = vm->kvm_fd = -1;
}
