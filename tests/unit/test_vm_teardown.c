/* Unit test of vm_destroy after a vm_start that failed part-way, with stand-in vCPU threads. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "vmm/pause.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"

/*
 * What vcpu_thread does, with KVM_RUN replaced by "run guest code until kicked": the pause
 * checkpoint, then spin until immediate_exit is set (as KVM_RUN returns EINTR once kicked).
 */
static void *standin_vcpu(void *arg)
{
    struct vcpu *v = arg;
    for (;;) {
        if (pause_checkpoint(v->env->barrier, &v->run->immediate_exit) == PAUSE_STOP)
            break;
        while (!__atomic_load_n(&v->run->immediate_exit, __ATOMIC_ACQUIRE))
            usleep(1000);
    }
    pause_leave(v->env->barrier);
    return NULL;
}

static void *destroy_thread(void *arg)
{
    vm_destroy(arg);
    return NULL;
}

/*
 * vm_start failed at vCPU 1 of 3: vCPU 0 runs the guest, 1 and 2 never started, vm->running is
 * false. vm_destroy must kick vCPU 0 out of its run, stop it and join it, within 5 s.
 */
static void test_destroy_after_start_failed_at_second_vcpu(void **state)
{
    (void)state;
    assert_int_equal(vcpu_install_kick_handler(), 0);
    static struct vm vm;
    memset(&vm, 0, sizeof(vm));
    vm.kvm_fd = vm.vm_fd = -1;
    vm.nvcpus = 3;
    vm.run_size = (int)sysconf(_SC_PAGESIZE);
    assert_int_equal(pause_init(&vm.barrier, vm.nvcpus), 0);
    vm.vcpu_env =
        (struct vcpu_env){.run_size = vm.run_size, .nvcpus = vm.nvcpus, .barrier = &vm.barrier};
    vm.vcpus = calloc(vm.nvcpus, sizeof(*vm.vcpus));
    assert_non_null(vm.vcpus);
    for (unsigned i = 0; i < vm.nvcpus; i++) {
        struct vcpu *v = &vm.vcpus[i];
        v->env = &vm.vcpu_env;
        v->index = i;
        v->fd = -1;
        v->run = mmap(NULL, (size_t)vm.run_size, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        assert_true(v->run != MAP_FAILED);
    }
    assert_int_equal(pthread_create(&vm.vcpus[0].thread, NULL, standin_vcpu, &vm.vcpus[0]), 0);
    vm.vcpus[0].started = true;
    usleep(20000); /* vCPU 0 is in its "guest" now */

    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, destroy_thread, &vm), 0);
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 5;
    int rc = pthread_timedjoin_np(t, NULL, &deadline);
    if (rc == ETIMEDOUT)
        fail_msg("vm_destroy still joins vCPU 0 after 5 s: the vCPU was never told to stop");
    assert_int_equal(rc, 0);
    assert_null(vm.vcpus);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_destroy_after_start_failed_at_second_vcpu),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
