/* Token-bucket rate limiters for virtio devices (Firecracker's RateLimiter), and their timer. */
#include "devices/virtio/ratelimit.h"

#include <errno.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#define NS_PER_MS 1000000ULL

static void tb_set(struct token_bucket *b, const struct tb_config *c, uint64_t now_ns)
{
    *b = (struct token_bucket){.last_ns = now_ns};
    if (c->size == 0 || c->refill_time_ms == 0)
        return; /* no limit */
    b->size = c->size;
    b->refill_ns = c->refill_time_ms * NS_PER_MS;
    b->budget = (int64_t)c->size;
    b->burst = c->one_time_burst;
}

/* Credit the tokens earned since last_ns, up to size. Fractions of a token stay in the clock. */
static void tb_refill(struct token_bucket *b, uint64_t now_ns)
{
    if (b->size == 0 || now_ns <= b->last_ns)
        return;
    int64_t room = (int64_t)b->size - b->budget;
    if (room <= 0) {
        b->last_ns = now_ns; /* a full bucket earns nothing */
        return;
    }
    unsigned __int128 earned = (unsigned __int128)(now_ns - b->last_ns) * b->size / b->refill_ns;
    if (earned >= (unsigned __int128)room) {
        b->budget = (int64_t)b->size;
        b->last_ns = now_ns;
        return;
    }
    b->budget += (int64_t)earned;
    b->last_ns += (uint64_t)(earned * b->refill_ns / b->size);
}

/* Tokens the budget still lacks before n may pass (0: it may pass now). Refilled first. */
static uint64_t tb_lack(const struct token_bucket *b, uint64_t n)
{
    if (b->size == 0)
        return 0;
    __int128 have = (__int128)b->burst + b->budget;
    if (have >= (__int128)n || b->budget >= (int64_t)b->size)
        return 0;
    __int128 lack = (__int128)n - have;               /* enough tokens for n */
    __int128 to_full = (__int128)b->size - b->budget; /* or a full bucket */
    return (uint64_t)(lack < to_full ? lack : to_full);
}

static void tb_take(struct token_bucket *b, uint64_t n)
{
    if (b->size == 0)
        return;
    uint64_t from_burst = n < b->burst ? n : b->burst;
    b->burst -= from_burst;
    n -= from_burst;
    /* Keep the debt representable: no real request comes near 2^62 tokens. */
    const int64_t floor = -(INT64_C(1) << 62);
    if (n > (uint64_t)INT64_MAX || b->budget - floor < (int64_t)n)
        b->budget = floor;
    else
        b->budget -= (int64_t)n;
}

/* Nanoseconds until the bucket earns lack more tokens, counting the part already earned. */
static uint64_t tb_wait_ns(const struct token_bucket *b, uint64_t lack, uint64_t now_ns)
{
    if (lack == 0)
        return 0;
    unsigned __int128 t = ((unsigned __int128)lack * b->refill_ns + b->size - 1) / b->size;
    uint64_t elapsed = now_ns > b->last_ns ? now_ns - b->last_ns : 0;
    if (t > UINT64_MAX)
        return UINT64_MAX;
    return (uint64_t)t > elapsed ? (uint64_t)t - elapsed : 1;
}

void rl_set(struct rate_limiter *rl, const struct rl_config *cfg, unsigned mask, uint64_t now_ns)
{
    if (mask & RL_SET_BANDWIDTH)
        tb_set(&rl->bw, &cfg->bandwidth, now_ns);
    if (mask & RL_SET_OPS)
        tb_set(&rl->ops, &cfg->ops, now_ns);
}

bool rl_enabled(const struct rate_limiter *rl)
{
    return rl->bw.size != 0 || rl->ops.size != 0;
}

bool rl_consume(struct rate_limiter *rl, uint64_t now_ns, uint64_t bytes, uint64_t ops)
{
    tb_refill(&rl->bw, now_ns);
    tb_refill(&rl->ops, now_ns);
    if (tb_lack(&rl->bw, bytes) || tb_lack(&rl->ops, ops))
        return false;
    tb_take(&rl->bw, bytes);
    tb_take(&rl->ops, ops);
    return true;
}

void rl_charge(struct rate_limiter *rl, uint64_t now_ns, uint64_t bytes, uint64_t ops)
{
    tb_refill(&rl->bw, now_ns);
    tb_refill(&rl->ops, now_ns);
    tb_take(&rl->bw, bytes);
    tb_take(&rl->ops, ops);
}

uint64_t rl_wait_ns(struct rate_limiter *rl, uint64_t now_ns, uint64_t bytes, uint64_t ops)
{
    tb_refill(&rl->bw, now_ns);
    tb_refill(&rl->ops, now_ns);
    uint64_t a = tb_wait_ns(&rl->bw, tb_lack(&rl->bw, bytes), now_ns);
    uint64_t b = tb_wait_ns(&rl->ops, tb_lack(&rl->ops, ops), now_ns);
    return a > b ? a : b;
}

static void tb_snap_save(struct token_bucket *b, uint64_t now_ns, struct rl_snap_bucket *out)
{
    *out = (struct rl_snap_bucket){0};
    if (b->size == 0)
        return;
    tb_refill(b, now_ns); /* what is left uncredited is less than one token's time */
    *out = (struct rl_snap_bucket){
        .size = b->size,
        .refill_ns = b->refill_ns,
        .budget = b->budget,
        .burst = b->burst,
        .elapsed_ns = now_ns > b->last_ns ? now_ns - b->last_ns : 0,
    };
}

void rl_snap_save(struct rate_limiter *rl, uint64_t now_ns, struct rl_snap *out)
{
    tb_snap_save(&rl->bw, now_ns, &out->bw);
    tb_snap_save(&rl->ops, now_ns, &out->ops);
}

static int tb_snap_check(const struct token_bucket *cfg, const struct rl_snap_bucket *s,
                         const char *name, char *why, size_t whylen)
{
    if (s->size != cfg->size || s->refill_ns != cfg->refill_ns) {
        snprintf(why, whylen,
                 "%s bucket of %llu tokens per %llu ns, the configuration says %llu per %llu", name,
                 (unsigned long long)s->size, (unsigned long long)s->refill_ns,
                 (unsigned long long)cfg->size, (unsigned long long)cfg->refill_ns);
        return -EBADMSG;
    }
    if (s->size == 0) {
        if (s->budget != 0 || s->burst != 0 || s->elapsed_ns != 0) {
            snprintf(why, whylen, "%s bucket is off but holds tokens or time", name);
            return -EBADMSG;
        }
        return 0;
    }
    if (s->budget > (int64_t)s->size || s->budget < -RL_SNAP_DEBT_MAX) {
        snprintf(why, whylen, "%s bucket budget %lld outside -%lld..%llu", name,
                 (long long)s->budget, (long long)RL_SNAP_DEBT_MAX, (unsigned long long)s->size);
        return -EBADMSG;
    }
    if (s->burst > cfg->burst) {
        snprintf(why, whylen, "%s bucket one-time burst left %llu, more than the configured %llu",
                 name, (unsigned long long)s->burst, (unsigned long long)cfg->burst);
        return -EBADMSG;
    }
    if (s->elapsed_ns > s->refill_ns) {
        snprintf(why, whylen, "%s bucket elapsed time %llu ns, more than its refill time", name,
                 (unsigned long long)s->elapsed_ns);
        return -EBADMSG;
    }
    return 0;
}

int rl_snap_check(const struct rate_limiter *cfg_rl, const struct rl_snap *s, char *why,
                  size_t whylen)
{
    int ret = tb_snap_check(&cfg_rl->bw, &s->bw, "bandwidth", why, whylen);
    return ret ? ret : tb_snap_check(&cfg_rl->ops, &s->ops, "ops", why, whylen);
}

static void tb_snap_load(struct token_bucket *b, const struct rl_snap_bucket *s, uint64_t now_ns)
{
    *b = (struct token_bucket){
        .size = s->size,
        .refill_ns = s->refill_ns,
        .budget = s->budget,
        .burst = s->burst,
        .last_ns = now_ns > s->elapsed_ns ? now_ns - s->elapsed_ns : 0,
    };
}

void rl_snap_load(struct rate_limiter *rl, const struct rl_snap *s, uint64_t now_ns)
{
    tb_snap_load(&rl->bw, &s->bw, now_ns);
    tb_snap_load(&rl->ops, &s->ops, now_ns);
}

int rl_timer_init(struct rl_timer *t, struct loop *loop, loop_fn fn, void *opaque)
{
    t->fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (t->fd < 0)
        return -errno;
    int rc = loop_add(loop, t->fd, EPOLLIN, fn, opaque);
    if (rc < 0) {
        close(t->fd);
        t->fd = -1;
    }
    return rc;
}

void rl_timer_arm(struct rl_timer *t, uint64_t delay_ns)
{
    if (t->fd < 0)
        return;
    if (delay_ns == 0)
        delay_ns = 1; /* 0 would disarm */
    struct itimerspec its = {.it_value = {.tv_sec = (time_t)(delay_ns / 1000000000u),
                                          .tv_nsec = (long)(delay_ns % 1000000000u)}};
    timerfd_settime(t->fd, 0, &its, NULL);
}

void rl_timer_ack(struct rl_timer *t)
{
    uint64_t n;
    if (t->fd >= 0 && read(t->fd, &n, sizeof(n)) < 0) {
        /* EAGAIN: a re-arm raced the expiry; nothing to consume */
    }
}

void rl_timer_fini(struct rl_timer *t, struct loop *loop)
{
    if (t->fd < 0)
        return;
    loop_del(loop, t->fd);
    close(t->fd);
    t->fd = -1;
}
