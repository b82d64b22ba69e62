/* The pause barrier: stops every vCPU outside KVM_RUN and releases them again. */
#ifndef AMBER_VMM_PAUSE_H
#define AMBER_VMM_PAUSE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/*
 * Protocol (why it is safe without locks in the signal handler):
 * - The controller takes `lock`, sets `requested`, and for every vCPU sets its kvm_run
 *   `immediate_exit` and sends it the kick signal, still under `lock`.
 * - A vCPU checks `requested` before each KVM_RUN. If the check misses, immediate_exit is
 *   already 1 and KVM_RUN returns -EINTR at once; if the vCPU is inside KVM_RUN, the signal
 *   makes it leave. The signal handler itself does nothing.
 * - The vCPU then parks: under `lock` it counts itself in, wakes the controller, and sleeps
 *   on `resume_cond` until `requested` is cleared. It clears immediate_exit under `lock`, so
 *   a new pause cannot have its immediate_exit overwritten.
 */
struct pause_barrier {
    pthread_mutex_t lock;
    pthread_cond_t parked_cond; /* controller waits here for check-ins */
    pthread_cond_t resume_cond; /* vCPUs wait here for release */
    bool requested;
    bool stopping; /* VM teardown: parked vCPUs leave and exit */
    unsigned parked;
    unsigned members; /* vCPU threads that must check in */
};

/* How long the API waits for every vCPU to park before it withdraws a pause (pause_request). */
#define PAUSE_TIMEOUT_MS 5000

/* Initialise the barrier for `members` vCPU threads. Returns 0 or a negative errno. */
int pause_init(struct pause_barrier *p, unsigned members);

/* Destroy the barrier's mutex and condition variables. */
void pause_destroy(struct pause_barrier *p);

/* What a vCPU does after pause_checkpoint. */
enum pause_outcome {
    PAUSE_RUN,     /* nothing was requested: run on */
    PAUSE_RESUMED, /* it was parked and has been released: tell the guest, then run */
    PAUSE_STOP,    /* the VM is stopping: leave the vCPU loop */
};

/*
 * Called on a vCPU thread after KVM_RUN returned: if a pause or stop is requested, check in
 * and sleep until released. `immediate_exit` is the vCPU's kvm_run field, cleared on release.
 */
enum pause_outcome pause_checkpoint(struct pause_barrier *p, volatile uint8_t *immediate_exit);

/* A vCPU thread that leaves for good (stop or error) stops counting as a member. */
void pause_leave(struct pause_barrier *p);

/*
 * Request a pause: kick(arg, i) is called under the barrier lock for every vCPU i in
 * [0, nvcpus) and must set its immediate_exit and signal its thread. Then wait up to
 * timeout_ms for every member to park. Returns 0 when all are parked, or -ETIMEDOUT (the
 * request is withdrawn and any parked vCPU released, so the VM runs on as before).
 */
int pause_request(struct pause_barrier *p, unsigned nvcpus, void (*kick)(void *arg, unsigned i),
                  void *arg, unsigned timeout_ms);

/* Release every parked vCPU. */
void pause_release(struct pause_barrier *p);

/* Ask every vCPU to leave its loop (teardown); kicks like pause_request but does not wait. */
void pause_stop(struct pause_barrier *p, unsigned nvcpus, void (*kick)(void *arg, unsigned i),
                void *arg);

#endif
