/* Unit tests for PUT /snapshot/create and /snapshot/load: order rules and request checks. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/core.h"

struct mock {
    int creates, loads, load_ret, create_ret;
    struct api_snapshot_create c;
    struct api_snapshot_load l;
};

static int m_start(void *ctx, const struct vm_config *cfg, char *err, size_t n)
{
    return 0;
}
static int m_ok(void *ctx, char *err, size_t n)
{
    return 0;
}
static int m_create(void *ctx, const struct api_snapshot_create *p, char *err, size_t n)
{
    struct mock *m = ctx;
    m->creates++;
    m->c = *p;
    if (m->create_ret)
        snprintf(err, n, "a Diff snapshot needs dirty page tracking");
    return m->create_ret;
}
static int m_load(void *ctx, const struct api_snapshot_load *p, char *err, size_t n)
{
    struct mock *m = ctx;
    m->loads++;
    m->l = *p;
    if (m->load_ret)
        snprintf(err, n, "snapshot file: header checksum mismatch");
    return m->load_ret;
}

struct fix {
    struct mock m;
    struct api_backend be;
    struct vm_config cfg;
    struct api_core core;
    struct api_response r;
};

static int setup(void **state)
{
    struct fix *f = calloc(1, sizeof(*f));
    f->be = (struct api_backend){.ctx = &f->m,
                                 .start = m_start,
                                 .pause = m_ok,
                                 .resume = m_ok,
                                 .snapshot_create = m_create,
                                 .snapshot_load = m_load};
    f->cfg.vcpus = 1;
    f->cfg.mem_mib = 128;
    api_core_init(&f->core, &f->cfg, &f->be);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fix *f = *state;
    api_response_free(&f->r);
    api_core_fini(&f->core);
    free(f);
    return 0;
}

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
    api_core_route(&f->core, &hr, &f->r);
    return f->r.status;
}

static bool says(struct fix *f, const char *text)
{
    return f->r.body && strstr(f->r.body, text);
}

#define CREATE "{\"snapshot_path\":\"/s/vm.snap\",\"mem_file_path\":\"/s/vm.mem\"}"
#define LOAD                                                                                       \
    "{\"snapshot_path\":\"/s/vm.snap\",\"mem_backend\":{\"backend_type\":\"File\","                \
    "\"backend_path\":\"/s/vm.mem\"},\"resume_vm\":true}"

static void test_create_needs_a_paused_vm(void **state)
{
    struct fix *f = *state;
    assert_int_equal(req(f, "PUT", "/snapshot/create", CREATE), 400); /* not started */
    assert_int_equal(api_core_event(&f->core, VM_EV_START), 0);
    assert_int_equal(req(f, "PUT", "/snapshot/create", CREATE), 400); /* running */
    assert_true(says(f, "Paused")); /* the router: "allowed in: Paused" */
    assert_int_equal(f->m.creates, 0);
    assert_int_equal(req(f, "POST", "/pause", NULL), 200);
    assert_int_equal(req(f, "PUT", "/snapshot/create", CREATE), 204);
    assert_int_equal(f->m.creates, 1);
    assert_string_equal(f->m.c.mem_file_path, "/s/vm.mem");
    assert_false(f->m.c.fsync);
    assert_string_equal(vmstate_name(f->core.st.state), "Paused"); /* stays paused */
    assert_false(f->m.c.diff);
    assert_int_equal(req(f, "PUT", "/snapshot/create",
                         "{\"snapshot_path\":\"/a\",\"mem_file_path\":\"/b\","
                         "\"snapshot_type\":\"Diff\"}"),
                     204);
    assert_true(f->m.c.diff);
    /* The back-end refuses a Diff without dirty tracking with -EINVAL: a 400 that says so. */
    f->m.create_ret = -EINVAL;
    assert_int_equal(req(f, "PUT", "/snapshot/create",
                         "{\"snapshot_path\":\"/a\",\"mem_file_path\":\"/b\","
                         "\"snapshot_type\":\"Diff\"}"),
                     400);
    assert_true(says(f, "dirty page tracking"));
    f->m.create_ret = 0;
    assert_int_equal(req(f, "PUT", "/snapshot/create",
                         "{\"snapshot_path\":\"/a\",\"mem_file_path\":\"/b\",\"fsync\":true}"),
                     204);
    assert_true(f->m.c.fsync);
    assert_int_equal(req(f, "PUT", "/snapshot/create", "{\"snapshot_path\":\"/a\"}"), 400);
    assert_int_equal(f->m.creates, 4);
}

static void test_load_only_on_a_fresh_amber(void **state)
{
    struct fix *f = *state;
    assert_int_equal(req(f, "PUT", "/machine-config", "{\"vcpu_count\":1,\"mem_size_mib\":128}"),
                     204);
    assert_int_equal(req(f, "PUT", "/snapshot/load", LOAD), 400);
    assert_true(says(f, "fresh amber"));
    assert_int_equal(f->m.loads, 0);
}

static void test_load_runs_or_parks(void **state)
{
    struct fix *f = *state;
    assert_int_equal(req(f, "PUT", "/logger", "{\"log_path\":\"/dev/null\"}") / 100, 2);
    assert_int_equal(req(f, "PUT", "/snapshot/load",
                         "{\"snapshot_path\":\"/s/vm.snap\",\"mem_file_path\":\"/s/vm.mem\","
                         "\"network_overrides\":[{\"iface_id\":\"net0\",\"host_dev_name\":"
                         "\"tap9\"}],\"vsock_override\":{\"uds_path\":\"/r/v.sock\"}}"),
                     204);
    assert_int_equal(f->m.loads, 1);
    assert_false(f->m.l.resume_vm);
    assert_true(f->m.l.clock_realtime); /* amber's default */
    assert_false(f->m.l.track_dirty_pages);
    assert_int_equal(f->m.l.nnet_overrides, 1);
    assert_string_equal(f->m.l.net_overrides[0].host_dev_name, "tap9");
    assert_string_equal(f->m.l.vsock_uds_path, "/r/v.sock");
    assert_string_equal(vmstate_name(f->core.st.state), "Paused");
    /* A second load into the same process is refused. */
    assert_int_equal(req(f, "PUT", "/snapshot/load", LOAD), 400);
    assert_int_equal(f->m.loads, 1);
}

static void test_load_tracks_dirty_pages(void **state)
{
    struct fix *f = *state;
    assert_int_equal(req(f, "PUT", "/snapshot/load",
                         "{\"snapshot_path\":\"/a\",\"mem_file_path\":\"/m\","
                         "\"track_dirty_pages\":true}"),
                     204);
    assert_true(f->m.l.track_dirty_pages);
}

static void test_load_refusals(void **state)
{
    struct fix *f = *state;
    assert_int_equal(req(f, "PUT", "/snapshot/load",
                         "{\"snapshot_path\":\"/a\",\"mem_backend\":{\"backend_type\":\"Uffd\","
                         "\"backend_path\":\"/u.sock\"}}"),
                     400);
    assert_true(says(f, "Uffd"));
    assert_int_equal(req(f, "PUT", "/snapshot/load",
                         "{\"snapshot_path\":\"/a\",\"mem_file_path\":\"/m\","
                         "\"mem_backend\":{\"backend_type\":\"File\",\"backend_path\":\"/m\"}}"),
                     400);
    assert_int_equal(req(f, "PUT", "/snapshot/load", "{\"snapshot_path\":\"/a\"}"), 400);
    assert_int_equal(req(f, "PUT", "/snapshot/load",
                         "{\"snapshot_path\":\"/a\",\"mem_file_path\":\"/m\","
                         "\"network_overrides\":[{\"iface_id\":\"n\",\"host_dev_name\":\"a/b\"}]}"),
                     400);
    assert_int_equal(f->m.loads, 0);
    /* A file that fails its checks is the client's problem: 400, and amber is still fresh. */
    f->m.load_ret = -EBADMSG;
    assert_int_equal(req(f, "PUT", "/snapshot/load", LOAD), 400);
    assert_true(says(f, "checksum"));
    assert_string_equal(vmstate_name(f->core.st.state), "Not started");
}

/* amber's own overrides for clones: a drive's file and the vsock guest CID. */
static void test_load_clone_overrides(void **state)
{
    struct fix *f = *state;
    assert_int_equal(req(f, "PUT", "/snapshot/load",
                         "{\"snapshot_path\":\"/a\",\"mem_file_path\":\"/m\","
                         "\"vsock_override\":{\"uds_path\":\"/r/v.sock\",\"guest_cid\":77},"
                         "\"drive_overrides\":[{\"drive_id\":\"drive0\",\"path_on_host\":"
                         "\"/c/root.ext4\"}]}"),
                     204);
    assert_int_equal(f->m.l.vsock_guest_cid, 77);
    assert_int_equal(f->m.l.ndrive_overrides, 1);
    assert_string_equal(f->m.l.drive_overrides[0].drive_id, "drive0");
    assert_string_equal(f->m.l.drive_overrides[0].path_on_host, "/c/root.ext4");
}

static void test_load_clone_override_refusals(void **state)
{
    struct fix *f = *state;
    static const char *const bad[] = {
        "\"vsock_override\":{\"uds_path\":\"/v\",\"guest_cid\":2}",
        "\"vsock_override\":{\"uds_path\":\"/v\",\"guest_cid\":4294967295}",
        "\"vsock_override\":{\"uds_path\":\"/v\",\"guest_cid\":\"9\"}",
        "\"drive_overrides\":{}",
        "\"drive_overrides\":[{\"drive_id\":\"a b\",\"path_on_host\":\"/x\"}]",
        "\"drive_overrides\":[{\"drive_id\":\"d\",\"path_on_host\":\"\"}]",
        "\"drive_overrides\":[{\"drive_id\":\"d\"}]",
        "\"drive_overrides\":[{\"drive_id\":\"d\",\"path_on_host\":\"/x\",\"z\":1}]",
        "\"drive_overrides\":[{\"drive_id\":\"d\",\"path_on_host\":\"/x\"},"
        "{\"drive_id\":\"d\",\"path_on_host\":\"/y\"}]",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char body[512];
        snprintf(body, sizeof(body), "{\"snapshot_path\":\"/a\",\"mem_file_path\":\"/m\",%s}",
                 bad[i]);
        assert_int_equal(req(f, "PUT", "/snapshot/load", body), 400);
    }
    /* Seventeen drives is one more than a VM can have. */
    char body[2048] = "{\"snapshot_path\":\"/a\",\"mem_file_path\":\"/m\",\"drive_overrides\":[";
    for (int i = 0; i < 17; i++)
        snprintf(body + strlen(body), sizeof(body) - strlen(body),
                 "%s{\"drive_id\":\"d%d\",\"path_on_host\":\"/x\"}", i ? "," : "", i);
    strcat(body, "]}");
    assert_int_equal(req(f, "PUT", "/snapshot/load", body), 400);
    assert_true(says(f, "at most 16"));
    assert_int_equal(f->m.loads, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_needs_a_paused_vm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_only_on_a_fresh_amber, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_runs_or_parks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_tracks_dirty_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_clone_overrides, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_clone_override_refusals, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
