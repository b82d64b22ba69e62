/* Unit tests for the guest CPUID builder (topology, KVM leaves, TSC deadline) and boot MSRs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/x86/cpuid.h"

#define MAX_ENT 64
#define SIG     KVM_CPUID_FLAG_SIGNIFCANT_INDEX

struct cpuid_buf {
    struct kvm_cpuid2 c;
    struct kvm_cpuid_entry2 e[MAX_ENT];
};

/* Roughly what KVM_GET_SUPPORTED_CPUID reports on an 8-thread Intel host. */
static const struct kvm_cpuid_entry2 host[] = {
    {.function = 0, .eax = 0x1f, .ebx = 0x756e6547},
    {.function = 1,
     .eax = 0x906ea,
     .ebx = 0x00100800,
     .ecx = 0xf6fa3203 | (1u << 21),
     .edx = 0x0f8bfbff},
    {.function = 4, .index = 0, .flags = SIG, .eax = 0x1c004121, .ebx = 0x01c0003f},
    {.function = 4, .index = 1, .flags = SIG, .eax = 0x1c004122, .ebx = 0x01c0003f},
    {.function = 4, .index = 2, .flags = SIG, .eax = 0x1c004143, .ebx = 0x00c0003f},
    {.function = 4, .index = 3, .flags = SIG, .eax = 0x1c03c163, .ebx = 0x03c0003f},
    {.function = 4, .index = 4, .flags = SIG, .eax = 0},
    {.function = 6, .eax = 0x77, .ebx = 2, .ecx = 9, .edx = 1},
    {.function = 7, .index = 0, .flags = SIG, .ebx = 0x029c6fbf, .edx = 0x9c000400},
    {.function = 0xb, .index = 0, .flags = SIG, .eax = 1, .ebx = 2, .ecx = 0x100, .edx = 7},
    {.function = 0xb, .index = 1, .flags = SIG, .eax = 4, .ebx = 8, .ecx = 0x201, .edx = 7},
    {.function = 0x1f, .index = 0, .flags = SIG, .eax = 1, .ebx = 2, .ecx = 0x100},
    {.function = 0x40000000, .eax = 0x40000001, .ebx = 0x4b4d564b},
    {.function = 0x40000001, .eax = 0x01007afb},
    {.function = 0x80000000, .eax = 0x80000008},
    {.function = 0x80000008, .eax = 0x3027, .ecx = 0x7007},
};

static struct cpuid_buf *supported(void)
{
    struct cpuid_buf *b = calloc(1, sizeof(*b));
    b->c.nent = sizeof(host) / sizeof(host[0]);
    memcpy(b->c.entries, host, sizeof(host));
    return b;
}

static const struct kvm_cpuid_entry2 *find(const struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx)
{
    const struct kvm_cpuid_entry2 *hit = NULL;
    for (uint32_t i = 0; i < c->nent; i++) {
        if (c->entries[i].function == fn && c->entries[i].index == idx) {
            if (hit)
                fail_msg("leaf 0x%x.%u appears twice", fn, idx);
            hit = &c->entries[i];
        }
    }
    return hit;
}

static void check_topology_leaf(const struct kvm_cpuid2 *c, uint32_t leaf, unsigned idx, unsigned n,
                                unsigned shift)
{
    const struct kvm_cpuid_entry2 *smt = find(c, leaf, 0), *core = find(c, leaf, 1),
                                  *end = find(c, leaf, 2);
    assert_non_null(smt);
    assert_non_null(core);
    assert_non_null(end);
    assert_true(smt->flags & SIG);
    assert_int_equal(smt->eax, 0);
    assert_int_equal(smt->ebx, 1);
    assert_int_equal(smt->ecx, 0x100);
    assert_int_equal(smt->edx, idx);
    assert_int_equal(core->eax, shift);
    assert_int_equal(core->ebx, n);
    assert_int_equal(core->ecx, 0x201);
    assert_int_equal(core->edx, idx);
    assert_int_equal(end->ecx & 0xff00, 0);
    assert_int_equal(end->ebx, 0);
    assert_null(find(c, leaf, 3));
}

static void check_vcpu(unsigned idx, unsigned n, unsigned shift)
{
    struct cpuid_buf *s = supported(), *o = calloc(1, sizeof(*o));
    assert_int_equal(cpuid_build(&s->c, idx, n, 0, &o->c, MAX_ENT), 0);
    const struct kvm_cpuid2 *c = &o->c;

    const struct kvm_cpuid_entry2 *l1 = find(c, 1, 0);
    assert_non_null(l1);
    assert_int_equal(l1->ebx >> 24, idx);
    assert_int_equal((l1->ebx >> 16) & 0xff, 1u << shift);
    assert_int_equal(l1->ebx & 0xffff, 0x0800); /* CLFLUSH size kept */
    assert_true(l1->ecx & (1u << 31));          /* hypervisor */
    assert_true(l1->ecx & (1u << 21));          /* x2APIC kept */
    assert_int_equal(!!(l1->edx & (1u << 28)), n > 1);
    assert_int_equal(l1->eax, 0x906ea);

    check_topology_leaf(c, 0xb, idx, n, shift);
    check_topology_leaf(c, 0x1f, idx, n, shift);

    for (uint32_t sub = 0; sub < 4; sub++) {
        const struct kvm_cpuid_entry2 *l4 = find(c, 4, sub);
        assert_non_null(l4);
        unsigned level = (l4->eax >> 5) & 7;
        assert_int_equal(l4->eax & 0x3fff, host[2 + sub].eax & 0x3fff);
        assert_int_equal(l4->eax >> 26, (1u << shift) - 1);
        assert_int_equal((l4->eax >> 14) & 0xfff, level >= 3 ? (1u << shift) - 1 : 0);
    }
    assert_int_equal(find(c, 4, 4)->eax, 0);

    const struct kvm_cpuid_entry2 *l6 = find(c, 6, 0);
    assert_int_equal(l6->eax, 4); /* ARAT only */
    assert_int_equal(l6->ecx, 0);

    const struct kvm_cpuid_entry2 *sig = find(c, 0x40000000, 0);
    assert_int_equal(sig->eax, 0x40000001);
    assert_memory_equal(&sig->ebx, "KVMKVMKVM\0\0\0", 12);
    const struct kvm_cpuid_entry2 *feat = find(c, 0x40000001, 0);
    assert_int_equal(feat->eax & 0x01007afb, 0x01007afb);
    assert_true(feat->eax & KVM_FEAT_CLOCKSOURCE2);
    assert_true(feat->eax & KVM_FEAT_CLOCK_STABLE);

    const struct kvm_cpuid_entry2 *amd = find(c, 0x80000008, 0);
    assert_int_equal(amd->ecx & 0xff, n - 1);
    assert_int_equal((amd->ecx >> 12) & 0xf, shift);
    assert_int_equal(amd->eax, 0x3027);

    /* Leaves we do not understand are passed through. */
    const struct kvm_cpuid_entry2 *l7 = find(c, 7, 0);
    assert_memory_equal(l7, &host[8], sizeof(*l7));
    free(s);
    free(o);
}

static void test_topology(void **state)
{
    (void)state;
    static const struct {
        unsigned n, shift;
    } cases[] = {{1, 0}, {2, 1}, {3, 2}, {4, 2}, {32, 5}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        for (unsigned idx = 0; idx < cases[i].n; idx++)
            check_vcpu(idx, cases[i].n, cases[i].shift);
}

static void test_core_shift(void **state)
{
    (void)state;
    assert_int_equal(cpuid_core_shift(1), 0);
    assert_int_equal(cpuid_core_shift(2), 1);
    assert_int_equal(cpuid_core_shift(5), 3);
    assert_int_equal(cpuid_core_shift(32), 5);
    assert_int_equal(cpuid_core_shift(33), 6);
    assert_int_equal(cpuid_core_shift(255), 8);
}

static void test_errors_and_missing_leaves(void **state)
{
    (void)state;
    struct cpuid_buf *s = supported(), *o = calloc(1, sizeof(*o));
    assert_int_equal(cpuid_build(&s->c, 0, 0, 0, &o->c, MAX_ENT), -EINVAL);
    assert_int_equal(cpuid_build(&s->c, 2, 2, 0, &o->c, MAX_ENT), -EINVAL);
    assert_int_equal(cpuid_build(&s->c, 0, 256, 0, &o->c, MAX_ENT), -EINVAL);
    assert_int_equal(cpuid_build(&s->c, 0, 1, 0, &o->c, 5), -ENOSPC);

    /* A host list without 0xb, 0x1f or the KVM leaves: 0xb and the KVM leaves are added. */
    s->c.nent = 9; /* through leaf 7 */
    assert_int_equal(cpuid_build(&s->c, 1, 2, 0, &o->c, MAX_ENT), 0);
    check_topology_leaf(&o->c, 0xb, 1, 2, 1);
    assert_null(find(&o->c, 0x1f, 0));
    assert_non_null(find(&o->c, 0x40000000, 0));
    assert_true(find(&o->c, 0x40000001, 0)->eax & KVM_FEAT_CLOCK_STABLE);
    free(s);
    free(o);
}

/* Leaf 1's TSC-deadline bit follows the flag, whatever the supported list says. */
static void test_tsc_deadline(void **state)
{
    (void)state;
    const uint32_t deadline = 1u << 24, hypervisor = 1u << 31;
    struct cpuid_buf *s = supported(), *o = calloc(1, sizeof(*o));
    assert_int_equal(cpuid_build(&s->c, 0, 1, CPUID_F_TSC_DEADLINE, &o->c, MAX_ENT), 0);
    const struct kvm_cpuid_entry2 *l1 = find(&o->c, 1, 0);
    assert_non_null(l1);
    assert_int_equal(l1->ecx, host[1].ecx | deadline | hypervisor);

    s->c.entries[1].ecx |= deadline; /* a list that claims it: the flag still decides */
    assert_int_equal(cpuid_build(&s->c, 0, 1, 0, &o->c, MAX_ENT), 0);
    l1 = find(&o->c, 1, 0);
    assert_int_equal(l1->ecx, (host[1].ecx | hypervisor) & ~deadline);

    assert_int_equal(cpuid_build(&s->c, 0, 1, 1u << 7, &o->c, MAX_ENT), -EINVAL);
    free(s);
    free(o);
}

static void test_msr_list(void **state)
{
    (void)state;
    struct kvm_msr_entry e[32];
    size_t n = msr_boot_list(e, 32);
    assert_true(n >= 10 && n <= 32);
    int misc = 0, mtrr = 0, lstar = 0;
    for (size_t i = 0; i < n; i++) {
        if (e[i].index == 0x1a0) {
            assert_int_equal(e[i].data, 1);
            misc = 1;
        } else if (e[i].index == 0x2ff) {
            assert_int_equal(e[i].data, 0x806);
            mtrr = 1;
        } else {
            assert_int_equal(e[i].data, 0);
            lstar |= e[i].index == 0xc0000082;
        }
    }
    assert_true(misc && mtrr && lstar);

    struct kvm_msr_entry few[3];
    memset(few, 0xab, sizeof(few));
    assert_int_equal(msr_boot_list(few, 2), n);
    assert_int_equal(few[0].index, e[0].index);
    assert_int_equal(few[2].index, 0xabababab); /* untouched past max */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_topology),
        cmocka_unit_test(test_core_shift),
        cmocka_unit_test(test_errors_and_missing_leaves),
        cmocka_unit_test(test_tsc_deadline),
        cmocka_unit_test(test_msr_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
