/* Every API route in every VM state, served by a child under the real VMM seccomp filter once
 * the VM is booted (as amber does): the child must survive each one, and a route outside its
 * phases must get 400. Also pins the route phase table. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "api/core.h"
#include "vmm/seccomp.h"

/* One request per (method, route); DIR in a body becomes the test's temporary directory. */
struct probe {
    const char *method, *path, *body;
};

static const struct probe probes[] = {
    {"GET", "/", NULL},
    {"GET", "/version", NULL},
    {"GET", "/machine-config", NULL},
    {"PUT", "/machine-config", "{\"vcpu_count\":1,\"mem_size_mib\":128}"},
    {"PATCH", "/machine-config", "{\"vcpu_count\":1}"},
    {"PUT", "/boot-source", "{\"kernel_image_path\":\"vmlinux\"}"},
    {"PUT", "/drives/d1",
     "{\"drive_id\":\"d1\",\"path_on_host\":\"d1.img\",\"is_root_device\":false,"
     "\"is_read_only\":false}"},
    {"PATCH", "/drives/d1", "{\"drive_id\":\"d1\",\"path_on_host\":\"relative.img\"}"},
    {"PUT", "/network-interfaces/eth0", "{\"iface_id\":\"eth0\",\"host_dev_name\":\"tap0\"}"},
    {"PATCH", "/network-interfaces/eth0", "{\"iface_id\":\"eth0\",\"rx_rate_limiter\":{}}"},
    {"PUT", "/vsock", "{\"guest_cid\":3,\"uds_path\":\"DIR/v.sock\"}"},
    {"PUT", "/entropy", "{}"},
    {"PUT", "/logger", "{\"log_path\":\"DIR/log\",\"level\":\"Info\"}"},
    {"PUT", "/metrics", "{\"metrics_path\":\"DIR/metrics\"}"},
    {"PUT", "/actions", "{\"action_type\":\"FlushMetrics\"}"},
    {"PUT", "/actions", "{\"action_type\":\"SendCtrlAltDel\"}"},
    {"PUT", "/actions", "{\"action_type\":\"InstanceStart\"}"},
    {"PATCH", "/vm", "{\"state\":\"Paused\"}"},
    {"PATCH", "/vm", "{\"state\":\"Resumed\"}"},
    {"GET", "/vm/config", NULL},
    {"POST", "/pause", NULL},
    {"POST", "/resume", NULL},
    {"PUT", "/snapshot/create",
     "{\"snapshot_path\":\"DIR/snap\",\"mem_file_path\":\"DIR/mem\",\"snapshot_type\":\"Full\"}"},
    {"GET", "/timeout", NULL},
    {"PUT", "/timeout", "{\"timeout_s\":60,\"on_timeout\":\"pause\"}"},
    {"PUT", "/snapshot/load", "{\"snapshot_path\":\"DIR/snap\",\"mem_file_path\":\"DIR/mem\"}"},
};

#define NPROBES (sizeof(probes) / sizeof(probes[0]))

static int ok_start(void *ctx, const struct vm_config *cfg, char *err, size_t n)
{
    return 0;
}
static int ok_op(void *ctx, char *err, size_t n)
{
    return 0;
}
static int ok_swap(void *ctx, const char *id, const char *path, char *err, size_t n)
{
    return 0;
}
static int ok_snap_create(void *ctx, const struct api_snapshot_create *p, char *err, size_t n)
{
    return 0;
}
static int ok_snap_load(void *ctx, const struct api_snapshot_load *p, char *err, size_t n)
{
    return 0;
}

static char dir[64];

static void fill_cfg(struct vm_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    snprintf(cfg->id, sizeof(cfg->id), "routes");
    cfg->vcpus = 1;
    cfg->mem_mib = 128;
    cfg->seccomp = true;
    snprintf(cfg->kernel, sizeof(cfg->kernel), "/vmlinux");
    cfg->ndrives = 1;
    snprintf(cfg->drive[0].id, sizeof(cfg->drive[0].id), "d1");
    snprintf(cfg->drive[0].path, sizeof(cfg->drive[0].path), "/d1.img");
    cfg->nnets = 1;
    snprintf(cfg->net[0].id, sizeof(cfg->net[0].id), "eth0");
}

/* Route p in state s in a child, filtered (as amber is) unless s is NOT_STARTED. Returns the
 * HTTP status, or fails the test if the child did not survive. */
static int serve_in_child(const struct probe *p, enum vm_state s)
{
    char body[512] = "", raw[1024];
    if (p->body) {
        const char *d = strstr(p->body, "DIR");
        if (d)
            snprintf(body, sizeof(body), "%.*s%s%s", (int)(d - p->body), p->body, dir, d + 3);
        else
            snprintf(body, sizeof(body), "%s", p->body);
    }
    int n = snprintf(raw, sizeof(raw), "%s %s HTTP/1.1\r\nContent-Length: %zu\r\n\r\n%s", p->method,
                     p->path, strlen(body), body);
    int pipefd[2], errpipe[2];
    assert_int_equal(pipe(pipefd), 0);
    assert_int_equal(pipe(errpipe), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        static struct vm_config cfg;
        static struct api_core core;
        struct api_backend be = {.start = ok_start,
                                 .pause = ok_op,
                                 .resume = ok_op,
                                 .ctrl_alt_del = ok_op,
                                 .drive_swap = ok_swap,
                                 .snapshot_create = ok_snap_create,
                                 .snapshot_load = ok_snap_load};
        dup2(errpipe[1], STDERR_FILENO);
        fill_cfg(&cfg);
        api_core_init(&core, &cfg, &be);
        core.st.state = s;
        if (s != VM_NOT_STARTED &&
            (seccomp_install_handler() || seccomp_install(SECCOMP_VMM, &cfg)))
            _exit(100);
        struct http_parser hp;
        struct http_request hr;
        struct api_response r;
        http_parser_reset(&hp);
        if (http_parse(&hp, raw, (size_t)n, &hr) != n)
            _exit(101);
        api_core_route(&core, &hr, &r);
        int status = r.status;
        api_response_free(&r);
        _exit(write(pipefd[1], &status, sizeof(status)) == sizeof(status) ? 0 : 102);
    }
    close(pipefd[1]);
    close(errpipe[1]);
    int status = 0;
    ssize_t got = read(pipefd[0], &status, sizeof(status));
    char err[512];
    ssize_t elen = read(errpipe[0], err, sizeof(err) - 1);
    err[elen > 0 ? elen : 0] = '\0';
    close(pipefd[0]);
    close(errpipe[0]);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || got != sizeof(status))
        fail_msg("%s %s in state %s killed the VMM: status %d, stderr '%s'", p->method, p->path,
                 vmstate_name(s), WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st), err);
    return status;
}

/* The phases of the route that serves method + path (0 if none). */
static unsigned phases_of(const char *method, const char *path)
{
    const char *rp, *rm;
    bool has_id;
    unsigned ph;
    for (unsigned i = 0; api_route_at(i, &rp, &has_id, &rm, &ph); i++) {
        bool match = has_id ? !strncmp(path, rp, strlen(rp)) : !strcmp(path, rp);
        if (match && !strcmp(method, rm))
            return ph;
    }
    return 0;
}

static void test_every_route_every_state(void **state)
{
#ifdef __SANITIZE_ADDRESS__
    print_message("skipped: ASan's runtime makes syscalls (sigaltstack) the filters forbid\n");
    skip();
#endif
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/amber-routes-XXXXXX");
    assert_non_null(mkdtemp(dir));
    assert_int_equal(chdir(dir), 0); /* relative paths resolve here */
    for (unsigned i = 0; i < NPROBES; i++) {
        unsigned ph = phases_of(probes[i].method, probes[i].path);
        assert_true(ph != 0);
        for (int s = VM_NOT_STARTED; s <= VM_STOPPED; s++) {
            int status = serve_in_child(&probes[i], (enum vm_state)s);
            if (!(ph & API_PHASE_BIT(s)) && status != 400)
                fail_msg("%s %s in state %s: want 400 (outside its phases), got %d",
                         probes[i].method, probes[i].path, vmstate_name((enum vm_state)s), status);
        }
    }
    char p[128];
    snprintf(p, sizeof(p), "%s/log", dir);
    unlink(p);
    snprintf(p, sizeof(p), "%s/metrics", dir);
    unlink(p);
    snprintf(p, sizeof(p), "%s/v.sock", dir);
    unlink(p);
    assert_int_equal(chdir("/"), 0);
    assert_int_equal(rmdir(dir), 0);
}

/* Every route has a probe above, and the phase table says what the docs say. */
static void test_phase_table(void **state)
{
    (void)state;
    const char *rp, *rm;
    bool has_id;
    unsigned ph;
    for (unsigned i = 0; api_route_at(i, &rp, &has_id, &rm, &ph); i++) {
        bool probed = false;
        for (unsigned k = 0; k < NPROBES; k++)
            probed |=
                !strcmp(probes[k].method, rm) &&
                (has_id ? !strncmp(probes[k].path, rp, strlen(rp)) : !strcmp(probes[k].path, rp));
        if (!probed)
            fail_msg("route %s %s has no probe", rm, rp);
    }
    assert_int_equal(api_route_count(), 23);
    const unsigned pre = API_PHASE_BIT(VM_NOT_STARTED);
    const unsigned booted = API_PHASE_BIT(VM_RUNNING) | API_PHASE_BIT(VM_PAUSED);
    const unsigned any = pre | booted | API_PHASE_BIT(VM_STOPPED);
    /* Anything that opens, creates or binds a host path is pre-boot only. */
    assert_int_equal(phases_of("PUT", "/logger"), pre);
    assert_int_equal(phases_of("PUT", "/metrics"), pre);
    assert_int_equal(phases_of("PUT", "/vsock"), pre);
    assert_int_equal(phases_of("PUT", "/boot-source"), pre);
    assert_int_equal(phases_of("PUT", "/drives/x"), pre);
    assert_int_equal(phases_of("PUT", "/machine-config"), pre);
    assert_int_equal(phases_of("PATCH", "/machine-config"), pre);
    assert_int_equal(phases_of("PUT", "/network-interfaces/x"), pre);
    assert_int_equal(phases_of("PUT", "/entropy"), pre);
    assert_int_equal(phases_of("PATCH", "/drives/x"), booted);
    assert_int_equal(phases_of("PATCH", "/network-interfaces/x"), booted);
    assert_int_equal(phases_of("PATCH", "/vm"), booted);
    assert_int_equal(phases_of("PUT", "/snapshot/create"), API_PHASE_BIT(VM_PAUSED));
    assert_int_equal(phases_of("PUT", "/snapshot/load"), pre);
    assert_int_equal(phases_of("PUT", "/timeout"), any); /* its handler answers 409 once stopped */
    assert_int_equal(phases_of("GET", "/"), any);
    assert_int_equal(phases_of("PUT", "/actions"), any);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_phase_table),
        cmocka_unit_test(test_every_route_every_state),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
