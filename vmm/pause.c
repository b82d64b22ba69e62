/* The pause barrier: a counted check-in of every vCPU, outside any signal handler. */
#include "vmm/pause.h"

#include <errno.h>
#include <time.h>

int pause_init(struct pause_barrier *p, unsigned members)
{
    pthread_condattr_t attr;
    int err = pthread_condattr_init(&attr);
    if (err)
        return -err;
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->parked_cond, &attr);
    pthread_cond_init(&p->resume_cond, NULL);
    pthread_condattr_destroy(&attr);
    p->requested = false;
    p->stopping = false;
    p->parked = 0;
    p->members = members;
    return 0;
}

void pause_destroy(struct pause_barrier *p)
{
    pthread_cond_destroy(&p->resume_cond);
    pthread_cond_destroy(&p->parked_cond);
    pthread_mutex_destroy(&p->lock);
}

enum pause_outcome pause_checkpoint(struct pause_barrier *p, volatile uint8_t *immediate_exit)
{
    bool stopping, parked = false;
    pthread_mutex_lock(&p->lock);
    if (p->requested && !p->stopping) {
        parked = true;
        p->parked++;
        pthread_cond_signal(&p->parked_cond);
        while (p->requested && !p->stopping)
            pthread_cond_wait(&p->resume_cond, &p->lock);
        p->parked--;
    }
    stopping = p->stopping;
    /* Cleared under the lock: a pause requested after this point sets it again. */
    if (!p->requested && !stopping)
        *immediate_exit = 0;
    pthread_mutex_unlock(&p->lock);
    return stopping ? PAUSE_STOP : parked ? PAUSE_RESUMED : PAUSE_RUN;
}

void pause_leave(struct pause_barrier *p)
{
    pthread_mutex_lock(&p->lock);
    if (p->members > 0)
        p->members--;
    pthread_cond_signal(&p->parked_cond);
    pthread_mutex_unlock(&p->lock);
}

static void deadline_after(struct timespec *ts, unsigned ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

int pause_request(struct pause_barrier *p, unsigned nvcpus, void (*kick)(void *arg, unsigned i),
                  void *arg, unsigned timeout_ms)
{
    struct timespec deadline;
    deadline_after(&deadline, timeout_ms);

    pthread_mutex_lock(&p->lock);
    p->requested = true;
    for (unsigned i = 0; i < nvcpus; i++)
        kick(arg, i);
    int err = 0;
    while (p->parked < p->members && err == 0)
        err = pthread_cond_timedwait(&p->parked_cond, &p->lock, &deadline);
    if (p->parked < p->members) {
        /* A vCPU did not check in: withdraw, so the VM carries on exactly as before. */
        p->requested = false;
        pthread_cond_broadcast(&p->resume_cond);
        pthread_mutex_unlock(&p->lock);
        return -ETIMEDOUT;
    }
    pthread_mutex_unlock(&p->lock);
    return 0;
}

void pause_release(struct pause_barrier *p)
{
    pthread_mutex_lock(&p->lock);
    p->requested = false;
    pthread_cond_broadcast(&p->resume_cond);
    pthread_mutex_unlock(&p->lock);
}

void pause_stop(struct pause_barrier *p, unsigned nvcpus, void (*kick)(void *arg, unsigned i),
                void *arg)
{
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    for (unsigned i = 0; i < nvcpus; i++)
        kick(arg, i);
    pthread_cond_broadcast(&p->resume_cond);
    pthread_mutex_unlock(&p->lock);
}
