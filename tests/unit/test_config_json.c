/* Unit tests for configuration validation: every section, as the endpoints and --config-file
 * use them (config/sections.c, config/json.c, config/jfield.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config/json.h"
#include "config/jfield.h"

static struct vm_config *new_cfg(void)
{
    struct vm_config *c = calloc(1, sizeof(*c));
    c->vcpus = 1;
    c->mem_mib = 128;
    snprintf(c->id, sizeof(c->id), "sb1");
    return c;
}

typedef int (*section_fn)(struct vm_config *, struct json_object *, char *, size_t);

/* Run a section validator on JSON text; returns its result and leaves the message in err. */
static int run(section_fn fn, struct vm_config *cfg, const char *json, char *err)
{
    struct json_object *o = json_tokener_parse(json);
    assert_non_null(o);
    err[0] = '\0';
    int r = fn(cfg, o, err, 256);
    json_object_put(o);
    return r;
}

static int machine_put(struct vm_config *c, struct json_object *o, char *e, size_t n)
{
    return cfgjson_machine(c, o, false, e, n);
}
static int machine_patch(struct vm_config *c, struct json_object *o, char *e, size_t n)
{
    return cfgjson_machine(c, o, true, e, n);
}
static int drive_root(struct vm_config *c, struct json_object *o, char *e, size_t n)
{
    return cfgjson_drive(c, o, "rootfs", e, n);
}
static int drive_any(struct vm_config *c, struct json_object *o, char *e, size_t n)
{
    return cfgjson_drive(c, o, NULL, e, n);
}
static int net_eth0(struct vm_config *c, struct json_object *o, char *e, size_t n)
{
    return cfgjson_net(c, o, "eth0", e, n);
}
static int vsock_fn(struct vm_config *c, struct json_object *o, char *e, size_t n)
{
    return cfgjson_vsock(&c->vsock, o, e, n);
}

static void test_machine(void **state)
{
    struct vm_config *c = new_cfg();
    char err[256];
    assert_int_equal(run(machine_put, c, "{\"vcpu_count\":2,\"mem_size_mib\":512}", err), 0);
    assert_int_equal(c->vcpus, 2);
    assert_int_equal(c->mem_mib, 512);
    /* Defaults and nulls for the fields seen in the wild. */
    assert_int_equal(run(machine_put, c,
                         "{\"vcpu_count\":4,\"mem_size_mib\":256,\"smt\":false,"
                         "\"track_dirty_pages\":null,\"cpu_template\":\"None\","
                         "\"huge_pages\":\"None\"}",
                         err),
                     0);
    assert_int_equal(c->vcpus, 4);
    assert_false(c->track_dirty_pages);
    /* Dirty page tracking (Diff snapshots): PUT sets it, PATCH without it keeps it, PUT
     * without it clears it (Firecracker's default). */
    assert_int_equal(run(machine_put, c,
                         "{\"vcpu_count\":1,\"mem_size_mib\":64,\"track_dirty_pages\":true}", err),
                     0);
    assert_true(c->track_dirty_pages);
    assert_int_equal(run(machine_patch, c, "{\"vcpu_count\":2}", err), 0);
    assert_true(c->track_dirty_pages);
    assert_int_equal(run(machine_put, c, "{\"vcpu_count\":4,\"mem_size_mib\":256}", err), 0);
    assert_false(c->track_dirty_pages);
    /* Out of range, bad types, missing, unknown and unsupported: refused, cfg untouched. */
    assert_int_equal(run(machine_put, c, "{\"vcpu_count\":0,\"mem_size_mib\":512}", err), -EINVAL);
    assert_int_equal(run(machine_put, c, "{\"vcpu_count\":33,\"mem_size_mib\":512}", err), -EINVAL);
    assert_int_equal(run(machine_put, c, "{\"vcpu_count\":-1,\"mem_size_mib\":512}", err), -EINVAL);
    assert_int_equal(run(machine_put, c, "{\"vcpu_count\":2.5,\"mem_size_mib\":512}", err),
                     -EINVAL);
    assert_int_equal(run(machine_put, c, "{\"vcpu_count\":\"2\",\"mem_size_mib\":512}", err),
                     -EINVAL);
    assert_int_equal(run(machine_put, c, "{\"vcpu_count\":2,\"mem_size_mib\":0}", err), -EINVAL);
    assert_int_equal(run(machine_put, c, "{\"vcpu_count\":2}", err), -EINVAL);
    assert_non_null(strstr(err, "mem_size_mib"));
    assert_int_equal(run(machine_put, c, "{\"vcpu_count\":2,\"mem_size_mib\":64,\"foo\":1}", err),
                     -EINVAL);
    assert_non_null(strstr(err, "unknown field 'foo'"));
    assert_int_equal(
        run(machine_put, c, "{\"vcpu_count\":2,\"mem_size_mib\":64,\"smt\":true}", err), -EINVAL);
    assert_non_null(strstr(err, "'smt'"));
    assert_int_equal(
        run(machine_put, c, "{\"vcpu_count\":2,\"mem_size_mib\":64,\"cpu_template\":\"T2\"}", err),
        -EINVAL);
    assert_non_null(strstr(err, "cpu_template"));
    assert_int_equal(
        run(machine_put, c, "{\"vcpu_count\":2,\"mem_size_mib\":64,\"huge_pages\":\"2M\"}", err),
        -EINVAL);
    assert_int_equal(run(machine_put, c, "[1]", err), -EINVAL);
    assert_int_equal(c->vcpus, 4);
    assert_int_equal(c->mem_mib, 256);
    /* PATCH: partial. */
    assert_int_equal(run(machine_patch, c, "{\"mem_size_mib\":1024}", err), 0);
    assert_int_equal(c->vcpus, 4);
    assert_int_equal(c->mem_mib, 1024);
    free(c);
}

static void test_boot_source(void **state)
{
    struct vm_config *c = new_cfg();
    char err[256], cwd[4096], want[4200];
    assert_int_equal(run(cfgjson_boot_source, c,
                         "{\"kernel_image_path\":\"/k\",\"boot_args\":\"console=ttyS0\","
                         "\"initrd_path\":\"/i\"}",
                         err),
                     0);
    assert_string_equal(c->kernel, "/k");
    assert_string_equal(c->initrd, "/i");
    assert_true(c->cmdline_set);
    assert_string_equal(c->cmdline, "console=ttyS0");
    /* Relative path resolves against the working directory; nulls accepted; PUT replaces. */
    assert_int_equal(run(cfgjson_boot_source, c,
                         "{\"kernel_image_path\":\"vmlinux\",\"boot_args\":null,"
                         "\"initrd_path\":null}",
                         err),
                     0);
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    snprintf(want, sizeof(want), "%s/vmlinux", cwd);
    assert_string_equal(c->kernel, want);
    assert_string_equal(c->initrd, "");
    assert_false(c->cmdline_set);
    assert_int_equal(run(cfgjson_boot_source, c, "{\"boot_args\":\"x\"}", err), -EINVAL);
    assert_int_equal(run(cfgjson_boot_source, c, "{\"kernel_image_path\":\"\"}", err), -EINVAL);
    assert_int_equal(run(cfgjson_boot_source, c, "{\"kernel_image_path\":5}", err), -EINVAL);
    assert_int_equal(run(cfgjson_boot_source, c, "{\"kernel_image_path\":\"/k\",\"x\":1}", err),
                     -EINVAL);
    assert_int_equal(run(cfgjson_boot_source, c, "{\"kernel_image_path\":\"/a\\u0000b\"}", err),
                     -EINVAL);
    assert_string_equal(c->kernel, want);
    free(c);
}

static void test_drives(void **state)
{
    struct vm_config *c = new_cfg();
    char err[256];
    const char *d1 = "{\"drive_id\":\"d1\",\"path_on_host\":\"/d1\",\"is_root_device\":false}";
    assert_int_equal(run(drive_any, c, d1, err), 0);
    assert_int_equal(c->ndrives, 1);
    assert_false(c->drive[0].read_only); /* missing is_read_only means false */
    /* Root device goes first; nulls and the defaults seen in the wild are accepted. */
    assert_int_equal(run(drive_root, c,
                         "{\"drive_id\":\"rootfs\",\"path_on_host\":\"/r\",\"is_root_device\":true,"
                         "\"is_read_only\":true,\"partuuid\":null,\"cache_type\":\"Writeback\","
                         "\"io_engine\":\"Async\",\"rate_limiter\":{},\"socket\":null}",
                         err),
                     0);
    assert_int_equal(c->ndrives, 2);
    assert_string_equal(c->drive[0].id, "rootfs");
    assert_true(c->drive[0].root && c->drive[0].read_only && c->drive[0].cache_writeback &&
                c->drive[0].io_async);
    assert_string_equal(c->drive[1].id, "d1");
    /* Replace by id keeps the count. */
    assert_int_equal(run(drive_any, c,
                         "{\"drive_id\":\"d1\",\"path_on_host\":\"/d1b\",\"is_root_device\":false,"
                         "\"rate_limiter\":null,\"partuuid\":\"abc-1\"}",
                         err),
                     0);
    assert_int_equal(c->ndrives, 2);
    assert_string_equal(c->drive[1].path, "/d1b");
    assert_string_equal(c->drive[1].partuuid, "abc-1");
    /* Uppercase base32 id. */
    assert_int_equal(run(drive_any, c,
                         "{\"drive_id\":\"MFRGGZDFMZTWQ2LK\",\"path_on_host\":\"/z\","
                         "\"is_root_device\":false}",
                         err),
                     0);
    /* Errors. */
    const char *bad[] = {
        "{\"drive_id\":\"x\",\"path_on_host\":\"/r\",\"is_root_device\":true}", /* second root */
        "{\"drive_id\":\"a-b\",\"path_on_host\":\"/r\",\"is_root_device\":false}",
        "{\"drive_id\":\"x\",\"is_root_device\":false}",
        "{\"drive_id\":\"x\",\"path_on_host\":\"/r\"}",
        "{\"drive_id\":\"x\",\"path_on_host\":\"/r\",\"is_root_device\":\"no\"}",
        "{\"drive_id\":\"x\",\"path_on_host\":\"/r\",\"is_root_device\":false,\"bogus\":1}",
        "{\"drive_id\":\"x\",\"path_on_host\":\"/r\",\"is_root_device\":false,"
        "\"cache_type\":\"None\"}",
        "{\"drive_id\":\"x\",\"path_on_host\":\"/r\",\"is_root_device\":false,"
        "\"io_engine\":\"Uring\"}",
        "{\"drive_id\":\"x\",\"path_on_host\":\"/r\",\"is_root_device\":false,"
        "\"rate_limiter\":{\"bandwidth\":{\"size\":1}}}",
        "{\"drive_id\":\"x\",\"path_on_host\":\"/r\",\"is_root_device\":false,"
        "\"socket\":\"/s\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(run(drive_any, c, bad[i], err), -EINVAL);
        assert_true(strlen(err) > 0);
    }
    assert_int_equal(c->ndrives, 3);
    /* The path id must match. */
    assert_int_equal(run(drive_root, c, d1, err), -EINVAL);
    assert_non_null(strstr(err, "does not match"));
    /* Capacity. */
    for (int i = c->ndrives; i < CONFIG_MAX_DRIVES; i++) {
        char j[128];
        snprintf(j, sizeof(j),
                 "{\"drive_id\":\"x%d\",\"path_on_host\":\"/x\",\"is_root_device\":false}", i);
        assert_int_equal(run(drive_any, c, j, err), 0);
    }
    assert_int_equal(run(drive_any, c,
                         "{\"drive_id\":\"over\",\"path_on_host\":\"/x\",\"is_root_device\":false}",
                         err),
                     -ENOSPC);
    /* PATCH validation. */
    char path[CONFIG_PATH_MAX];
    struct rl_config rl;
    unsigned rl_set;
    struct json_object *o = json_tokener_parse("{\"drive_id\":\"d1\",\"path_on_host\":\"/new\"}");
    assert_int_equal(cfgjson_drive_patch(c, o, "d1", path, &rl, &rl_set, err, sizeof(err)), 0);
    assert_string_equal(path, "/new");
    assert_int_equal(cfgjson_drive_patch(c, o, "d2", path, &rl, &rl_set, err, sizeof(err)),
                     -EINVAL);
    json_object_put(o);
    o = json_tokener_parse("{\"drive_id\":\"nope\",\"path_on_host\":\"/new\"}");
    assert_int_equal(cfgjson_drive_patch(c, o, "nope", path, &rl, &rl_set, err, sizeof(err)),
                     -EINVAL);
    json_object_put(o);
    o = json_tokener_parse("{\"drive_id\":\"d1\",\"is_read_only\":true}");
    assert_int_equal(cfgjson_drive_patch(c, o, "d1", path, &rl, &rl_set, err, sizeof(err)),
                     -EINVAL);
    json_object_put(o);
    free(c);
}

static void test_net(void **state)
{
    struct vm_config *c = new_cfg();
    char err[256];
    assert_int_equal(run(net_eth0, c,
                         "{\"iface_id\":\"eth0\",\"host_dev_name\":\"tap0\","
                         "\"guest_mac\":\"06:00:AC:10:00:02\",\"rx_rate_limiter\":null,"
                         "\"tx_rate_limiter\":{},\"mtu\":null}",
                         err),
                     0);
    assert_int_equal(c->nnets, 1);
    assert_true(c->net[0].has_mac);
    assert_int_equal(c->net[0].mac[2], 0xac);
    const char *bad[] = {
        "{\"iface_id\":\"eth0\"}",
        "{\"iface_id\":\"eth1\",\"host_dev_name\":\"tap0\"}",
        "{\"iface_id\":\"eth0\",\"host_dev_name\":\"tap0123456789abcdef\"}",
        "{\"iface_id\":\"eth0\",\"host_dev_name\":\"tap0\",\"guest_mac\":\"06:00:ac:10:00\"}",
        "{\"iface_id\":\"eth0\",\"host_dev_name\":\"tap0\",\"guest_mac\":\"06-00-ac-10-00-02\"}",
        "{\"iface_id\":\"eth0\",\"host_dev_name\":\"tap0\",\"mtu\":1500}",
        "{\"iface_id\":\"eth0\",\"host_dev_name\":\"tap0\",\"allow_mmds_requests\":true}",
        "{\"iface_id\":\"eth0\",\"host_dev_name\":\"tap0\",\"rx_rate_limiter\":5}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_true(run(net_eth0, c, bad[i], err) < 0);
        assert_true(strlen(err) > 0);
    }
    /* Another interface on the same tap is refused (from the config file: no path id). */
    struct json_object *o =
        json_tokener_parse("{\"iface_id\":\"eth1\",\"host_dev_name\":\"tap0\"}");
    assert_int_equal(cfgjson_net(c, o, NULL, err, sizeof(err)), -EINVAL);
    json_object_put(o);
    assert_int_equal(c->nnets, 1);
    free(c);
}

static void test_vsock_entropy(void **state)
{
    struct vm_config *c = new_cfg();
    char err[256];
    assert_int_equal(
        run(vsock_fn, c, "{\"guest_cid\":3,\"uds_path\":\"v.sock\",\"vsock_id\":\"vsock0\"}", err),
        0);
    assert_true(c->vsock.enabled);
    assert_int_equal(c->vsock.cid, 3);
    assert_string_equal(c->vsock.uds_path, "v.sock");
    assert_string_equal(c->vsock.vsock_id, "vsock0");
    const char *bad[] = {
        "{\"guest_cid\":2,\"uds_path\":\"/v\"}",
        "{\"guest_cid\":4294967295,\"uds_path\":\"/v\"}",
        "{\"guest_cid\":3}",
        "{\"uds_path\":\"/v\"}",
        "{\"guest_cid\":3,\"uds_path\":\"\"}",
        "{\"guest_cid\":3,\"uds_path\":\"/v\",\"x\":null}",
        "{\"guest_cid\":\"3\",\"uds_path\":\"/v\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(run(vsock_fn, c, bad[i], err), -EINVAL);
    char longp[200];
    memset(longp, 'a', sizeof(longp));
    snprintf(longp, sizeof(longp), "{\"guest_cid\":3,\"uds_path\":\"/%0150d\"}", 1);
    assert_int_equal(run(vsock_fn, c, longp, err), -ENAMETOOLONG);
    assert_string_equal(c->vsock.uds_path, "v.sock");

    assert_int_equal(run(cfgjson_entropy, c, "{}", err), 0);
    assert_true(c->entropy);
    assert_int_equal(run(cfgjson_entropy, c, "{\"rate_limiter\":null}", err), 0);
    assert_int_equal(run(cfgjson_entropy, c,
                         "{\"rate_limiter\":{\"ops\":{\"size\":1,\"refill_time\":100}}}", err),
                     0);
    assert_int_equal(c->entropy_rl.ops.size, 1);
    assert_int_equal(c->entropy_rl.ops.refill_time_ms, 100);
    assert_int_equal(run(cfgjson_entropy, c,
                         "{\"rate_limiter\":{\"ops\":{\"size\":-1,\"refill_time\":100}}}", err),
                     -EINVAL);
    assert_non_null(strstr(err, "rate_limiter.ops"));
    assert_int_equal(c->entropy_rl.ops.size, 1); /* a refused PUT changes nothing */
    assert_int_equal(run(cfgjson_entropy, c, "{\"foo\":1}", err), -EINVAL);
    free(c);
}

/* jf_rate_limiter on {"rl": TEXT}: its return, *out and *set. */
static int parse_rl(const char *text, struct rl_config *out, unsigned *set, char *err)
{
    char doc[512];
    snprintf(doc, sizeof(doc), "{\"rl\":%s}", text);
    struct json_object *o = json_tokener_parse(doc);
    assert_non_null(o);
    int e = jf_rate_limiter(o, "rl", out, set, err, 256);
    json_object_put(o);
    return e;
}

static void test_rate_limiter(void **state)
{
    char err[256];
    struct rl_config rl;
    unsigned set;
    /* Absent, null and {} mean no limit and name no bucket. */
    struct json_object *o = json_tokener_parse("{}");
    assert_int_equal(jf_rate_limiter(o, "rl", &rl, &set, err, sizeof(err)), 0);
    json_object_put(o);
    assert_int_equal(set, 0);
    assert_int_equal(parse_rl("null", &rl, &set, err), 0);
    assert_int_equal(set, 0);
    assert_int_equal(parse_rl("{}", &rl, &set, err), 0);
    assert_int_equal(set, 0);
    assert_int_equal(parse_rl("{\"bandwidth\":null,\"ops\":null}", &rl, &set, err), 0);
    assert_int_equal(set, 0);
    /* Both buckets, every field. */
    assert_int_equal(parse_rl("{\"bandwidth\":{\"size\":1048576,\"one_time_burst\":4096,"
                              "\"refill_time\":1000},\"ops\":{\"size\":100,\"refill_time\":10}}",
                              &rl, &set, err),
                     0);
    assert_int_equal(set, RL_SET_BANDWIDTH | RL_SET_OPS);
    assert_int_equal(rl.bandwidth.size, 1048576);
    assert_int_equal(rl.bandwidth.one_time_burst, 4096);
    assert_int_equal(rl.bandwidth.refill_time_ms, 1000);
    assert_int_equal(rl.ops.size, 100);
    assert_int_equal(rl.ops.one_time_burst, 0);
    assert_int_equal(rl.ops.refill_time_ms, 10);
    /* One bucket; zeros (Firecracker's "disabled") and the bounds themselves are accepted. */
    assert_int_equal(parse_rl("{\"ops\":{\"size\":0,\"refill_time\":0}}", &rl, &set, err), 0);
    assert_int_equal(set, RL_SET_OPS);
    assert_int_equal(parse_rl("{\"bandwidth\":{\"size\":1099511627776,\"one_time_burst\":"
                              "1099511627776,\"refill_time\":3600000}}",
                              &rl, &set, err),
                     0);
    assert_int_equal(rl.bandwidth.size, CONFIG_RL_SIZE_MAX);
    /* Hostile values: each refused, naming where. */
    static const struct {
        const char *text, *names;
    } bad[] = {
        {"5", "'rl'"},
        {"\"fast\"", "'rl'"},
        {"[]", "'rl'"},
        {"true", "'rl'"},
        {"{\"iops\":{}}", "iops"},
        {"{\"bandwidth\":5}", "rl.bandwidth"},
        {"{\"bandwidth\":{}}", "size"},
        {"{\"bandwidth\":{\"size\":1}}", "refill_time"},
        {"{\"bandwidth\":{\"refill_time\":1}}", "size"},
        {"{\"bandwidth\":{\"size\":-1,\"refill_time\":1}}", "size"},
        {"{\"bandwidth\":{\"size\":1,\"refill_time\":-1}}", "refill_time"},
        {"{\"bandwidth\":{\"size\":1,\"refill_time\":1,\"one_time_burst\":-1}}", "one_time_burst"},
        {"{\"ops\":{\"size\":1.5,\"refill_time\":1}}", "size"},
        {"{\"ops\":{\"size\":1e3,\"refill_time\":1}}", "size"},
        {"{\"ops\":{\"size\":\"10\",\"refill_time\":1}}", "size"},
        {"{\"ops\":{\"size\":null,\"refill_time\":1}}", "size"},
        {"{\"ops\":{\"size\":1099511627777,\"refill_time\":1}}", "size"},
        {"{\"ops\":{\"size\":9223372036854775807,\"refill_time\":1}}", "size"},
        {"{\"ops\":{\"size\":18446744073709551615,\"refill_time\":1}}", "size"},
        {"{\"ops\":{\"size\":99999999999999999999999,\"refill_time\":1}}", "size"},
        {"{\"ops\":{\"size\":1,\"refill_time\":3600001}}", "refill_time"},
        {"{\"ops\":{\"size\":1,\"refill_time\":1,\"one_time_burst\":1099511627777}}",
         "one_time_burst"},
        {"{\"ops\":{\"size\":1,\"refill_time\":1,\"burst\":1}}", "burst"},
        {"{\"ops\":{\"size\":1,\"refill_time\":{}}}", "refill_time"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        rl.ops.size = 77;
        set = 77;
        int e = parse_rl(bad[i].text, &rl, &set, err);
        if (e != -EINVAL || !strstr(err, bad[i].names))
            fail_msg("%s: got %d '%s', wanted -EINVAL naming %s", bad[i].text, e, err,
                     bad[i].names);
        assert_int_equal(set, 0);
        assert_int_equal(rl.ops.size, 0); /* nothing half-parsed is left behind */
    }
}

static void test_rate_limiter_sections(void **state)
{
    struct vm_config *c = new_cfg();
    char err[256];
    assert_int_equal(run(drive_any, c,
                         "{\"drive_id\":\"d1\",\"path_on_host\":\"/d1\",\"is_root_device\":false,"
                         "\"rate_limiter\":{\"bandwidth\":{\"size\":1000,\"refill_time\":100}}}",
                         err),
                     0);
    assert_int_equal(c->drive[0].rl.bandwidth.size, 1000);
    assert_int_equal(run(net_eth0, c,
                         "{\"iface_id\":\"eth0\",\"host_dev_name\":\"tap0\","
                         "\"rx_rate_limiter\":{\"ops\":{\"size\":5,\"refill_time\":1}},"
                         "\"tx_rate_limiter\":{\"bandwidth\":{\"size\":6,\"refill_time\":2}}}",
                         err),
                     0);
    assert_int_equal(c->net[0].rx_rl.ops.size, 5);
    assert_int_equal(c->net[0].tx_rl.bandwidth.size, 6);
    assert_int_equal(c->net[0].tx_rl.bandwidth.refill_time_ms, 2);
    /* A refused PUT leaves the interface as it was. */
    assert_int_equal(run(net_eth0, c,
                         "{\"iface_id\":\"eth0\",\"host_dev_name\":\"tap0\","
                         "\"tx_rate_limiter\":{\"bandwidth\":{\"size\":6,\"refill_time\":0.5}}}",
                         err),
                     -EINVAL);
    assert_non_null(strstr(err, "tx_rate_limiter.bandwidth"));
    assert_int_equal(c->net[0].rx_rl.ops.size, 5);
    /* PATCH bodies: the limiter and which buckets it names. */
    struct rl_config rl[2];
    unsigned set[2];
    struct json_object *o = json_tokener_parse(
        "{\"iface_id\":\"eth0\",\"tx_rate_limiter\":{\"ops\":{\"size\":9,\"refill_time\":9}}}");
    assert_int_equal(cfgjson_net_patch(c, o, "eth0", rl, set, err, sizeof(err)), 0);
    assert_int_equal(set[0], 0);
    assert_int_equal(set[1], RL_SET_OPS);
    assert_int_equal(cfgjson_net_patch(c, o, "eth1", rl, set, err, sizeof(err)), -EINVAL);
    json_object_put(o);
    o = json_tokener_parse("{\"iface_id\":\"eth0\",\"host_dev_name\":\"tap1\"}");
    assert_int_equal(cfgjson_net_patch(c, o, "eth0", rl, set, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "host_dev_name"));
    json_object_put(o);
    /* The merge a PATCH applies: only the named bucket. */
    cfgjson_rl_merge(&c->net[0].tx_rl, &rl[1], RL_SET_OPS);
    assert_int_equal(c->net[0].tx_rl.bandwidth.size, 6);
    /* GET /vm/config (and a snapshot's configuration) carries them. */
    struct json_object *ex = config_json_export(c);
    const char *text = json_object_to_json_string_ext(ex, JSON_C_TO_STRING_PLAIN);
    assert_non_null(strstr(text, "\"rate_limiter\":{\"bandwidth\":{\"size\":1000"));
    json_object_put(ex);
    free(c);
}

static void test_logger_metrics(void **state)
{
    struct vm_config *c = new_cfg();
    char err[256];
    assert_int_equal(run(cfgjson_logger, c,
                         "{\"log_path\":\"/tmp/l.fifo\",\"level\":\"debug\",\"show_level\":true,"
                         "\"show_log_origin\":false,\"module\":null}",
                         err),
                     0);
    assert_string_equal(c->log_path, "/tmp/l.fifo");
    assert_string_equal(c->log_level, "Debug");
    assert_true(c->log_show_level);
    assert_int_equal(run(cfgjson_logger, c, "{\"level\":\"Loud\"}", err), -EINVAL);
    assert_int_equal(run(cfgjson_logger, c, "{\"module\":\"api\"}", err), -EINVAL);
    assert_int_equal(run(cfgjson_logger, c, "{\"show_level\":1}", err), -EINVAL);
    assert_string_equal(c->log_level, "Debug");

    assert_int_equal(run(cfgjson_metrics, c, "{\"metrics_path\":\"/tmp/m\",\"emit_id\":true}", err),
                     0);
    assert_string_equal(c->metrics_path, "/tmp/m");
    assert_true(c->metrics_emit_id);
    assert_int_equal(run(cfgjson_metrics, c, "{}", err), -EINVAL);
    assert_int_equal(
        run(cfgjson_metrics, c, "{\"metrics_path\":\"/m\",\"properties\":{\"a\":\"b\"}}", err),
        -EINVAL);
    assert_int_equal(run(cfgjson_metrics, c, "{\"metrics_path\":\"/m\",\"properties\":{}}", err),
                     0);
    free(c);
}

static const char good_file[] =
    "{\"boot-source\":{\"kernel_image_path\":\"/k\",\"boot_args\":\"console=ttyS0\"},"
    "\"drives\":[{\"drive_id\":\"rootfs\",\"path_on_host\":\"/r\",\"is_root_device\":true,"
    "\"is_read_only\":false}],"
    "\"machine-config\":{\"vcpu_count\":2,\"mem_size_mib\":256,\"smt\":false},"
    "\"network-interfaces\":[],\"vsock\":{\"guest_cid\":3,\"uds_path\":\"/tmp/v.sock\"},"
    "\"entropy\":{},\"logger\":null,\"metrics\":null,\"balloon\":null,\"mmds-config\":null}";

static void test_config_file(void **state)
{
    struct vm_config *c = new_cfg();
    char err[256];
    assert_int_equal(config_json_load(c, good_file, strlen(good_file), err, sizeof(err)), 0);
    assert_string_equal(c->kernel, "/k");
    assert_int_equal(c->ndrives, 1);
    assert_int_equal(c->vcpus, 2);
    assert_true(c->vsock.enabled && c->entropy);

    /* Export round-trips through the loader. */
    struct json_object *ex = config_json_export(c);
    const char *s = json_object_to_json_string(ex);
    struct vm_config *c2 = new_cfg();
    assert_int_equal(config_json_load(c2, s, strlen(s), err, sizeof(err)), 0);
    assert_string_equal(c2->drive[0].path, "/r");
    assert_int_equal(c2->mem_mib, 256);
    json_object_put(ex);

    struct {
        const char *doc;
        const char *msg;
    } bad[] = {
        {"{\"drives\":[]}", "boot-source"},
        {"{\"boot-source\":{\"kernel_image_path\":\"/k\"},\"balloon\":{\"amount_mib\":1}}",
         "balloon"},
        {"{\"boot-source\":{\"kernel_image_path\":\"/k\"},\"gpu\":{}}", "unknown field 'gpu'"},
        {"{\"boot-source\":{\"kernel_image_path\":\"/k\"},\"drives\":[{\"drive_id\":\"a\"}]}",
         "drives[0]"},
        {"{\"boot-source\":{\"kernel_image_path\":\"/k\"},\"drives\":{}}", "array"},
        {"{\"boot-source\":{\"kernel_image_path\":\"/k\"},\"machine-config\":{\"vcpu_count\":99,"
         "\"mem_size_mib\":1}}",
         "machine-config"},
        {"{\"boot-source\":{\"kernel_image_path\":\"/k\"}} x", "malformed"},
        {"{\"boot-source\":", "malformed"},
        {"[]", "object"},
        {"{\"boot-source\":{\"kernel_image_path\":\"/k\"},\"boot-source\":{"
         "\"kernel_image_path\":\"/j\"}}",
         "duplicate field"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct vm_config *c3 = new_cfg();
        assert_int_not_equal(config_json_load(c3, bad[i].doc, strlen(bad[i].doc), err, sizeof(err)),
                             0);
        if (!strstr(err, bad[i].msg))
            fail_msg("case %zu: '%s' lacks '%s'", i, err, bad[i].msg);
        free(c3);
    }
    free(c);
    free(c2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_machine),
        cmocka_unit_test(test_boot_source),
        cmocka_unit_test(test_drives),
        cmocka_unit_test(test_net),
        cmocka_unit_test(test_vsock_entropy),
        cmocka_unit_test(test_rate_limiter),
        cmocka_unit_test(test_rate_limiter_sections),
        cmocka_unit_test(test_logger_metrics),
        cmocka_unit_test(test_config_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
