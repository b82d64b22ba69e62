/* The VMM's epoll event loop: watches, timers and calls posted from other threads. */
#include "vmm/loop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

struct loop_call {
    loop_call_fn fn;
    void *arg;
    struct loop_call *next;
};

/*
 * One record per watched fd. Records are never freed while an epoll_wait batch may still
 * reference them: loop_del marks them dead and the loop frees them after the batch.
 */
struct loop_watch {
    int fd;
    bool dead;
    loop_fn fn;
    void *opaque;
    struct loop_watch *next; /* all watches, for lookup by fd */
};

/* The loop's private state: the list of watch records. */
struct loop_priv {
    struct loop_watch *watches;
};

static struct loop_priv *priv_of(struct loop *l);

static void wake_cb(void *opaque, uint32_t events)
{
    struct loop *l = opaque;
    uint64_t v;
    if (read(l->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        return;

    pthread_mutex_lock(&l->call_lock);
    struct loop_call *c = l->calls;
    l->calls = NULL;
    l->calls_tail = &l->calls;
    pthread_mutex_unlock(&l->call_lock);

    while (c) {
        struct loop_call *next = c->next;
        c->fn(c->arg);
        free(c);
        c = next;
    }
}

int loop_init(struct loop *l)
{
    memset(l, 0, sizeof(*l));
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0)
        return -errno;
    l->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l->wake_fd < 0) {
        int err = -errno;
        close(l->epfd);
        return err;
    }
    pthread_mutex_init(&l->call_lock, NULL);
    l->calls_tail = &l->calls;
    struct loop_priv *p = calloc(1, sizeof(*p));
    if (!p) {
        close(l->wake_fd);
        close(l->epfd);
        return -ENOMEM;
    }
    l->priv = p;
    int err = loop_add(l, l->wake_fd, EPOLLIN, wake_cb, l);
    if (err) {
        loop_destroy(l);
        return err;
    }
    return 0;
}

static struct loop_priv *priv_of(struct loop *l)
{
    return l->priv;
}

static void reap_dead(struct loop *l)
{
    struct loop_watch **pp = &priv_of(l)->watches;
    while (*pp) {
        struct loop_watch *w = *pp;
        if (w->dead) {
            *pp = w->next;
            free(w);
        } else {
            pp = &w->next;
        }
    }
}

void loop_destroy(struct loop *l)
{
    struct loop_priv *p = priv_of(l);
    if (p) {
        struct loop_watch *w = p->watches;
        while (w) {
            struct loop_watch *next = w->next;
            free(w);
            w = next;
        }
        free(p);
    }
    struct loop_call *c = l->calls;
    while (c) {
        struct loop_call *next = c->next;
        free(c);
        c = next;
    }
    if (l->wake_fd > 0)
        close(l->wake_fd);
    if (l->epfd > 0)
        close(l->epfd);
    pthread_mutex_destroy(&l->call_lock);
    memset(l, 0, sizeof(*l));
}

static struct loop_watch *find_watch(struct loop *l, int fd)
{
    for (struct loop_watch *w = priv_of(l)->watches; w; w = w->next)
        if (w->fd == fd && !w->dead)
            return w;
    return NULL;
}

int loop_add(struct loop *l, int fd, uint32_t events, loop_fn fn, void *opaque)
{
    if (fd < 0 || !fn)
        return -EINVAL;
    if (find_watch(l, fd))
        return -EEXIST;
    struct loop_watch *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    *w = (struct loop_watch){.fd = fd, .fn = fn, .opaque = opaque};
    struct epoll_event ev = {.events = events, .data.ptr = w};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        int err = -errno;
        free(w);
        return err;
    }
    w->next = priv_of(l)->watches;
    priv_of(l)->watches = w;
    return 0;
}

int loop_mod(struct loop *l, int fd, uint32_t events)
{
    struct loop_watch *w = find_watch(l, fd);
    if (!w)
        return -ENOENT;
    struct epoll_event ev = {.events = events, .data.ptr = w};
    return epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
}

int loop_del(struct loop *l, int fd)
{
    struct loop_watch *w = find_watch(l, fd);
    if (!w)
        return -ENOENT;
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
    w->dead = true; /* freed after the current batch */
    return 0;
}

int loop_timer_set(int tfd, uint64_t first_ms, uint64_t period_ms)
{
    struct itimerspec its = {
        .it_value = {.tv_sec = first_ms / 1000, .tv_nsec = (first_ms % 1000) * 1000000},
        .it_interval = {.tv_sec = period_ms / 1000, .tv_nsec = (period_ms % 1000) * 1000000},
    };
    if (first_ms == 0 && period_ms == 0)
        its.it_value.tv_nsec = 1; /* "now", not "disarmed" */
    return timerfd_settime(tfd, 0, &its, NULL) < 0 ? -errno : 0;
}

int loop_add_timer(struct loop *l, uint64_t first_ms, uint64_t period_ms, loop_fn fn, void *opaque)
{
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (tfd < 0)
        return -errno;
    int err = loop_timer_set(tfd, first_ms, period_ms);
    if (!err)
        err = loop_add(l, tfd, EPOLLIN, fn, opaque);
    if (err) {
        close(tfd);
        return err;
    }
    return tfd;
}

int loop_post(struct loop *l, loop_call_fn fn, void *arg)
{
    struct loop_call *c = malloc(sizeof(*c));
    if (!c)
        return -ENOMEM;
    *c = (struct loop_call){.fn = fn, .arg = arg};
    pthread_mutex_lock(&l->call_lock);
    *l->calls_tail = c;
    l->calls_tail = &c->next;
    pthread_mutex_unlock(&l->call_lock);
    uint64_t one = 1;
    if (write(l->wake_fd, &one, sizeof(one)) < 0) {
        /* The counter is saturated only if the loop is hopelessly behind; it will still wake. */
    }
    return 0;
}

int loop_run_once(struct loop *l, int timeout_ms)
{
    struct epoll_event evs[64];
    int n = epoll_wait(l->epfd, evs, 64, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    for (int i = 0; i < n; i++) {
        struct loop_watch *w = evs[i].data.ptr;
        if (!w->dead)
            w->fn(w->opaque, evs[i].events);
    }
    reap_dead(l);
    return n;
}

int loop_run(struct loop *l)
{
    while (!l->stop) {
        int n = loop_run_once(l, -1);
        if (n < 0)
            return n;
    }
    return l->exit_code;
}

void loop_quit(struct loop *l, int code)
{
    l->exit_code = code;
    l->stop = true;
    uint64_t one = 1;
    if (write(l->wake_fd, &one, sizeof(one)) < 0) {
        /* see loop_post */
    }
}
