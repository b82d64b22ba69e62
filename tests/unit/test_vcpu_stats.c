/* Unit tests for vmm/vcpu_stats.c over fake KVM stats files (memfds): parse, read, reject. */
#include <errno.h>
#include <linux/kvm.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "vmm/vcpu_stats.h"

#define NAME_SIZE 48 /* KVM uses KVM_STATS_NAME_SIZE (48) */

struct fake_desc {
    const char *name;
    uint16_t size;   /* u64 values */
    uint32_t offset; /* bytes into the data block */
};

/* A stats file the way KVM lays it out: header, id string, descriptors, data. */
static int fake_stats(const struct fake_desc *d, unsigned n, const uint64_t *data, unsigned nvals,
                      uint32_t name_size)
{
    int fd = memfd_create("kvm-stats", 0);
    assert_true(fd >= 0);
    size_t desc_len = sizeof(struct kvm_stats_desc) + name_size;
    struct kvm_stats_header h = {.name_size = name_size, .num_desc = n};
    h.id_offset = sizeof(h);
    h.desc_offset = h.id_offset + name_size;
    h.data_offset = h.desc_offset + (uint32_t)(n * desc_len);
    assert_int_equal(pwrite(fd, &h, sizeof(h), 0), sizeof(h));
    if (name_size > 256) /* a header that lies: nothing behind it */
        return fd;
    assert_int_equal(pwrite(fd, "kvm-1234/vcpu0", 15, h.id_offset), 15);
    char buf[sizeof(struct kvm_stats_desc) + 256];
    for (unsigned i = 0; i < n; i++) {
        memset(buf, 0, sizeof(buf));
        struct kvm_stats_desc *k = (struct kvm_stats_desc *)buf;
        k->size = d[i].size;
        k->offset = d[i].offset;
        strncpy(k->name, d[i].name, name_size);
        assert_int_equal(pwrite(fd, buf, desc_len, h.desc_offset + i * desc_len),
                         (ssize_t)desc_len);
    }
    assert_int_equal(pwrite(fd, data, nvals * 8, h.data_offset), (ssize_t)(nvals * 8));
    return fd;
}

static void test_reads_the_listed_counters(void **state)
{
    (void)state;
    /* KVM's order is not ours, other counters sit between, and one we want is missing. */
    const struct fake_desc d[] = {
        {"halt_successful_poll", 1, 0},     {"irq_injections", 1, 8},
        {"halt_poll_success_hist", 32, 16}, /* a histogram: 32 values */
        {"exits", 1, 16 + 32 * 8},          {"insn_emulation", 1, 24 + 32 * 8},
        {"blocking", 1, 32 + 32 * 8},
    };
    uint64_t data[5 + 32];
    memset(data, 0, sizeof(data));
    data[0] = 999;            /* halt_successful_poll: not printed */
    data[1] = 42;             /* irq_injections */
    data[2] = 777;            /* first histogram bucket */
    data[2 + 32] = 123456789; /* exits */
    data[3 + 32] = 13589;     /* insn_emulation */
    data[4 + 32] = 1;         /* blocking */
    struct vcpu_stats s;
    assert_int_equal(vcpu_stats_parse(&s, fake_stats(d, 6, data, 37, NAME_SIZE)), 0);
    char out[512];
    assert_int_equal(vcpu_stats_format(&s, out, sizeof(out)), 0);
    assert_string_equal(out, "exits 123456789 irq_injections 42 insn_emulation 13589 blocking 1");

    /* Values are read afresh each time: KVM updates them in place. */
    uint64_t more = 123456790;
    struct kvm_stats_header h;
    assert_int_equal(pread(s.fd, &h, sizeof(h), 0), sizeof(h));
    assert_int_equal(pwrite(s.fd, &more, 8, h.data_offset + 16 + 32 * 8), 8);
    assert_int_equal(vcpu_stats_format(&s, out, sizeof(out)), 0);
    assert_string_equal(out, "exits 123456790 irq_injections 42 insn_emulation 13589 blocking 1");

    /* Too small a buffer: an error, and what fitted. */
    assert_int_equal(vcpu_stats_format(&s, out, 20), -ENOSPC);
    assert_string_equal(out, "exits 123456790");
    vcpu_stats_close(&s);
    assert_false(s.open);
}

static void test_rejects_malformed_files(void **state)
{
    (void)state;
    const struct fake_desc d[] = {{"exits", 1, 0}};
    uint64_t data[1] = {5};
    struct vcpu_stats s;
    /* No name room, absurd name size, a file cut short. */
    assert_int_equal(vcpu_stats_parse(&s, fake_stats(d, 1, data, 1, 0)), -EINVAL);
    assert_false(s.open);
    assert_int_equal(vcpu_stats_parse(&s, fake_stats(d, 1, data, 1, 100000)), -EINVAL);
    int fd = memfd_create("short", 0);
    assert_int_equal(write(fd, "abc", 3), 3);
    assert_int_equal(vcpu_stats_parse(&s, fd), -EIO);
    assert_false(s.open);
    /* A name without its terminator is cut at name_size, never read past. */
    const struct fake_desc long_name[] = {
        {"exitsexitsexitsexitsexitsexitsexitsexitsexitsexits", 1, 0}};
    assert_int_equal(vcpu_stats_parse(&s, fake_stats(long_name, 1, data, 1, NAME_SIZE)), 0);
    char out[64];
    assert_int_equal(vcpu_stats_format(&s, out, sizeof(out)), 0);
    assert_string_equal(out, ""); /* no counter of ours matched */
    vcpu_stats_close(&s);
}

static void test_closed_stats_say_so(void **state)
{
    (void)state;
    struct vcpu_stats s;
    memset(&s, 0, sizeof(s)); /* as in a calloc'd vCPU that was never created */
    char out[64];
    assert_int_equal(vcpu_stats_format(&s, out, sizeof(out)), -ENODEV);
    assert_string_equal(out, "unavailable (no stats fd)");
    vcpu_stats_close(&s); /* closes nothing: fd 0 stays open */
    assert_true(fcntl(0, F_GETFD) >= 0 || errno != EBADF);
}

/* The sample lines: control registers, the pending event, and the bytes at RIP or why none. */
static void test_sample_lines(void **state)
{
    (void)state;
    struct vcpu_sample s = {.cr0 = 0x80050033,
                            .cr3 = 0x1000,
                            .cr4 = 0x3606f0,
                            .efer = 0xd01,
                            .have_events = true,
                            .exc_injected = true,
                            .exc_nr = 14,
                            .exc_has_error = true,
                            .exc_error = 0x11,
                            .rip_mapped = true,
                            .rip_gpa = 0x1234,
                            .insn_len = 3,
                            .insn = {0x0f, 0x01, 0xd9}};
    char out[256];
    assert_int_equal(vcpu_sample_format(&s, out, sizeof(out)), 0);
    assert_string_equal(out, "cr0 0x80050033 cr3 0x1000 cr4 0x3606f0 efer 0xd01 event exception 14 "
                             "injected error 0x11\ninsn at gpa 0x1234: 0f 01 d9");
    s.exc_injected = false;
    s.irq_injected = true;
    s.irq_nr = 236;
    s.rip_mapped = false;
    assert_int_equal(vcpu_sample_format(&s, out, sizeof(out)), 0);
    assert_non_null(strstr(out, "event irq 236 injected\ninsn: rip not mapped"));
    /* A length past the buffer (a corrupted sample) prints no bytes rather than read past. */
    s.rip_mapped = true;
    s.insn_len = 1000;
    assert_int_equal(vcpu_sample_format(&s, out, sizeof(out)), 0);
    assert_null(strstr(out, " 0f"));
    s.have_events = false;
    s.insn_len = 0;
    assert_int_equal(vcpu_sample_format(&s, out, sizeof(out)), 0);
    assert_non_null(strstr(out, "event unknown\ninsn at gpa 0x1234: outside guest RAM"));
    char tiny[20];
    assert_int_equal(vcpu_sample_format(&s, tiny, sizeof(tiny)), -ENOSPC);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads_the_listed_counters),
        cmocka_unit_test(test_rejects_malformed_files),
        cmocka_unit_test(test_closed_stats_say_so),
        cmocka_unit_test(test_sample_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
