/* The VMM's epoll event loop: fd watches, one-shot and periodic timers, and cross-thread calls. */
#ifndef AMBER_VMM_LOOP_H
#define AMBER_VMM_LOOP_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* Called on the loop thread with the epoll events that fired (EPOLLIN, EPOLLOUT, ...). */
typedef void (*loop_fn)(void *opaque, uint32_t events);

/* A function posted from another thread, run on the loop thread. */
typedef void (*loop_call_fn)(void *arg);

struct loop_call;

struct loop {
    int epfd;
    int wake_fd; /* eventfd: wakes the loop for posted calls */
    pthread_mutex_t call_lock;
    struct loop_call *calls; /* posted calls, run in order */
    struct loop_call **calls_tail;
    void *priv; /* watch records (loop.c) */
    volatile bool stop;
    int exit_code;
};

/* Create the epoll instance and wake eventfd. Returns 0 or a negative errno. */
int loop_init(struct loop *l);

/* Close the loop's own fds. Watched fds belong to their owners and are not closed. */
void loop_destroy(struct loop *l);

/*
 * Watch fd for events, calling fn(opaque, events) on the loop thread. The watch record
 * is owned by the loop until loop_del. Returns 0 or a negative errno.
 */
int loop_add(struct loop *l, int fd, uint32_t events, loop_fn fn, void *opaque);

/* Change the events watched on fd (fn/opaque stay). Returns 0 or a negative errno. */
int loop_mod(struct loop *l, int fd, uint32_t events);

/* Stop watching fd. Safe to call from inside that fd's own callback. */
int loop_del(struct loop *l, int fd);

/*
 * Create a timerfd watched by the loop that fires after first_ms, then every period_ms
 * (0 = once). Returns the timer fd (the caller owns it: loop_del + close it) or -errno.
 */
int loop_add_timer(struct loop *l, uint64_t first_ms, uint64_t period_ms, loop_fn fn, void *opaque);

/* Re-arm an existing timer fd. Returns 0 or a negative errno. */
int loop_timer_set(int tfd, uint64_t first_ms, uint64_t period_ms);

/* Post fn(arg) to run on the loop thread; callable from any thread. Returns 0 or -ENOMEM. */
int loop_post(struct loop *l, loop_call_fn fn, void *arg);

/* Run until loop_quit. Returns the exit code passed to loop_quit. */
int loop_run(struct loop *l);

/* Ask loop_run to return code after the current iteration. Thread-safe. */
void loop_quit(struct loop *l, int code);

/* Run one iteration, waiting at most timeout_ms (-1 = forever). For tests. */
int loop_run_once(struct loop *l, int timeout_ms);

#endif
