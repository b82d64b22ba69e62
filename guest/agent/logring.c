/* The agent's in-memory log ring: lock-free appends from many processes, a consistent dump. */
#include "guest/agent/logring.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

void logring_reset(struct logring *r)
{
    for (unsigned i = 0; i < LOGRING_LINES; i++) {
        atomic_store_explicit(&r->slot[i].seq, 0, memory_order_relaxed);
        r->slot[i].len = 0;
    }
    atomic_store_explicit(&r->next, 0, memory_order_release);
}

void logring_add(struct logring *r, const char *text, size_t len)
{
    if (len > 0 && text[len - 1] == '\n')
        len--;
    if (len > LOGRING_LINE_MAX)
        len = LOGRING_LINE_MAX;
    uint64_t n = atomic_fetch_add_explicit(&r->next, 1, memory_order_relaxed);
    struct logring_slot *s = &r->slot[n % LOGRING_LINES];
    /* Mark the slot busy before touching its text: a reader that saw the old number will find
     * it changed when it checks again, and drops what it copied. */
    atomic_store_explicit(&s->seq, 0, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    memcpy(s->text, text, len);
    s->len = (uint16_t)len;
    atomic_store_explicit(&s->seq, n + 1, memory_order_release);
}

/* Copy line n out of its slot if it is still there, whole. Returns its length or -1. */
static int read_line(struct logring *r, uint64_t n, char *out)
{
    struct logring_slot *s = &r->slot[n % LOGRING_LINES];
    if (atomic_load_explicit(&s->seq, memory_order_acquire) != n + 1)
        return -1;
    size_t len = s->len;
    if (len > LOGRING_LINE_MAX)
        return -1;
    memcpy(out, s->text, len);
    atomic_thread_fence(memory_order_acquire);
    if (atomic_load_explicit(&s->seq, memory_order_relaxed) != n + 1)
        return -1;
    return (int)len;
}

size_t logring_dump(struct logring *r, char *out, size_t size)
{
    uint64_t end = atomic_load_explicit(&r->next, memory_order_acquire);
    uint64_t first = end > LOGRING_LINES ? end - LOGRING_LINES : 0;
    char head[128];
    int hn = snprintf(head, sizeof(head),
                      "amber-agent log: lines %llu-%llu of %llu written (%llu lost to wrap)\n",
                      (unsigned long long)first + 1, (unsigned long long)end,
                      (unsigned long long)end, (unsigned long long)first);
    if (hn < 0 || (size_t)hn > size)
        return 0;
    memcpy(out, head, (size_t)hn);
    size_t used = (size_t)hn;
    char line[LOGRING_LINE_MAX];
    for (uint64_t n = first; n < end; n++) {
        int len = read_line(r, n, line);
        if (len < 0)
            continue; /* overwritten or being written as we read */
        if (used + (size_t)len + 1 > size)
            break;
        memcpy(out + used, line, (size_t)len);
        used += (size_t)len;
        out[used++] = '\n';
    }
    return used;
}

struct logring *agent_logring(void)
{
    static struct logring *ring;
    static int failed;
    if (ring || failed)
        return ring;
    void *p = mmap(NULL, sizeof(*ring), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        failed = 1;
        return NULL;
    }
    ring = p; /* zero-filled: an empty ring */
    return ring;
}

void agent_trace(const char *fmt, ...)
{
    struct logring *r = agent_logring();
    if (!r)
        return;
    char line[LOGRING_LINE_MAX + 1];
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    int n = snprintf(line, sizeof(line), "[%5lld.%06ld] %d: ", (long long)ts.tv_sec,
                     ts.tv_nsec / 1000, (int)getpid());
    if (n < 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 1)
        len = sizeof(line) - 1;
    logring_add(r, line, len);
}
