/* Unit tests for the API: state machine, router and handlers over a mock back end, sinks on
 * reader-less FIFOs, and the real Unix-socket server driven with loop_run_once. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "api/api.h"
#include "api/core.h"
#include "vmm/clock.h"

struct mock {
    int starts, pauses, resumes, cads, swaps, binds;
    int start_ret, pause_ret, swap_ret;
    char swap_id[80], swap_path[256], bind_path[128];
    int stops;
    char stop_why[128];
    int rls; /* rate_limit calls, and the last one's arguments */
    enum api_rl_target rl_target;
    char rl_id[80];
    struct rl_config rl;
    unsigned rl_set;
};

static int m_start(void *ctx, const struct vm_config *cfg, char *err, size_t n)
{
    struct mock *m = ctx;
    m->starts++;
    if (m->start_ret)
        snprintf(err, n, "mock start failure");
    return m->start_ret;
}
static int m_pause(void *ctx, char *err, size_t n)
{
    struct mock *m = ctx;
    m->pauses++;
    return m->pause_ret;
}
static int m_resume(void *ctx, char *err, size_t n)
{
    ((struct mock *)ctx)->resumes++;
    return 0;
}
static int m_cad(void *ctx, char *err, size_t n)
{
    ((struct mock *)ctx)->cads++;
    return 0;
}
static int m_swap(void *ctx, const char *id, const char *path, char *err, size_t n)
{
    struct mock *m = ctx;
    m->swaps++;
    snprintf(m->swap_id, sizeof(m->swap_id), "%s", id);
    snprintf(m->swap_path, sizeof(m->swap_path), "%s", path);
    return m->swap_ret;
}
static int m_bind(void *ctx, const struct vsock_config *v, char *err, size_t n)
{
    struct mock *m = ctx;
    m->binds++;
    snprintf(m->bind_path, sizeof(m->bind_path), "%s", v->uds_path);
    return 0;
}
static void m_stop(void *ctx, const char *why)
{
    struct mock *m = ctx;
    m->stops++;
    snprintf(m->stop_why, sizeof(m->stop_why), "%s", why);
}
static int m_rl(void *ctx, enum api_rl_target t, const char *id, const struct rl_config *rl,
                unsigned set, char *err, size_t n)
{
    struct mock *m = ctx;
    m->rls++;
    m->rl_target = t;
    snprintf(m->rl_id, sizeof(m->rl_id), "%s", id);
    m->rl = *rl;
    m->rl_set = set;
    return 0;
}
static void m_metrics(void *ctx, struct json_object *out)
{
    json_object_object_add(out, "mock", json_object_new_int(1));
}

struct fix {
    struct mock m;
    struct api_backend be;
    struct vm_config cfg;
    struct api_core core;
    struct api_response r;
    struct json_object *json; /* parsed body of the last response */
};

static int setup(void **state)
{
    struct fix *f = calloc(1, sizeof(*f));
    f->be = (struct api_backend){&f->m,  m_start,   m_pause, m_resume, m_cad,  m_swap,
                                 m_bind, m_metrics, NULL,    NULL,     m_stop, m_rl};
    f->cfg.vcpus = 1;
    f->cfg.mem_mib = 128;
    snprintf(f->cfg.id, sizeof(f->cfg.id), "sbx1");
    api_core_init(&f->core, &f->cfg, &f->be);
    f->core.check_file =
        NULL; /* the tests name files that do not exist; see test_put_file_checks */
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fix *f = *state;
    api_response_free(&f->r);
    json_object_put(f->json);
    api_core_fini(&f->core);
    free(f);
    return 0;
}

/* Send one request through the parser and router; returns the status. */
static int req(struct fix *f, const char *method, const char *path, const char *body)
{
    char raw[8192];
    int n = snprintf(raw, sizeof(raw), "%s %s HTTP/1.1\r\nContent-Length: %zu\r\n\r\n%s", method,
                     path, body ? strlen(body) : 0, body ? body : "");
    struct http_parser p;
    struct http_request hr;
    http_parser_reset(&p);
    assert_int_equal(http_parse(&p, raw, (size_t)n, &hr), n);
    api_response_free(&f->r);
    json_object_put(f->json);
    f->json = NULL;
    api_core_route(&f->core, &hr, &f->r);
    if (f->r.body)
        f->json = json_tokener_parse(f->r.body);
    if (f->r.status >= 400) { /* every error carries fault_message */
        struct json_object *fm;
        assert_true(json_object_object_get_ex(f->json, "fault_message", &fm));
    }
    return f->r.status;
}

static const char *jstr(struct fix *f, const char *key)
{
    struct json_object *v;
    if (!json_object_object_get_ex(f->json, key, &v))
        return NULL;
    return json_object_get_string(v);
}

static const char *fault(struct fix *f)
{
    return jstr(f, "fault_message");
}

#define BOOT  "{\"kernel_image_path\":\"/vmlinux\"}"
#define START "{\"action_type\":\"InstanceStart\"}"

static void start_vm(struct fix *f)
{
    assert_int_equal(req(f, "PUT", "/boot-source", BOOT), 204);
    assert_int_equal(req(f, "PUT", "/actions", START), 204);
}

static void test_transition_table(void **state)
{
    /* expected[state][event]: next state, or -1 when refused. */
    const int expected[4][4] = {
        /* START        PAUSE      RESUME       STOP */
        {VM_RUNNING, -1, -1, VM_STOPPED}, /* NOT_STARTED */
        {-1, VM_PAUSED, -1, VM_STOPPED},  /* RUNNING */
        {-1, -1, VM_RUNNING, VM_STOPPED}, /* PAUSED */
        {-1, -1, -1, -1},                 /* STOPPED */
    };
    for (int s = 0; s < 4; s++) {
        for (int e = 0; e < 4; e++) {
            enum vm_state next = (enum vm_state)99;
            bool ok = vmstate_next((enum vm_state)s, (enum vm_event)e, &next);
            assert_int_equal(ok, expected[s][e] >= 0);
            if (ok)
                assert_int_equal(next, expected[s][e]);
        }
    }
    struct vm_status st;
    struct timespec ts = {1, 2};
    vmstatus_init(&st);
    assert_int_equal(vmstatus_apply(&st, VM_EV_PAUSE, 5, &ts), -EINVAL);
    assert_int_equal(st.state, VM_NOT_STARTED);
    assert_int_equal(vmstatus_apply(&st, VM_EV_START, 10, &ts), 0);
    assert_int_equal(vmstatus_apply(&st, VM_EV_PAUSE, 20, &ts), 0);
    assert_int_equal(st.paused_ns, 20);
    assert_int_equal(vmstatus_apply(&st, VM_EV_RESUME, 30, &ts), 0);
    assert_int_equal(st.npauses, 1);
    assert_int_equal(st.nresumes, 1);
    vmstatus_record_latency(&st, true, 7);
    vmstatus_record_latency(&st, true, 3);
    assert_int_equal(st.pause_last_us, 3);
    assert_int_equal(st.pause_max_us, 7);
    assert_string_equal(vmstate_name(VM_NOT_STARTED), "Not started");
    char buf[40];
    struct timespec t = {1795734605, 123456789};
    vmstate_format_time(&t, buf, sizeof(buf));
    assert_string_equal(buf, "2026-11-26T23:10:05.123456Z");
}

static void test_router_errors(void **state)
{
    struct fix *f = *state;
    assert_int_equal(req(f, "GET", "/nope", NULL), 404);
    assert_int_equal(req(f, "GET", "/drives/", NULL), 404);
    assert_int_equal(req(f, "GET", "/drives/a/b", NULL), 404);
    assert_int_equal(req(f, "DELETE", "/vm", NULL), 405);
    assert_string_equal(f->r.headers, "Allow: PATCH\r\n");
    assert_int_equal(req(f, "POST", "/machine-config", "{}"), 405);
    assert_string_equal(f->r.headers, "Allow: GET, PUT, PATCH\r\n");
    assert_int_equal(req(f, "GET", "/pause", NULL), 405);
    assert_int_equal(req(f, "PUT", "/machine-config", "{bad json"), 400);
    assert_non_null(strstr(fault(f), "malformed JSON"));
    assert_int_equal(req(f, "PUT", "/machine-config", ""), 400);
    assert_int_equal(req(f, "PUT", "/machine-config", "{\"vcpu_count\":1} {}"), 400);
    assert_int_equal(
        req(f, "PUT", "/machine-config", "{\"vcpu_count\":1,\"mem_size_mib\":2,\"q\":1}"), 400);
    assert_non_null(strstr(fault(f), "unknown field 'q'"));
    assert_int_equal(req(f, "PUT", "/drives/bad-id", "{}"), 400);
    assert_int_equal(req(f, "PUT", "/balloon", "{\"amount_mib\":1}"), 400);
    assert_non_null(strstr(fault(f), "not supported"));
    assert_int_equal(req(f, "PUT", "/actions", "{\"action_type\":\"Reboot\"}"), 400);
    assert_int_equal(req(f, "PUT", "/actions", "{}"), 400);
    assert_true(f->core.errors >= 10);
}

static void test_before_start(void **state)
{
    struct fix *f = *state;
    assert_int_equal(req(f, "GET", "/", NULL), 200);
    assert_string_equal(jstr(f, "state"), "Not started");
    assert_string_equal(jstr(f, "app_name"), "amber");
    assert_string_equal(jstr(f, "id"), "sbx1");
    assert_null(jstr(f, "paused_at"));
    assert_int_equal(req(f, "POST", "/pause", NULL), 400);
    assert_int_equal(req(f, "POST", "/resume", NULL), 400);
    assert_int_equal(req(f, "PATCH", "/vm", "{\"state\":\"Paused\"}"), 400);
    assert_int_equal(req(f, "PUT", "/actions", "{\"action_type\":\"SendCtrlAltDel\"}"), 400);
    assert_int_equal(req(f, "PATCH", "/drives/rootfs", "{\"drive_id\":\"rootfs\"}"), 400);
    /* InstanceStart needs a boot source. */
    assert_int_equal(req(f, "PUT", "/actions", START), 400);
    assert_int_equal(f->m.starts, 0);
    assert_int_equal(f->m.pauses, 0);
    /* A back-end failure the client caused is 400 and leaves the VM not started. */
    assert_int_equal(req(f, "PUT", "/boot-source", BOOT), 204);
    f->m.start_ret = -ENOENT;
    assert_int_equal(req(f, "PUT", "/actions", START), 400);
    assert_non_null(strstr(fault(f), "mock start failure"));
    f->m.start_ret = -ENOMEM;
    assert_int_equal(req(f, "PUT", "/actions", START), 500);
    assert_int_equal(f->core.st.state, VM_NOT_STARTED);
}

static void test_configure_and_start(void **state)
{
    struct fix *f = *state;
    assert_int_equal(req(f, "GET", "/machine-config", NULL), 200);
    assert_int_equal(req(f, "PUT", "/machine-config", "{\"vcpu_count\":2,\"mem_size_mib\":512}"),
                     204);
    assert_int_equal(f->r.body_len, 0);
    assert_int_equal(req(f, "GET", "/machine-config", NULL), 200);
    struct json_object *v;
    assert_true(json_object_object_get_ex(f->json, "vcpu_count", &v));
    assert_int_equal(json_object_get_int(v), 2);
    assert_int_equal(req(f, "PUT", "/drives/rootfs",
                         "{\"drive_id\":\"rootfs\",\"path_on_host\":\"/r.ext4\","
                         "\"is_root_device\":true,\"is_read_only\":false,\"rate_limiter\":null}"),
                     204);
    assert_int_equal(req(f, "PUT", "/network-interfaces/eth0",
                         "{\"iface_id\":\"eth0\",\"host_dev_name\":\"tap0\"}"),
                     204);
    /* PUT /vsock binds now, and again on a repeat. */
    assert_int_equal(req(f, "PUT", "/vsock", "{\"guest_cid\":3,\"uds_path\":\"/tmp/v.sock\"}"),
                     204);
    assert_int_equal(req(f, "PUT", "/vsock", "{\"guest_cid\":4,\"uds_path\":\"/tmp/w.sock\"}"),
                     204);
    assert_int_equal(f->m.binds, 2);
    assert_string_equal(f->m.bind_path, "/tmp/w.sock");
    assert_int_equal(f->cfg.vsock.cid, 4);
    assert_int_equal(req(f, "PUT", "/entropy", "{}"), 204);
    start_vm(f);
    assert_int_equal(f->m.starts, 1);
    assert_int_equal(req(f, "GET", "/", NULL), 200);
    assert_string_equal(jstr(f, "state"), "Running");
    assert_string_equal(jstr(f, "vcpus"), "2");
    /* Configuration after boot is refused. */
    assert_int_equal(req(f, "PUT", "/machine-config", "{\"vcpu_count\":1,\"mem_size_mib\":64}"),
                     400);
    assert_non_null(strstr(fault(f), "after boot"));
    assert_int_equal(req(f, "PUT", "/boot-source", BOOT), 400);
    assert_int_equal(req(f, "PUT", "/vsock", "{\"guest_cid\":3,\"uds_path\":\"/x\"}"), 400);
    assert_int_equal(req(f, "PUT", "/actions", START), 400);
    assert_int_equal(f->m.starts, 1);
    /* GET /vm/config has the Firecracker shape. */
    assert_int_equal(req(f, "GET", "/vm/config", NULL), 200);
    struct json_object *drives, *d0, *p;
    assert_true(json_object_object_get_ex(f->json, "drives", &drives));
    d0 = json_object_array_get_idx(drives, 0);
    assert_true(json_object_object_get_ex(d0, "path_on_host", &p));
    assert_string_equal(json_object_get_string(p), "/r.ext4");
    assert_true(json_object_object_get_ex(f->json, "boot-source", &p));
    assert_true(json_object_object_get_ex(f->json, "machine-config", &p));
    /* Drive swap after boot goes to the back end and updates the config. */
    assert_int_equal(req(f, "PATCH", "/drives/rootfs",
                         "{\"drive_id\":\"rootfs\",\"path_on_host\":\"/new.ext4\"}"),
                     204);
    assert_int_equal(f->m.swaps, 1);
    assert_string_equal(f->m.swap_id, "rootfs");
    assert_string_equal(f->m.swap_path, "/new.ext4");
    assert_string_equal(f->cfg.drive[0].path, "/new.ext4");
    f->m.swap_ret = -EIO;
    assert_int_equal(
        req(f, "PATCH", "/drives/rootfs", "{\"drive_id\":\"rootfs\",\"path_on_host\":\"/bad\"}"),
        500);
    assert_string_equal(f->cfg.drive[0].path, "/new.ext4");
    assert_int_equal(
        req(f, "PATCH", "/drives/other", "{\"drive_id\":\"other\",\"path_on_host\":\"/bad\"}"),
        400);
    assert_int_equal(req(f, "PATCH", "/network-interfaces/eth0",
                         "{\"iface_id\":\"eth0\",\"rx_rate_limiter\":{}}"),
                     204);
    assert_int_equal(req(f, "PUT", "/actions", "{\"action_type\":\"SendCtrlAltDel\"}"), 204);
    assert_int_equal(f->m.cads, 1);
}

/* PATCH of a drive's or interface's rate limiters after boot: every bucket field is checked
 * before the back end hears of it, and what it accepted lands in GET /vm/config. */
static void test_patch_rate_limiters(void **state)
{
    struct fix *f = *state;
    assert_int_equal(req(f, "PUT", "/drives/d1",
                         "{\"drive_id\":\"d1\",\"path_on_host\":\"/d1\",\"is_root_device\":false,"
                         "\"rate_limiter\":{\"ops\":{\"size\":100,\"refill_time\":1000}}}"),
                     204);
    assert_int_equal(f->cfg.drive[0].rl.ops.size, 100);
    assert_int_equal(req(f, "PUT", "/network-interfaces/eth0",
                         "{\"iface_id\":\"eth0\",\"host_dev_name\":\"tap0\"}"),
                     204);
    start_vm(f);
    /* Only the named bucket changes; ops stays as PUT set it. */
    assert_int_equal(req(f, "PATCH", "/drives/d1",
                         "{\"drive_id\":\"d1\",\"rate_limiter\":{\"bandwidth\":{\"size\":1048576,"
                         "\"one_time_burst\":0,\"refill_time\":1000}}}"),
                     204);
    assert_int_equal(f->m.rls, 1);
    assert_int_equal(f->m.rl_target, API_RL_DRIVE);
    assert_string_equal(f->m.rl_id, "d1");
    assert_int_equal(f->m.rl_set, RL_SET_BANDWIDTH);
    assert_int_equal(f->m.rl.bandwidth.size, 1048576);
    assert_int_equal(f->cfg.drive[0].rl.bandwidth.size, 1048576);
    assert_int_equal(f->cfg.drive[0].rl.bandwidth.refill_time_ms, 1000);
    assert_int_equal(f->cfg.drive[0].rl.ops.size, 100);
    assert_int_equal(f->m.swaps, 0);
    /* A limiter that names nothing changes nothing and calls nobody. */
    assert_int_equal(req(f, "PATCH", "/drives/d1", "{\"drive_id\":\"d1\",\"rate_limiter\":{}}"),
                     204);
    assert_int_equal(f->m.rls, 1);
    /* Interfaces: rx and tx go to their own limiter. */
    assert_int_equal(req(f, "PATCH", "/network-interfaces/eth0",
                         "{\"iface_id\":\"eth0\",\"tx_rate_limiter\":{\"ops\":{\"size\":5,"
                         "\"refill_time\":10}}}"),
                     204);
    assert_int_equal(f->m.rls, 2);
    assert_int_equal(f->m.rl_target, API_RL_NET_TX);
    assert_int_equal(f->cfg.net[0].tx_rl.ops.size, 5);
    assert_int_equal(f->cfg.net[0].rx_rl.ops.size, 0);
    /* GET /vm/config shows them. */
    assert_int_equal(req(f, "GET", "/vm/config", NULL), 200);
    struct json_object *drives, *rl, *bw, *size;
    assert_true(json_object_object_get_ex(f->json, "drives", &drives));
    assert_true(
        json_object_object_get_ex(json_object_array_get_idx(drives, 0), "rate_limiter", &rl));
    assert_true(json_object_object_get_ex(rl, "bandwidth", &bw));
    assert_true(json_object_object_get_ex(bw, "size", &size));
    assert_int_equal(json_object_get_int64(size), 1048576);
    /* Hostile values: one 400 each, naming the field, and the back end never called. */
    static const char *const bad[] = {
        "{\"drive_id\":\"d1\",\"rate_limiter\":5}",
        "{\"drive_id\":\"d1\",\"rate_limiter\":[]}",
        "{\"drive_id\":\"d1\",\"rate_limiter\":{\"bandwidth\":{\"size\":-1,\"refill_time\":1}}}",
        "{\"drive_id\":\"d1\",\"rate_limiter\":{\"bandwidth\":{\"size\":1.5,\"refill_time\":1}}}",
        "{\"drive_id\":\"d1\",\"rate_limiter\":{\"bandwidth\":{\"size\":\"1\",\"refill_time\":1}}}",
        "{\"drive_id\":\"d1\",\"rate_limiter\":{\"ops\":{\"size\":1,\"refill_time\":true}}}",
        "{\"drive_id\":\"d1\",\"rate_limiter\":{\"ops\":{\"size\":1}}}",
        "{\"drive_id\":\"d1\",\"rate_limiter\":{\"ops\":{\"refill_time\":1}}}",
        "{\"drive_id\":\"d1\",\"rate_limiter\":{\"ops\":{\"size\":1,\"refill_time\":1,\"x\":1}}}",
        "{\"drive_id\":\"d1\",\"rate_limiter\":{\"ops\":{\"size\":1,\"refill_time\":1,"
        "\"one_time_burst\":-5}}}",
        "{\"drive_id\":\"d1\",\"rate_limiter\":{\"ops\":{\"size\":18446744073709551615,"
        "\"refill_time\":1}}}",
        "{\"drive_id\":\"d1\",\"rate_limiter\":{\"ops\":{\"size\":1,\"refill_time\":3600001}}}",
        "{\"drive_id\":\"d1\",\"rate_limiter\":{\"ops\":[]}}",
        "{\"drive_id\":\"d1\",\"rate_limiter\":{\"iops\":{\"size\":1,\"refill_time\":1}}}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(req(f, "PATCH", "/drives/d1", bad[i]), 400);
        assert_non_null(strstr(fault(f), "rate_limiter"));
    }
    assert_int_equal(req(f, "PATCH", "/network-interfaces/eth0",
                         "{\"iface_id\":\"eth0\",\"rx_rate_limiter\":{\"bandwidth\":{\"size\":"
                         "1099511627777,\"refill_time\":1}}}"),
                     400);
    assert_non_null(strstr(fault(f), "rx_rate_limiter.bandwidth"));
    assert_int_equal(req(f, "PATCH", "/network-interfaces/eth9", "{\"iface_id\":\"eth9\"}"), 400);
    assert_int_equal(f->m.rls, 2);
    assert_int_equal(f->cfg.drive[0].rl.bandwidth.size, 1048576);
}

static void test_patch_vm_idempotent(void **state)
{
    struct fix *f = *state;
    start_vm(f);
    assert_int_equal(req(f, "PATCH", "/vm", "{\"state\":\"Resumed\"}"), 204);
    assert_int_equal(f->m.resumes, 0);
    assert_int_equal(req(f, "PATCH", "/vm", "{\"state\":\"Paused\"}"), 204);
    assert_int_equal(req(f, "PATCH", "/vm", "{\"state\":\"Paused\"}"), 204);
    assert_int_equal(f->m.pauses, 1);
    assert_int_equal(req(f, "GET", "/", NULL), 200);
    assert_string_equal(jstr(f, "state"), "Paused");
    assert_non_null(jstr(f, "paused_at"));
    assert_int_equal(req(f, "PUT", "/actions", "{\"action_type\":\"SendCtrlAltDel\"}"), 400);
    assert_int_equal(req(f, "PATCH", "/vm", "{\"state\":\"Resumed\"}"), 204);
    assert_int_equal(req(f, "PATCH", "/vm", "{\"state\":\"Resumed\"}"), 204);
    assert_int_equal(f->m.resumes, 1);
    assert_int_equal(req(f, "PATCH", "/vm", "{\"state\":\"Stopped\"}"), 400);
    assert_int_equal(req(f, "PATCH", "/vm", "{}"), 400);
    assert_int_equal(req(f, "PATCH", "/vm", "{\"state\":\"Paused\",\"x\":1}"), 400);
    /* A failed pause is 500 and the VM stays running. */
    f->m.pause_ret = -ETIMEDOUT;
    assert_int_equal(req(f, "PATCH", "/vm", "{\"state\":\"Paused\"}"), 500);
    assert_int_equal(f->core.st.state, VM_RUNNING);
    assert_int_equal(req(f, "POST", "/pause", NULL), 500);
    assert_int_equal(f->core.st.state, VM_RUNNING);
}

static void test_sandbox_routes(void **state)
{
    struct fix *f = *state;
    start_vm(f);
    assert_int_equal(req(f, "POST", "/resume", NULL), 409);
    assert_non_null(strstr(fault(f), "not paused"));
    assert_int_equal(req(f, "POST", "/pause", NULL), 200);
    assert_string_equal(jstr(f, "sandbox_id"), "sbx1");
    assert_string_equal(jstr(f, "paused"), "true");
    const char *at = jstr(f, "paused_at");
    assert_non_null(at);
    assert_int_equal(strlen(at), 27); /* 2026-11-29T23:10:05.123456Z */
    assert_int_equal(at[26], 'Z');
    assert_int_equal(at[19], '.');
    assert_int_equal(req(f, "POST", "/pause", NULL), 409);
    assert_string_equal(fault(f), "sandbox sbx1 is already paused");
    assert_int_equal(f->m.pauses, 1);
    assert_int_equal(f->core.st.state, VM_PAUSED);
    usleep(20000);
    assert_int_equal(req(f, "POST", "/resume", NULL), 200);
    assert_string_equal(jstr(f, "paused"), "false");
    assert_non_null(jstr(f, "resumed_at"));
    assert_true(atoi(jstr(f, "paused_ms")) >= 20);
    assert_int_equal(req(f, "GET", "/", NULL), 200);
    assert_string_equal(jstr(f, "pauses"), "1");
    /* Stopped: state changes refused. */
    api_core_event(&f->core, VM_EV_STOP);
    assert_int_equal(req(f, "POST", "/pause", NULL), 409);
    assert_int_equal(req(f, "POST", "/resume", NULL), 409);
    assert_int_equal(req(f, "PATCH", "/vm", "{\"state\":\"Paused\"}"), 400);
    assert_int_equal(req(f, "GET", "/", NULL), 200);
    assert_string_equal(jstr(f, "state"), "Stopped");
    assert_int_equal(req(f, "GET", "/version", NULL), 200);
    assert_string_equal(jstr(f, "firecracker_version"), AMBER_VERSION);
}

static double jnum(struct fix *f, const char *key)
{
    struct json_object *v;
    assert_true(json_object_object_get_ex(f->json, key, &v));
    return json_object_get_double(v);
}

/* PUT/GET /timeout: validation, and the deadline check's one action (stop, or pause). */
static void test_timeout_route(void **state)
{
    struct fix *f = *state;
    static const char *const bad[] = {
        "{}",
        "{\"timeout_s\":0}",
        "{\"timeout_s\":-1}",
        "{\"timeout_s\":\"5\"}",
        "{\"timeout_s\":1.5}",
        "{\"timeout_s\":99999999999}",
        "{\"timeout_s\":5,\"x\":1}",
        "{\"timeout_s\":5,\"on_timeout\":\"hibernate\"}",
        "[]",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(req(f, "PUT", "/timeout", bad[i]), 400);
    assert_int_equal(req(f, "GET", "/timeout", NULL), 200);
    assert_null(jstr(f, "timeout_s_left"));
    assert_string_equal(jstr(f, "on_timeout"), "kill");

    uint64_t t0 = clock_now_ms();
    assert_int_equal(req(f, "PUT", "/timeout", "{\"timeout_s\":5}"), 200);
    assert_true(jnum(f, "timeout_s_left") > 4.5 && jnum(f, "timeout_s_left") <= 5.0);
    assert_non_null(jstr(f, "deadline"));
    api_core_check_deadline(&f->core, t0 + 4000);
    assert_int_equal(f->m.stops, 0);
    api_core_check_deadline(&f->core, t0 + 6000);
    assert_int_equal(f->m.stops, 1);
    assert_non_null(strstr(f->m.stop_why, "timeout"));
    api_core_check_deadline(&f->core, t0 + 7000); /* fires once */
    assert_int_equal(f->m.stops, 1);

    start_vm(f);
    t0 = clock_now_ms();
    assert_int_equal(req(f, "PUT", "/timeout", "{\"timeout_s\":1,\"on_timeout\":\"pause\"}"), 200);
    assert_string_equal(jstr(f, "on_timeout"), "pause");
    api_core_check_deadline(&f->core, t0 + 2000);
    assert_int_equal(f->m.pauses, 1);
    assert_int_equal(f->m.stops, 1);
    assert_int_equal(f->core.st.state, VM_PAUSED);
    /* A later PUT keeps the action it does not name, and replaces the deadline. */
    assert_int_equal(req(f, "PUT", "/timeout", "{\"timeout_s\":100}"), 200);
    assert_string_equal(jstr(f, "on_timeout"), "pause");
    api_core_event(&f->core, VM_EV_STOP);
    assert_int_equal(req(f, "PUT", "/timeout", "{\"timeout_s\":5}"), 409);
}

/* PUT /boot-source and PUT /drives refuse a missing, mistyped or unreadable file at once. */
static void test_put_file_checks(void **state)
{
    struct fix *f = *state;
    f->core.check_file = api_check_file;
    char dir[] = "/tmp/amber-put-check.XXXXXX", file[64], fifo[64], ro[64], body[512];
    assert_non_null(mkdtemp(dir));
    snprintf(file, sizeof(file), "%s/vmlinux", dir);
    snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
    snprintf(ro, sizeof(ro), "%s/ro.img", dir);
    FILE *fp = fopen(file, "w");
    assert_non_null(fp);
    fclose(fp);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    fp = fopen(ro, "w");
    assert_non_null(fp);
    fclose(fp);
    chmod(ro, 0444);

    snprintf(body, sizeof(body), "{\"kernel_image_path\":\"%s/missing\"}", dir);
    assert_int_equal(req(f, "PUT", "/boot-source", body), 400);
    assert_non_null(strstr(fault(f), "kernel_image_path"));
    assert_non_null(strstr(fault(f), "No such file"));
    snprintf(body, sizeof(body), "{\"kernel_image_path\":\"%s\"}", dir);
    assert_int_equal(req(f, "PUT", "/boot-source", body), 400);
    assert_non_null(strstr(fault(f), "is a directory"));
    snprintf(body, sizeof(body), "{\"kernel_image_path\":\"%s\"}", fifo);
    assert_int_equal(req(f, "PUT", "/boot-source", body), 400);
    assert_non_null(strstr(fault(f), "not a regular file"));
    snprintf(body, sizeof(body), "{\"kernel_image_path\":\"%s\",\"initrd_path\":\"/dev/null\"}",
             file);
    assert_int_equal(req(f, "PUT", "/boot-source", body), 400);
    assert_non_null(strstr(fault(f), "initrd_path"));
    assert_string_equal(f->cfg.kernel, ""); /* nothing applied */
    snprintf(body, sizeof(body), "{\"kernel_image_path\":\"%s\"}", file);
    assert_int_equal(req(f, "PUT", "/boot-source", body), 204);
    assert_string_equal(f->cfg.kernel, file);

    snprintf(body, sizeof(body),
             "{\"drive_id\":\"d\",\"path_on_host\":\"%s/nope\",\"is_root_device\":false}", dir);
    assert_int_equal(req(f, "PUT", "/drives/d", body), 400);
    assert_non_null(strstr(fault(f), "path_on_host"));
    snprintf(body, sizeof(body),
             "{\"drive_id\":\"d\",\"path_on_host\":\"/dev/null\",\"is_root_device\":false}");
    assert_int_equal(req(f, "PUT", "/drives/d", body), 400);
    assert_non_null(strstr(fault(f), "block device"));
    if (geteuid() != 0) { /* root may write a 0444 file */
        snprintf(body, sizeof(body),
                 "{\"drive_id\":\"d\",\"path_on_host\":\"%s\",\"is_root_device\":false}", ro);
        assert_int_equal(req(f, "PUT", "/drives/d", body), 400);
    }
    snprintf(body, sizeof(body),
             "{\"drive_id\":\"d\",\"path_on_host\":\"%s\",\"is_root_device\":false,"
             "\"is_read_only\":true}",
             ro);
    assert_int_equal(req(f, "PUT", "/drives/d", body), 204);
    assert_int_equal(f->cfg.ndrives, 1);
    unlink(file);
    unlink(fifo);
    unlink(ro);
    rmdir(dir);
}

static void test_fifo_sinks(void **state)
{
    struct fix *f = *state;
    char dir[] = "/tmp/amber-api-test-XXXXXX", lp[128], mp[128], body[320];
    assert_non_null(mkdtemp(dir));
    snprintf(lp, sizeof(lp), "%s/log.fifo", dir);
    snprintf(mp, sizeof(mp), "%s/metrics.fifo", dir);
    assert_int_equal(mkfifo(lp, 0600), 0);
    assert_int_equal(mkfifo(mp, 0600), 0);
    /* Reader-less FIFOs open without blocking. */
    snprintf(body, sizeof(body), "{\"log_path\":\"%s\",\"level\":\"Info\",\"show_level\":true}",
             lp);
    assert_int_equal(req(f, "PUT", "/logger", body), 204);
    assert_int_equal(req(f, "PUT", "/actions", "{\"action_type\":\"FlushMetrics\"}"), 400);
    snprintf(body, sizeof(body), "{\"metrics_path\":\"%s\",\"emit_id\":true}", mp);
    assert_int_equal(req(f, "PUT", "/metrics", body), 204);
    int rfd = open(mp, O_RDONLY | O_NONBLOCK);
    assert_true(rfd >= 0);
    start_vm(f);
    assert_int_equal(req(f, "PUT", "/actions", "{\"action_type\":\"FlushMetrics\"}"), 204);
    char line[4096];
    ssize_t n = read(rfd, line, sizeof(line) - 1);
    assert_true(n > 0);
    line[n] = '\0';
    assert_int_equal(line[n - 1], '\n');
    struct json_object *m = json_tokener_parse(line), *v;
    assert_non_null(m);
    assert_true(json_object_object_get_ex(m, "id", &v));
    assert_string_equal(json_object_get_string(v), "sbx1");
    assert_true(json_object_object_get_ex(m, "mock", &v));
    assert_true(json_object_object_get_ex(m, "vmm", &v));
    json_object_put(m);
    close(rfd);
    /* A full FIFO drops lines instead of blocking. */
    for (int i = 0; i < 1000; i++)
        api_core_flush_metrics(&f->core);
    assert_true(f->core.metrics_dropped > 0);
    /* A path that cannot be opened is a 400 and keeps the old config. */
    assert_int_equal(req(f, "PUT", "/metrics", "{\"metrics_path\":\"/nonexistent/dir/m\"}"), 400);
    assert_string_equal(f->cfg.metrics_path, mp);
    api_core_fini(&f->core); /* detaches the logger sink before the files go */
    unlink(lp);
    unlink(mp);
    rmdir(dir);
}

/* ---- the real socket server ---- */

static int connect_to(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(fd);
        return -errno;
    }
    return fd;
}

/* Drive the loop until fd has a complete response (up to "}" or an empty 204) or timeout. */
static ssize_t pump_read(struct loop *l, int fd, char *buf, size_t cap, const char *until)
{
    size_t got = 0;
    for (int i = 0; i < 400; i++) {
        loop_run_once(l, 5);
        ssize_t n = recv(fd, buf + got, cap - got - 1, MSG_DONTWAIT);
        if (n > 0)
            got += (size_t)n;
        else if (n == 0)
            break;
        buf[got] = '\0';
        if (got && strstr(buf, until))
            break;
    }
    buf[got] = '\0';
    return (ssize_t)got;
}

static void test_server(void **state)
{
    struct fix *f = *state;
    struct loop l;
    char dir[] = "/tmp/amber-api-test-XXXXXX", path[80], err[256];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/api.sock", dir);
    assert_int_equal(loop_init(&l), 0);

    /* A stale socket (no listener) is replaced. */
    int stale = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    assert_int_equal(bind(stale, (struct sockaddr *)&sa, sizeof(sa)), 0);
    close(stale);

    struct api *api = api_create(&l, path, &f->cfg, &f->be, err, sizeof(err));
    assert_non_null(api);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);

    /* A second server on a live socket is refused. */
    assert_null(api_create(&l, path, &f->cfg, &f->be, err, sizeof(err)));
    assert_non_null(strstr(err, "in use"));

    /* A slow client sends half a request and never reads. */
    int slow = connect_to(path);
    assert_true(slow >= 0);
    assert_int_equal(send(slow, "PUT /vm HTTP/1.1\r\nContent-Le", 28, 0), 28);
    /* A greedy client pipelines requests and never reads its responses. */
    int greedy = connect_to(path);
    assert_true(greedy >= 0);
    fcntl(greedy, F_SETFL, O_NONBLOCK);

    /* 64 clients at once, each sending its request in two pieces. */
    enum { N = 64 };
    int fds[N];
    for (int i = 0; i < N; i++) {
        fds[i] = connect_to(path);
        assert_true(fds[i] >= 0);
        assert_int_equal(send(fds[i], "GET / HT", 8, 0), 8);
    }
    const char *pipelined = "GET /version HTTP/1.1\r\n\r\n";
    for (int i = 0; i < 2000; i++)
        if (send(greedy, pipelined, strlen(pipelined), MSG_DONTWAIT) < 0)
            break;
    for (int i = 0; i < 10; i++)
        loop_run_once(&l, 5);
    for (int i = 0; i < N; i++)
        assert_int_equal(send(fds[i], "TP/1.1\r\n\r\n", 10, 0), 10);
    char buf[8192];
    for (int i = 0; i < N; i++) {
        ssize_t n = pump_read(&l, fds[i], buf, sizeof(buf), "}");
        assert_true(n > 0);
        assert_non_null(strstr(buf, "HTTP/1.1 200 OK\r\n"));
        assert_non_null(strstr(buf, "\"state\":\"Not started\""));
        close(fds[i]);
    }

    /* Keep-alive, pipelining and Connection: close on one connection. */
    int c = connect_to(path);
    const char *two = "PUT /machine-config HTTP/1.1\r\nContent-Length: 35\r\n\r\n"
                      "{\"vcpu_count\":2,\"mem_size_mib\":256}"
                      "GET /nope HTTP/1.1\r\nConnection: close\r\n\r\n";
    assert_int_equal(send(c, two, strlen(two), 0), (ssize_t)strlen(two));
    ssize_t n = pump_read(&l, c, buf, sizeof(buf), "unknown path\"}");
    assert_true(n > 0);
    assert_non_null(strstr(buf, "HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 404 Not Found\r\n"));
    assert_int_equal(f->cfg.vcpus, 2);
    pump_read(&l, c, buf, sizeof(buf), "never"); /* server closes: recv returns 0 */
    assert_int_equal(recv(c, buf, 1, MSG_DONTWAIT), 0);
    close(c);

    /* A malformed request gets a 400 and the connection closes; an oversized body a 413. */
    c = connect_to(path);
    assert_true(send(c, "GET / HTTP/1.1\nX\r\n\r\n", 20, 0) == 20);
    pump_read(&l, c, buf, sizeof(buf), "}");
    assert_non_null(strstr(buf, "HTTP/1.1 400 "));
    close(c);
    c = connect_to(path);
    const char *big = "PUT /drives/x HTTP/1.1\r\nContent-Length: 70000\r\n\r\n";
    assert_true(send(c, big, strlen(big), 0) > 0);
    pump_read(&l, c, buf, sizeof(buf), "}");
    assert_non_null(strstr(buf, "HTTP/1.1 413 "));
    close(c);

    /* Idle clients are dropped by the periodic timer. */
    api_set_idle_timeout(api, 200);
    for (int i = 0; i < 300; i++)
        loop_run_once(&l, 10);
    assert_int_equal(recv(slow, buf, sizeof(buf), MSG_DONTWAIT), 0);
    close(slow);
    close(greedy);

    api_destroy(api);
    assert_int_equal(access(path, F_OK), -1); /* unlinked at shutdown */
    loop_destroy(&l);
    rmdir(dir);
}

/* Start a server on a fresh socket for the timeout tests. */
static struct api *timeout_server(struct fix *f, struct loop *l, char *dir, char *path, size_t len)
{
    char err[256];
    assert_non_null(mkdtemp(dir));
    snprintf(path, len, "%s/api.sock", dir);
    assert_int_equal(loop_init(l), 0);
    struct api *api = api_create(l, path, &f->cfg, &f->be, err, sizeof(err));
    assert_non_null(api);
    return api;
}

static int trickle_answers; /* 200 responses trickle() saw */

/* Run the loop for about ms, sending one byte of msg every step_ms while fd is open. Returns
 * true if the server closed fd (recv gives 0 or ECONNRESET, send EPIPE) within that time. */
static bool trickle(struct loop *l, int fd, const char *msg, unsigned step_ms, unsigned ms)
{
    size_t off = 0, len = strlen(msg);
    for (unsigned t = 0; t < ms; t += step_ms) {
        if (off < len && send(fd, msg + off, 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
            return true;
        off++;
        if (off == len)
            off = 0; /* the next request, byte by byte again */
        for (unsigned w = 0; w < step_ms; w += 10)
            loop_run_once(l, 10);
        char buf[512];
        ssize_t n;
        while ((n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT)) > 0) {
            buf[n] = '\0';
            for (char *p = buf; (p = strstr(p, "HTTP/1.1 200 ")); p++)
                trickle_answers++;
        }
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            return true;
    }
    return false;
}

/* One byte every 100 ms resets a 400 ms idle timeout for ever; the request deadline does not. */
static void test_trickle_request_deadline(void **state)
{
    struct fix *f = *state;
    struct loop l;
    char dir[] = "/tmp/amber-api-test-XXXXXX", path[80];
    struct api *api = timeout_server(f, &l, dir, path, sizeof(path));
    api_set_idle_timeout(api, 400);
    api_set_request_limits(api, 1500, 60000);
    int c = connect_to(path);
    assert_true(c >= 0);
    /* A head that never ends: 4 s of trickling. */
    assert_true(trickle(&l, c,
                        "GET / HTTP/1.1\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                        100, 4000));
    close(c);
    api_destroy(api);
    loop_destroy(&l);
    rmdir(dir);
}

/* Each request on its own stays under the deadline, but their heads add up past the cap. */
static void test_trickle_head_cap(void **state)
{
    struct fix *f = *state;
    struct loop l;
    char dir[] = "/tmp/amber-api-test-XXXXXX", path[80];
    struct api *api = timeout_server(f, &l, dir, path, sizeof(path));
    api_set_idle_timeout(api, 400);
    api_set_request_limits(api, 60000, 3000);
    int c = connect_to(path);
    assert_true(c >= 0);
    /* 18 bytes at 100 ms: 1.8 s a request; complete requests, answered, one after another,
     * until the second head takes the sum past 3 s (seen at the next 1 s tick, so the second
     * request may still be answered). Each head alone is under the cap: only the sum closes. */
    trickle_answers = 0;
    assert_true(trickle(&l, c, "GET / HTTP/1.1\r\n\r\n", 100, 6000));
    assert_in_range(trickle_answers, 1, 2);
    close(c);
    /* A client that sends its head at once is not touched by either bound. */
    api_set_request_limits(api, 1500, 1500);
    c = connect_to(path);
    char buf[4096];
    for (int i = 0; i < 8; i++) {
        assert_int_equal(send(c, "GET / HTTP/1.1\r\n\r\n", 18, 0), 18);
        assert_true(pump_read(&l, c, buf, sizeof(buf), "}") > 0);
        assert_non_null(strstr(buf, "HTTP/1.1 200 "));
        for (int w = 0; w < 30; w++)
            loop_run_once(&l, 10);
    }
    close(c);
    api_destroy(api);
    loop_destroy(&l);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_transition_table),
        cmocka_unit_test_setup_teardown(test_router_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_before_start, setup, teardown),
        cmocka_unit_test_setup_teardown(test_configure_and_start, setup, teardown),
        cmocka_unit_test_setup_teardown(test_patch_rate_limiters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_patch_vm_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sandbox_routes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_route, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_file_checks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fifo_sinks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trickle_request_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trickle_head_cap, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
