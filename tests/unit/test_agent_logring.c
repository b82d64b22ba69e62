/* Unit tests for the agent's log ring (guest/agent/logring*.c): order, wrap, races, the port. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "guest/agent/agent.h"
#include "guest/agent/logring.h"

/* logring_serve.c reports its own failures through agent_log (serve.c in the agent). */
void agent_log(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static struct logring ring;
static char dump[LOGRING_DUMP_MAX];

static void add_str(const char *s)
{
    logring_add(&ring, s, strlen(s));
}

static void test_empty_and_order(void **state)
{
    (void)state;
    logring_reset(&ring);
    size_t n = logring_dump(&ring, dump, sizeof(dump));
    assert_int_equal(n, strlen("amber-agent log: lines 1-0 of 0 written (0 lost to wrap)\n"));
    add_str("first");
    add_str("second\n"); /* one trailing newline is dropped */
    add_str("");
    n = logring_dump(&ring, dump, sizeof(dump));
    dump[n] = 0;
    assert_string_equal(dump, "amber-agent log: lines 1-3 of 3 written (0 lost to wrap)\n"
                              "first\nsecond\n\n");
}

static void test_long_line_cut(void **state)
{
    (void)state;
    logring_reset(&ring);
    char big[LOGRING_LINE_MAX * 2];
    memset(big, 'x', sizeof(big));
    logring_add(&ring, big, sizeof(big));
    size_t n = logring_dump(&ring, dump, sizeof(dump));
    const char *body = memchr(dump, '\n', n) + 1;
    assert_int_equal(dump + n - body, LOGRING_LINE_MAX + 1);
}

static void test_wrap_keeps_newest(void **state)
{
    (void)state;
    logring_reset(&ring);
    char line[32];
    unsigned total = LOGRING_LINES * 2 + 7;
    for (unsigned i = 1; i <= total; i++) {
        snprintf(line, sizeof(line), "line %u", i);
        add_str(line);
    }
    size_t n = logring_dump(&ring, dump, sizeof(dump));
    dump[n] = 0;
    char head[128];
    snprintf(head, sizeof(head), "amber-agent log: lines %u-%u of %u written (%u lost to wrap)\n",
             total - LOGRING_LINES + 1, total, total, total - LOGRING_LINES);
    assert_memory_equal(dump, head, strlen(head));
    /* Every kept line, oldest first, and nothing else. */
    char *p = dump + strlen(head);
    for (unsigned i = total - LOGRING_LINES + 1; i <= total; i++) {
        snprintf(line, sizeof(line), "line %u\n", i);
        assert_memory_equal(p, line, strlen(line));
        p += strlen(line);
    }
    assert_int_equal(*p, 0);
}

static void test_small_buffer_cuts_at_a_line(void **state)
{
    (void)state;
    logring_reset(&ring);
    add_str("aaaa");
    add_str("bbbb");
    char small[80];
    size_t head = strlen("amber-agent log: lines 1-2 of 2 written (0 lost to wrap)\n");
    size_t n = logring_dump(&ring, small, head + 7); /* room for "aaaa\n" and 2 bytes */
    assert_int_equal(n, head + 5);
    assert_memory_equal(small + head, "aaaa\n", 5);
    assert_int_equal(logring_dump(&ring, small, 10), 0); /* not even the header fits */
}

/*
 * Writers race each other and a reader. Each line says who wrote it and carries a padding whose
 * length and letter follow from its number, so a line made of two writes shows. Each writer's
 * lines must appear in order within one dump.
 */
#define WRITERS          3
#define LINES_PER_WRITER 400000

static void make_line(char *out, size_t size, unsigned w, unsigned i)
{
    int n = snprintf(out, size, "w%u %u ", w, i);
    unsigned pad = 20 + i % 200;
    memset(out + n, 'a' + (int)(i % 26), pad);
    out[n + (int)pad] = 0;
}

static void *writer(void *arg)
{
    unsigned w = (unsigned)(uintptr_t)arg;
    char line[LOGRING_LINE_MAX + 32];
    for (unsigned i = 0; i < LINES_PER_WRITER; i++) {
        make_line(line, sizeof(line), w, i);
        add_str(line);
    }
    return NULL;
}

static unsigned check_dump(const char *d, size_t n)
{
    unsigned lines = 0;
    long last[WRITERS] = {-1, -1, -1};
    const char *p = memchr(d, '\n', n) + 1, *end = d + n;
    char want[LOGRING_LINE_MAX + 32];
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        assert_non_null(nl);
        unsigned w, i;
        assert_int_equal(sscanf(p, "w%u %u ", &w, &i), 2);
        assert_true(w < WRITERS);
        make_line(want, sizeof(want), w, i);
        if ((size_t)(nl - p) != strlen(want) || memcmp(p, want, strlen(want)) != 0)
            fail_msg("torn line in the dump: '%.*s'", (int)(nl - p), p);
        assert_true((long)i > last[w]);
        last[w] = i;
        lines++;
        p = nl + 1;
    }
    return lines;
}

static void test_racing_writers_and_reader(void **state)
{
    (void)state;
    logring_reset(&ring);
    pthread_t t[WRITERS];
    for (unsigned w = 0; w < WRITERS; w++)
        assert_int_equal(pthread_create(&t[w], NULL, writer, (void *)(uintptr_t)w), 0);
    static char d[LOGRING_DUMP_MAX];
    unsigned dumps = 0;
    while (atomic_load(&ring.next) < (uint64_t)WRITERS * LINES_PER_WRITER) {
        check_dump(d, logring_dump(&ring, d, sizeof(d)));
        dumps++;
    }
    for (unsigned w = 0; w < WRITERS; w++)
        pthread_join(t[w], NULL);
    /* Quiet now: the last dump holds every slot. */
    assert_int_equal(check_dump(d, logring_dump(&ring, d, sizeof(d))), LOGRING_LINES);
    assert_true(dumps > 1);
}

/* Processes forked after agent_logring() write into the same ring (the agent forks a handler
 * per connection). */
static void test_forked_writers_share_the_ring(void **state)
{
    (void)state;
    struct logring *r = agent_logring();
    assert_non_null(r);
    assert_ptr_equal(agent_logring(), r);
    logring_reset(r);
    for (int c = 0; c < 3; c++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            agent_trace("child %d says hello", c);
            _exit(0);
        }
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
    }
    size_t n = logring_dump(r, dump, sizeof(dump));
    dump[n] = 0;
    for (int c = 0; c < 3; c++) {
        char want[32];
        snprintf(want, sizeof(want), "child %d says hello\n", c);
        assert_non_null(strstr(dump, want));
    }
    /* Each line carries the seconds since boot and the writer's pid. */
    unsigned long s, us;
    int pid;
    char *l = strchr(dump, '\n') + 1;
    assert_int_equal(sscanf(l, "[%lu.%lu] %d: child 0", &s, &us, &pid), 3);
}

/* The log port (host testing: the Unix socket PATH.log): a client gets the dump, then EOF. */
static void test_serve_over_unix_socket(void **state)
{
    (void)state;
    char dir[] = "/tmp/amber-logring-XXXXXX", path[128], log_path[140];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/agent.sock", dir);
    snprintf(log_path, sizeof(log_path), "%s.log", path);
    struct agent_opts o = {.unix_path = path};
    struct logring *r = agent_logring();
    logring_reset(r);
    agent_trace("before the server started");
    int pid = logring_serve_start(&o);
    assert_true(pid > 0);
    agent_trace("after the server started");

    for (int round = 0; round < 2; round++) { /* the server serves one client after another */
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        strcpy(a.sun_path, log_path);
        assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
        size_t got = 0;
        ssize_t n;
        while ((n = read(fd, dump + got, sizeof(dump) - 1 - got)) > 0)
            got += (size_t)n;
        close(fd);
        dump[got] = 0;
        assert_non_null(strstr(dump, "amber-agent log: lines 1-"));
        assert_non_null(strstr(dump, "before the server started\n"));
        assert_non_null(strstr(dump, "after the server started\n"));
        assert_non_null(strstr(dump, "log port: serving the ring on"));
    }
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    unlink(log_path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_and_order),
        cmocka_unit_test(test_long_line_cut),
        cmocka_unit_test(test_wrap_keeps_newest),
        cmocka_unit_test(test_small_buffer_cuts_at_a_line),
        cmocka_unit_test(test_racing_writers_and_reader),
        cmocka_unit_test(test_forked_writers_share_the_ring),
        cmocka_unit_test(test_serve_over_unix_socket),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
