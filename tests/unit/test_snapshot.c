/* Unit tests for snapshots: the codec round trip, hostile files, device state, memory file. */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "devices/i8042.h"
#include "devices/serial.h"
#include "devices/virtio/rng.h"
#include "devices/virtio/virtio_snap.h"
#include "tests/unit/virtio_test_ring.h"
#include "tests/unit/virtio_test_snap.h"
#include "board/snapshot.h"
#include "ctl/snapshot_merge.h"
#include "vmm/x86/cpu_state.h"
#include "vmm/x86/vm_state.h"

#define RAM_BYTES (4ULL << 20)
#define CONFIG_2VCPU                                                                               \
    "{\"boot-source\":{\"kernel_image_path\":\"/k\"},"                                             \
    "\"machine-config\":{\"vcpu_count\":2,\"mem_size_mib\":128}}"

/* --- a whole file with every section kind, from plausible KVM structures --- */

static const struct kvm_sregs good_sregs = {.cr0 = 0x80050033, .cr4 = 0x20, .efer = 0xd01};

static void add_vcpu_sregs(struct snap_writer *w, unsigned index, const struct kvm_sregs *sr)
{
    struct kvm_regs regs = {.rip = 0x1000000 + index, .rflags = 2};
    struct kvm_sregs sregs = *sr;
    struct kvm_fpu fpu = {.fcw = 0x37f};
    static uint8_t xsave[4096];
    struct kvm_xcrs xcrs = {.nr_xcrs = 1};
    struct kvm_lapic_state lapic = {.regs = {1, 2, 3}};
    struct kvm_vcpu_events ev = {.flags = 0};
    struct kvm_debugregs dr = {.dr7 = 0x400};
    struct kvm_mp_state mp = {.mp_state = KVM_MP_STATE_RUNNABLE};
    struct kvm_msr_entry msrs[3] = {
        {.index = 0x10, .data = 12345}, {.index = 0x6e0}, {.index = 0x4b564d01, .data = 0x9001}};
    struct kvm_cpuid_entry2 cpuid[2] = {{.function = 0, .eax = 0xd},
                                        {.function = 1, .ecx = 1u << 31}};
    xsave[0] = (uint8_t)index;
    snapw_begin(w, SNAP_SEC_VCPU, index);
    snapw_record(w, CPU_REGS, &regs, sizeof(regs));
    snapw_record(w, CPU_SREGS, &sregs, sizeof(sregs));
    snapw_record(w, CPU_FPU, &fpu, sizeof(fpu));
    snapw_record(w, CPU_XSAVE, xsave, sizeof(xsave));
    snapw_record(w, CPU_XCRS, &xcrs, sizeof(xcrs));
    snapw_record(w, CPU_LAPIC, &lapic, sizeof(lapic));
    snapw_record(w, CPU_EVENTS, &ev, sizeof(ev));
    snapw_record(w, CPU_DEBUGREGS, &dr, sizeof(dr));
    snapw_record(w, CPU_MP_STATE, &mp, sizeof(mp));
    snapw_record(w, CPU_MSRS, msrs, sizeof(msrs));
    snapw_record(w, CPU_CPUID, cpuid, sizeof(cpuid));
    snapw_end(w);
}

static void add_vcpu(struct snap_writer *w, unsigned index)
{
    add_vcpu_sregs(w, index, &good_sregs);
}

static void add_vm(struct snap_writer *w)
{
    snapw_begin(w, SNAP_SEC_VM, 0);
    for (uint32_t chip = 0; chip < 3; chip++) {
        struct kvm_irqchip ic = {.chip_id = chip};
        snapw_record(w, VMS_PIC_MASTER + chip, &ic, sizeof(ic));
    }
    struct kvm_pit_state2 pit = {.flags = 1};
    struct kvm_clock_data clk = {.clock = 5000000000ull};
    snapw_record(w, VMS_PIT2, &pit, sizeof(pit));
    snapw_record(w, VMS_CLOCK, &clk, sizeof(clk));
    snapw_u64(w, VMS_REALTIME_NS, 1700000000000000000ull);
    snapw_end(w);
}

/* A file as snapshot_create writes it, with nvcpus_meta in META and nvcpus_held vCPU sections.
 * The virtio slot holds transport t. */
static uint8_t *build_file(size_t *len, unsigned nvcpus_meta, unsigned nvcpus_held,
                           const struct virtio_snap_transport *t)
{
    struct snap_writer w;
    snapw_init(&w);
    snapw_begin(&w, SNAP_SEC_META, 0);
    snapw_record(&w, META_CONFIG_JSON, CONFIG_2VCPU, sizeof(CONFIG_2VCPU) - 1);
    snapw_u64(&w, META_MEM_BYTES, 128ull << 20);
    snapw_u32(&w, META_NVCPUS, nvcpus_meta);
    snapw_u32(&w, META_NVIRTIO, 1);
    snapw_end(&w);
    add_vm(&w);
    for (unsigned i = 0; i < nvcpus_held; i++)
        add_vcpu(&w, i);
    struct serial_state ss = {.ier = 1, .rx_count = 2, .rx = {'h', 'i'}};
    struct i8042_state ks = {.ctr = 0x47, .qcount = 1, .queue = {0xfa}};
    snapw_begin(&w, SNAP_SEC_LEGACY, 0);
    snapw_record(&w, LEGACY_SERIAL, &ss, sizeof(ss));
    snapw_record(&w, LEGACY_I8042, &ks, sizeof(ks));
    snapw_record(&w, LEGACY_PM, NULL, 0);
    snapw_end(&w);
    snapw_begin(&w, SNAP_SEC_VIRTIO, 0);
    snapw_record(&w, VSNAP_TRANSPORT, t, sizeof(*t));
    snapw_record(&w, VSNAP_CONFIG, NULL, 0);
    snapw_end(&w);
    uint8_t *out = NULL;
    assert_int_equal(snapw_finish(&w, "1.2.3", &out, len), 0);
    snapw_free(&w);
    return out;
}

static const struct virtio_snap_transport plain_transport = {.device_id = VIRTIO_ID_RNG,
                                                             .num_queues = 1};

static void test_roundtrip_every_section(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = build_file(&len, 2, 2, &plain_transport);
    struct snap_reader r;
    char err[256] = "";
    assert_int_equal(snapr_open(&r, buf, len, err, sizeof(err)), 0);
    assert_string_equal(r.amber_version, "1.2.3");
    assert_int_equal(r.n, 6);
    assert_int_equal(snapr_count(&r, SNAP_SEC_VCPU), 2);

    /* META */
    const struct snap_entry *meta = snapr_find(&r, SNAP_SEC_META, 0);
    uint64_t mem;
    uint32_t n;
    assert_int_equal(snapr_u64(&r, meta, META_MEM_BYTES, &mem), 0);
    assert_int_equal(mem, 128ull << 20);
    assert_int_equal(snapr_u32(&r, meta, META_NVCPUS, &n), 0);
    assert_int_equal(n, 2);
    /* every vCPU record, with its own contents */
    for (unsigned i = 0; i < 2; i++) {
        const struct snap_entry *s = snapr_find(&r, SNAP_SEC_VCPU, i);
        assert_non_null(s);
        assert_int_equal(cpu_state_check(&r, s, err, sizeof(err)), 0);
        struct kvm_regs regs;
        assert_int_equal(snapr_get(&r, s, CPU_REGS, &regs, sizeof(regs)), 0);
        assert_int_equal(regs.rip, 0x1000000 + i);
        const void *d;
        uint32_t l;
        assert_int_equal(snapr_record(&r, s, CPU_XSAVE, &d, &l), 0);
        assert_int_equal(l, 4096);
        assert_int_equal(((const uint8_t *)d)[0], i);
        struct kvm_msr_entry msrs[3];
        assert_int_equal(snapr_get(&r, s, CPU_MSRS, msrs, sizeof(msrs)), 0);
        assert_int_equal(msrs[2].index, 0x4b564d01);
        assert_int_equal(msrs[2].data, 0x9001);
    }
    /* VM */
    const struct snap_entry *vms = snapr_find(&r, SNAP_SEC_VM, 0);
    assert_int_equal(vm_state_check(&r, vms, err, sizeof(err)), 0);
    struct kvm_clock_data clk;
    assert_int_equal(snapr_get(&r, vms, VMS_CLOCK, &clk, sizeof(clk)), 0);
    assert_int_equal(clk.clock, 5000000000ull);
    /* legacy and virtio */
    const struct snap_entry *leg = snapr_find(&r, SNAP_SEC_LEGACY, 0);
    struct serial_state ss;
    assert_int_equal(snapr_get(&r, leg, LEGACY_SERIAL, &ss, sizeof(ss)), 0);
    assert_int_equal(ss.rx_count, 2);
    assert_memory_equal(ss.rx, "hi", 2);
    const void *d;
    uint32_t l;
    assert_int_equal(snapr_record(&r, leg, LEGACY_PM, &d, &l), 0);
    assert_int_equal(l, 0);
    struct virtio_snap_transport t;
    assert_int_equal(
        snapr_get(&r, snapr_find(&r, SNAP_SEC_VIRTIO, 0), VSNAP_TRANSPORT, &t, sizeof(t)), 0);
    assert_int_equal(t.device_id, VIRTIO_ID_RNG);
    /* a record asked for with the wrong size is refused */
    assert_int_equal(snapr_get(&r, vms, VMS_CLOCK, &clk, sizeof(clk) - 1), -EBADMSG);
    free(buf);
}

static void test_truncated(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = build_file(&len, 2, 2, &plain_transport);
    struct snap_reader r;
    char err[256];
    const size_t cuts[] = {0, 10, SNAP_HEADER_BYTES - 1, SNAP_HEADER_BYTES + 5, len / 2, len - 1};
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        err[0] = '\0';
        assert_int_equal(snapr_open(&r, buf, cuts[i], err, sizeof(err)), -EBADMSG);
        assert_non_null(strstr(err, "truncated"));
    }
    free(buf);
}

static void test_bad_checksum(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = build_file(&len, 2, 2, &plain_transport);
    struct snap_reader r;
    char err[256];
    buf[len - 20] ^= 0x40; /* inside the last section */
    assert_int_equal(snapr_open(&r, buf, len, err, sizeof(err)), -EBADMSG);
    assert_non_null(strstr(err, "checksum mismatch"));
    buf[len - 20] ^= 0x40;
    buf[SNAP_HEADER_BYTES + 16] ^= 1; /* a section's length in the table */
    assert_int_equal(snapr_open(&r, buf, len, err, sizeof(err)), -EBADMSG);
    assert_non_null(strstr(err, "header checksum"));
    free(buf);
}

static void test_wrong_version(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = build_file(&len, 2, 2, &plain_transport);
    struct snap_reader r;
    char err[256];
    buf[8] = SNAP_FORMAT_VERSION + 1;
    assert_int_equal(snapr_open(&r, buf, len, err, sizeof(err)), -EPROTONOSUPPORT);
    assert_non_null(strstr(err, "format version 2"));
    buf[8] = SNAP_FORMAT_VERSION;
    buf[0] = 'X';
    assert_int_equal(snapr_open(&r, buf, len, err, sizeof(err)), -EBADMSG);
    assert_non_null(strstr(err, "bad magic"));
    free(buf);
}

static void test_more_vcpus_than_the_file_holds(void **state)
{
    (void)state;
    size_t len;
    uint8_t *buf = build_file(&len, 2, 1, &plain_transport);
    struct snap_reader r;
    char err[256];
    assert_int_equal(snapr_open(&r, buf, len, err, sizeof(err)), 0);
    static struct vm_config cfg;
    config_defaults(&cfg);
    uint64_t mem = 0;
    assert_int_equal(snapshot_load_config(&r, &cfg, &mem, err, sizeof(err)), -EBADMSG);
    assert_non_null(strstr(err, "no state for vcpu1"));
    free(buf);

    buf = build_file(&len, 2, 2, &plain_transport);
    assert_int_equal(snapr_open(&r, buf, len, err, sizeof(err)), 0);
    config_defaults(&cfg);
    assert_int_equal(snapshot_load_config(&r, &cfg, &mem, err, sizeof(err)), 0);
    assert_int_equal(cfg.vcpus, 2);
    assert_int_equal(mem, 128ull << 20);
    free(buf);
}

static void test_short_mem_file(void **state)
{
    (void)state;
    char path[] = "/tmp/amber-test-snapmem-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    char err[256] = "";
    assert_int_equal(ftruncate(fd, (128 << 20) - 4096), 0);
    assert_int_equal(snapshot_check_mem_file(fd, 128ull << 20, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "memory file holds"));
    assert_int_equal(ftruncate(fd, 128 << 20), 0);
    assert_int_equal(snapshot_check_mem_file(fd, 128ull << 20, err, sizeof(err)), 0);
    close(fd);
}

static void test_cpu_state_refuses_nonsense(void **state)
{
    (void)state;
    struct snap_writer w;
    snapw_init(&w);
    add_vcpu(&w, 0);
    /* vCPU 1: long mode active with paging off; vCPU 2: no registers at all */
    struct kvm_sregs bad_sregs = {.cr0 = 1, .efer = 0x500};
    add_vcpu_sregs(&w, 1, &bad_sregs);
    snapw_begin(&w, SNAP_SEC_VCPU, 2);
    snapw_record(&w, CPU_SREGS, &bad_sregs, sizeof(bad_sregs));
    snapw_end(&w);
    uint8_t *buf;
    size_t len;
    assert_int_equal(snapw_finish(&w, "x", &buf, &len), 0);
    snapw_free(&w);
    struct snap_reader r;
    char err[256];
    assert_int_equal(snapr_open(&r, buf, len, err, sizeof(err)), 0);
    assert_int_equal(cpu_state_check(&r, snapr_find(&r, SNAP_SEC_VCPU, 0), err, sizeof(err)), 0);
    assert_int_equal(cpu_state_check(&r, snapr_find(&r, SNAP_SEC_VCPU, 1), err, sizeof(err)),
                     -EBADMSG);
    assert_non_null(strstr(err, "vcpu1: long mode active without paging"));
    assert_int_equal(cpu_state_check(&r, snapr_find(&r, SNAP_SEC_VCPU, 2), err, sizeof(err)),
                     -EBADMSG);
    assert_non_null(strstr(err, "vcpu2: regs record missing"));
    free(buf);
}

static void test_clock_value(void **state)
{
    (void)state;
    assert_int_equal(vm_state_clock_value(1000, 50, 80, KVMCLOCK_KEEP), 1000);
    assert_int_equal(vm_state_clock_value(1000, 50, 80, KVMCLOCK_MOVE_SW), 1030);
    /* the host clock went back: never move the guest's backwards */
    assert_int_equal(vm_state_clock_value(1000, 80, 50, KVMCLOCK_MOVE_SW), 1000);
}

/* --- device state --- */

static void irq_ignore(void *opaque, unsigned gsi, int level)
{
    (void)opaque;
    (void)gsi;
    (void)level;
}

static void test_serial_state(void **state)
{
    (void)state;
    struct serial *a = serial_create(-1, 0, irq_ignore, NULL, 4);
    struct serial *b = serial_create(-1, 0, irq_ignore, NULL, 4);
    uint8_t v = 0x01; /* FCR: FIFO on */
    serial_io(a, 2, &v, 1, true);
    v = 0x05;
    serial_io(a, 1, &v, 1, true); /* IER */
    v = 0x5a;
    serial_io(a, 7, &v, 1, true); /* scratch */
    assert_int_equal(serial_input(a, (const uint8_t *)"abc", 3), 3);
    struct serial_state sa, sb;
    serial_save(a, &sa);
    assert_int_equal(serial_load(b, &sa), 0);
    serial_save(b, &sb);
    assert_memory_equal(&sa, &sb, sizeof(sa));
    uint8_t c = 0;
    serial_io(b, 0, &c, 1, false); /* RBR: the FIFO came across in order */
    assert_int_equal(c, 'a');
    serial_io(b, 7, &c, 1, false);
    assert_int_equal(c, 0x5a);
    /* a FIFO count beyond the depth in use is refused, and b is unchanged */
    sa.fifo_enabled = 0;
    assert_int_equal(serial_load(b, &sa), -EINVAL);
    serial_save(b, &sb);
    assert_int_equal(sb.rx_count, 2);
    serial_destroy(a);
    serial_destroy(b);
}

static void test_i8042_state(void **state)
{
    (void)state;
    struct i8042 *a = i8042_create(irq_ignore, NULL, 1, NULL, NULL);
    struct i8042 *b = i8042_create(irq_ignore, NULL, 1, NULL, NULL);
    assert_int_equal(i8042_send_ctrl_alt_del(a), 0);
    struct i8042_state sa, sb;
    i8042_save(a, &sa);
    assert_int_equal(sa.qcount, 8);
    assert_int_equal(i8042_load(b, &sa), 0);
    i8042_save(b, &sb);
    assert_memory_equal(&sa, &sb, sizeof(sa));
    uint8_t c = 0;
    i8042_io(b, 0, &c, 1, false);
    assert_int_equal(c, 0x1d); /* Ctrl make code first */
    sa.qcount = I8042_STATE_QUEUE_BYTES + 1;
    assert_int_equal(i8042_load(b, &sa), -EINVAL);
    i8042_destroy(a);
    i8042_destroy(b);
}

struct vfix {
    struct guest_mem mem;
    struct loop loop;
    struct virtio_dev d;
    struct test_ring r;
};

static void w32(struct virtio_dev *d, uint64_t off, uint32_t v)
{
    virtio_mmio_io(d, off, (uint8_t *)&v, 4, true);
}

static void bring_up(struct vfix *f)
{
    tr_init(&f->r, &f->mem, 16);
    w32(&f->d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
    w32(&f->d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    w32(&f->d, VIRTIO_MMIO_DRIVER_FEATURES, 1);
    w32(&f->d, VIRTIO_MMIO_STATUS,
        VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
    w32(&f->d, VIRTIO_MMIO_QUEUE_SEL, 0);
    w32(&f->d, VIRTIO_MMIO_QUEUE_NUM, 16);
    w32(&f->d, VIRTIO_MMIO_QUEUE_DESC_LOW, TR_DESC);
    w32(&f->d, VIRTIO_MMIO_QUEUE_DRIVER_LOW, TR_AVAIL);
    w32(&f->d, VIRTIO_MMIO_QUEUE_DEVICE_LOW, TR_USED);
    w32(&f->d, VIRTIO_MMIO_QUEUE_READY, 1);
    w32(&f->d, VIRTIO_MMIO_STATUS,
        VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
            VIRTIO_STATUS_DRIVER_OK);
}

static void vfix_init(struct vfix *f)
{
    memset(f, 0, sizeof(*f));
    assert_int_equal(mem_init(&f->mem, RAM_BYTES), 0);
    assert_int_equal(loop_init(&f->loop), 0);
    assert_int_equal(rng_create(&f->d, &f->mem, &f->loop, 0xd0000000, 5), 0);
}

static void vfix_fini(struct vfix *f)
{
    virtio_dev_destroy(&f->d);
    loop_destroy(&f->loop);
    mem_free(&f->mem);
}

/* Save device a, optionally edit its transport, and return a reader over the file. */
static uint8_t *save_device(struct virtio_dev *d, struct snap_reader *r,
                            void (*edit)(struct virtio_snap_transport *))
{
    uint8_t *buf = virtio_test_snap(d, r);
    if (!edit)
        return buf;
    struct snap_writer w;
    struct virtio_snap_transport t;
    assert_int_equal(
        snapr_get(r, snapr_find(r, SNAP_SEC_VIRTIO, 0), VSNAP_TRANSPORT, &t, sizeof(t)), 0);
    free(buf);
    edit(&t);
    snapw_init(&w);
    snapw_begin(&w, SNAP_SEC_VIRTIO, 0);
    snapw_record(&w, VSNAP_TRANSPORT, &t, sizeof(t));
    snapw_end(&w);
    return virtio_test_snap_open(&w, r);
}

static void test_virtio_transport_state(void **state)
{
    (void)state;
    static struct vfix a, b;
    vfix_init(&a);
    vfix_init(&b);
    bring_up(&a);
    a.d.vq[0].last_avail = 7;
    a.d.vq[0].used_idx = 7;
    a.d.isr = 1;
    struct snap_reader r;
    uint8_t *buf = save_device(&a.d, &r, NULL);
    const struct snap_entry *s = snapr_find(&r, SNAP_SEC_VIRTIO, 0);
    char err[256] = "";
    assert_int_equal(virtio_snap_check(&r, s, &b.d, err, sizeof(err)), 0);
    assert_int_equal(virtio_snap_load(&b.d, &r, s, err, sizeof(err)), 0);
    assert_int_equal(b.d.status, a.d.status);
    assert_int_equal(b.d.driver_features, a.d.driver_features);
    assert_int_equal(b.d.isr, 1);
    assert_true(b.d.vq[0].ready);
    assert_int_equal(b.d.vq[0].size, 16);
    assert_int_equal(b.d.vq[0].desc_gpa, TR_DESC);
    assert_int_equal(b.d.vq[0].avail_gpa, TR_AVAIL);
    assert_int_equal(b.d.vq[0].used_gpa, TR_USED);
    assert_int_equal(b.d.vq[0].last_avail, 7);
    assert_int_equal(b.d.vq[0].used_idx, 7);
    assert_int_equal(b.d.vq[0].used_published, 7);
    free(buf);
    vfix_fini(&a);
    vfix_fini(&b);
}

static void ring_outside_ram(struct virtio_snap_transport *t)
{
    t->q[0].used_gpa = RAM_BYTES - 8; /* the used ring runs off the end of RAM */
}

static void indices_apart(struct virtio_snap_transport *t)
{
    t->q[0].last_avail = 100;
    t->q[0].used_idx = 3;
}

static void other_device(struct virtio_snap_transport *t)
{
    t->device_id = VIRTIO_ID_BLOCK;
}

static void test_virtio_queue_outside_ram(void **state)
{
    (void)state;
    static struct vfix a, b;
    vfix_init(&a);
    vfix_init(&b);
    bring_up(&a);
    struct {
        void (*edit)(struct virtio_snap_transport *);
        const char *want;
    } cases[] = {{ring_outside_ram, "queue 0: size or ring address outside guest RAM"},
                 {indices_apart, "more than a ring apart"},
                 {other_device, "a different device type"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct snap_reader r;
        uint8_t *buf = save_device(&a.d, &r, cases[i].edit);
        char err[256] = "";
        assert_int_equal(
            virtio_snap_check(&r, snapr_find(&r, SNAP_SEC_VIRTIO, 0), &b.d, err, sizeof(err)),
            -EBADMSG);
        assert_non_null(strstr(err, cases[i].want));
        free(buf);
    }
    vfix_fini(&a);
    vfix_fini(&b);
}

/* --- the memory file --- */

static void test_mem_file_sparse(void **state)
{
    (void)state;
    struct guest_mem m;
    assert_int_equal(mem_init(&m, RAM_BYTES), 0);
    memset(m.map + 8192, 0xab, 4096);      /* one data page */
    memset(m.map + (1 << 20), 0x00, 4096); /* touched, but zero: a hole */
    m.map[RAM_BYTES - 1] = 7;              /* the last page */
    char path[] = "/tmp/amber-test-snapmem-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    uint64_t written = 0;
    assert_int_equal(snapshot_write_mem(&m, fd, &written), 0);
    assert_int_equal(written, 2 * 4096);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(st.st_size, RAM_BYTES);
    assert_true((uint64_t)st.st_blocks * 512 <= 64 * 1024); /* holes elsewhere */

    /* Mapped back copy-on-write, the guest sees the same bytes and the file stays as it is. */
    struct guest_mem m2;
    assert_int_equal(mem_init(&m2, RAM_BYTES), 0);
    assert_int_equal(mem_map_file(&m2, fd), 0);
    assert_memory_equal(m2.map, m.map, RAM_BYTES);
    m2.map[8192] = 0;
    uint8_t byte;
    assert_int_equal(pread(fd, &byte, 1, 8192), 1);
    assert_int_equal(byte, 0xab);
    mem_free(&m2);
    mem_free(&m);
    close(fd);
    unlink(path);
}

/* --- Diff snapshots: amber's own dirty marks, the Diff memory file, the merge --- */

static void set_page(uint64_t *bits, uint64_t pg)
{
    bits[pg / 64] |= 1ULL << (pg % 64);
}

static void test_mem_dirty_marks_vmm_access(void **state)
{
    (void)state;
    struct guest_mem m;
    assert_int_equal(mem_init(&m, RAM_BYTES), 0);
    assert_int_equal(mem_write(&m, 0x3000, "x", 1), 0); /* before tracking: not marked */
    assert_int_equal(mem_track_dirty(&m), 0);
    uint8_t buf[8] = {1};
    assert_int_equal(mem_write(&m, 0x5000, buf, 1), 0);           /* page 5 */
    assert_int_equal(mem_write(&m, 0x7ffc, buf, sizeof(buf)), 0); /* pages 7 and 8 */
    assert_non_null(mem_ptr(&m, 0x20000, 4096));                  /* page 0x20 only */
    assert_null(mem_ptr(&m, RAM_BYTES, 1));                       /* outside RAM: nothing */
    uint64_t got[RAM_BYTES / 4096 / 64] = {0}, want[RAM_BYTES / 4096 / 64] = {0};
    assert_int_equal(m.dirty_words, RAM_BYTES / 4096 / 64);
    mem_dirty_take(&m, got);
    set_page(want, 5);
    set_page(want, 7);
    set_page(want, 8);
    set_page(want, 0x20);
    assert_memory_equal(got, want, sizeof(want));
    /* Taken means cleared; put back means marked again. */
    memset(got, 0, sizeof(got));
    mem_dirty_take(&m, got);
    for (size_t i = 0; i < sizeof(got) / 8; i++)
        assert_int_equal(got[i], 0);
    mem_dirty_put_back(&m, want);
    mem_dirty_take(&m, got);
    assert_memory_equal(got, want, sizeof(want));
    mem_free(&m);
}

static int temp_file(char *path)
{
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    return fd;
}

static void test_mem_file_threads_agree(void **state)
{
    (void)state;
    struct guest_mem m;
    assert_int_equal(mem_init(&m, RAM_BYTES), 0);
    for (uint64_t off = 4096; off < RAM_BYTES; off += 3 * 4096 + 4096 * (off % 7))
        m.map[off + 5] = (uint8_t)(off >> 12); /* pages in every 2 MiB chunk */
    char p1[] = "/tmp/amber-test-thr1-XXXXXX", p3[] = "/tmp/amber-test-thr3-XXXXXX";
    int f1 = temp_file(p1), f3 = temp_file(p3);
    uint64_t w1 = 0, w3 = 0;
    assert_int_equal(snapshot_write_mem_threads(&m, f1, 1, &w1), 0);
    assert_int_equal(snapshot_write_mem_threads(&m, f3, 3, &w3), 0); /* more threads than chunks */
    assert_int_equal(w1, w3);
    assert_true(w1 > 0);
    struct guest_mem back;
    assert_int_equal(mem_init(&back, RAM_BYTES), 0);
    assert_int_equal(mem_map_file(&back, f3), 0);
    assert_memory_equal(back.map, m.map, RAM_BYTES);
    mem_free(&back);
    mem_free(&m);
    close(f1);
    close(f3);
    unlink(p1);
    unlink(p3);
}

static void test_diff_written_and_merged(void **state)
{
    (void)state;
    struct guest_mem m;
    assert_int_equal(mem_init(&m, RAM_BYTES), 0);
    memset(m.map + 0x1000, 0x11, 4096);
    memset(m.map + 0x2000, 0x22, 4096);
    memset(m.map + 0x9000, 0x99, 4096);
    char bpath[] = "/tmp/amber-test-base-XXXXXX", dpath[] = "/tmp/amber-test-diff-XXXXXX";
    int base = temp_file(bpath), diff = temp_file(dpath);
    uint64_t written = 0;
    assert_int_equal(snapshot_write_mem(&m, base, &written), 0);
    assert_int_equal(written, 3 * 4096);

    /* After the base: page 1 changes, page 2 is zeroed, page 0x40 is new, page 9 stays. */
    memset(m.map + 0x1000, 0x12, 4096);
    memset(m.map + 0x2000, 0, 4096);
    memset(m.map + 0x40000, 0x40, 4096);
    uint64_t bits[RAM_BYTES / 4096 / 64] = {0};
    set_page(bits, 1);
    set_page(bits, 2);
    set_page(bits, 0x40);
    written = 0;
    assert_int_equal(snapshot_write_mem_pages(&m, diff, bits, &written), 0);
    assert_int_equal(written, 3 * 4096); /* the zeroed page is data: in a Diff a hole is "same" */
    char why[256];
    assert_int_equal(snapshot_check_holes(diff, bits, RAM_BYTES / 4096, why, sizeof(why)), 0);

    uint64_t copied = 0;
    assert_int_equal(snapshot_merge(base, diff, &copied, why, sizeof(why)), 0);
    assert_int_equal(copied, 3 * 4096);
    struct guest_mem back;
    assert_int_equal(mem_init(&back, RAM_BYTES), 0);
    assert_int_equal(mem_map_file(&back, base), 0);
    assert_memory_equal(back.map, m.map, RAM_BYTES); /* base + diff = RAM at the Diff */
    mem_free(&back);
    mem_free(&m);
    close(base);
    close(diff);
    unlink(bpath);
    unlink(dpath);
}

static void test_diff_holes_checked(void **state)
{
    (void)state;
    struct guest_mem m;
    assert_int_equal(mem_init(&m, RAM_BYTES), 0);
    char path[] = "/tmp/amber-test-diff-XXXXXX";
    int fd = temp_file(path);
    uint64_t bits[RAM_BYTES / 4096 / 64] = {0}, written = 0;
    set_page(bits, 3);
    assert_int_equal(snapshot_write_mem_pages(&m, fd, bits, &written), 0);
    char why[256];
    /* The file says page 3 only; a bitmap that also claims page 4 does not match it, as a
     * file system that dropped a zero page, or filled a hole, would not. */
    set_page(bits, 4);
    assert_int_equal(snapshot_check_holes(fd, bits, RAM_BYTES / 4096, why, sizeof(why)),
                     -EOPNOTSUPP);
    assert_non_null(strstr(why, "page 4"));
    mem_free(&m);
    close(fd);
    unlink(path);
}

static void test_merge_refuses_files_that_do_not_fit(void **state)
{
    (void)state;
    char bpath[] = "/tmp/amber-test-base-XXXXXX", dpath[] = "/tmp/amber-test-diff-XXXXXX";
    int base = temp_file(bpath), diff = temp_file(dpath);
    assert_int_equal(ftruncate(base, 8192), 0);
    assert_int_equal(pwrite(base, "base", 4, 0), 4);
    assert_int_equal(ftruncate(diff, 4096), 0);
    assert_int_equal(pwrite(diff, "diff", 4, 0), 4);
    uint64_t copied = 1;
    char why[256];
    assert_int_equal(snapshot_merge(base, diff, &copied, why, sizeof(why)), -EINVAL);
    assert_non_null(strstr(why, "8192"));
    assert_int_equal(snapshot_merge(base, base, &copied, why, sizeof(why)), -EINVAL);
    assert_int_equal(ftruncate(diff, 8191), 0); /* same size class but not whole pages */
    assert_int_equal(ftruncate(base, 8191), 0);
    assert_int_equal(snapshot_merge(base, diff, &copied, why, sizeof(why)), -EINVAL);
    char got[4];
    assert_int_equal(pread(base, got, 4, 0), 4);
    assert_memory_equal(got, "base", 4); /* untouched */
    assert_int_equal(copied, 0);
    close(base);
    close(diff);
    unlink(bpath);
    unlink(dpath);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_every_section),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_bad_checksum),
        cmocka_unit_test(test_wrong_version),
        cmocka_unit_test(test_more_vcpus_than_the_file_holds),
        cmocka_unit_test(test_short_mem_file),
        cmocka_unit_test(test_cpu_state_refuses_nonsense),
        cmocka_unit_test(test_clock_value),
        cmocka_unit_test(test_serial_state),
        cmocka_unit_test(test_i8042_state),
        cmocka_unit_test(test_virtio_transport_state),
        cmocka_unit_test(test_virtio_queue_outside_ram),
        cmocka_unit_test(test_mem_file_sparse),
        cmocka_unit_test(test_mem_dirty_marks_vmm_access),
        cmocka_unit_test(test_mem_file_threads_agree),
        cmocka_unit_test(test_diff_written_and_merged),
        cmocka_unit_test(test_diff_holes_checked),
        cmocka_unit_test(test_merge_refuses_files_that_do_not_fit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
