/* Firecracker API fidelity: one table row per refusal Firecracker makes (route, body, status,
 * words of the fault_message), run in order through the router before boot (docs/api.md). */
#include <errno.h>
#include <fcntl.h>
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

struct row {
    const char *method, *path;
    const char *body; /* ' stands for ", DIR for the scratch directory; NULL: no body */
    int status;
    const char *words; /* in the fault_message; NULL for a success */
};

static int m_start(void *ctx, const struct vm_config *cfg, char *err, size_t n)
{
    return 0;
}

static int m_pause(void *ctx, char *err, size_t n)
{
    return 0;
}

/* Metrics and log sinks never touch a real path here. */
static int open_null(const char *path)
{
    int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

struct fix {
    struct vm_config cfg;
    struct api_backend be;
    struct api_core core;
    char dir[64];
};

static int setup(void **state)
{
    struct fix *f = calloc(1, sizeof(*f));
    f->be.start = m_start;
    f->be.pause = m_pause;
    f->cfg.vcpus = 1;
    f->cfg.mem_mib = 128;
    snprintf(f->cfg.id, sizeof(f->cfg.id), "fc");
    api_core_init(&f->core, &f->cfg, &f->be);
    f->core.open_sink = open_null;
    f->core.check_file = NULL; /* the schema rows name files that do not exist */
    snprintf(f->dir, sizeof(f->dir), "/tmp/amber-fc.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fix *f = *state;
    char cmd[128];
    api_core_fini(&f->core);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* body with ' turned into " and DIR into dir, into out[cap]. */
static void expand(const char *body, const char *dir, char *out, size_t cap)
{
    size_t n = 0;
    for (const char *s = body; *s && n + 1 < cap; s++) {
        if (strncmp(s, "DIR", 3) == 0) {
            n += (size_t)snprintf(out + n, cap - n, "%s", dir);
            s += 2;
        } else {
            out[n++] = *s == '\'' ? '"' : *s;
        }
    }
    out[n < cap ? n : cap - 1] = '\0';
}

/* Send one row; print it and return false when the answer differs. */
static bool run_row(struct fix *f, const struct row *w, unsigned i)
{
    static char body[8192], raw[9000];
    expand(w->body ? w->body : "", f->dir, body, sizeof(body));
    int n = snprintf(raw, sizeof(raw), "%s %s HTTP/1.1\r\nContent-Length: %zu\r\n\r\n%s", w->method,
                     w->path, strlen(body), body);
    struct http_parser p;
    struct http_request hr;
    struct api_response r;
    http_parser_reset(&p);
    assert_int_equal(http_parse(&p, raw, (size_t)n, &hr), n);
    api_core_route(&f->core, &hr, &r);
    struct json_object *j = r.body ? json_tokener_parse(r.body) : NULL, *fm = NULL;
    const char *msg =
        json_object_object_get_ex(j, "fault_message", &fm) ? json_object_get_string(fm) : "";
    bool ok = r.status == w->status && (r.status < 400) == !fm &&
              (!w->words || strstr(msg, w->words) != NULL);
    if (!ok)
        print_error("row %u: %s %s %s: want %d '%s', got %d '%s'\n", i, w->method, w->path, body,
                    w->status, w->words ? w->words : "", r.status, msg);
    json_object_put(j);
    api_response_free(&r);
    return ok;
}

static void run_table(struct fix *f, const struct row *rows, size_t n)
{
    unsigned bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += !run_row(f, &rows[i], (unsigned)i);
    assert_int_equal(bad, 0);
}

#define DRIVE(id, extra) "{'drive_id':'" id "','path_on_host':'/d.img'," extra "}"
#define NOT_AMBER        "not supported by amber"

/* Request bodies and routes, in the order the swagger lists the objects. */
static const struct row schema_rows[] = {
    /* Any object: a field given twice (json-c alone would keep the last). */
    {"PUT", "/snapshot/load",
     "{'snapshot_path':'/s','mem_backend':{'backend_type':'File','backend_path':'/m',"
     "'backend_type':'Uffd'}}",
     400, "duplicate field in the JSON object at byte 36"},
    {"PUT", "/snapshot/load",
     "{'snapshot_path':'/s','mem_file_path':'/m','network_overrides':[{'iface_id':'a',"
     "'host_dev_name':'t'},{'iface_id':'b','host_dev_name':'t','iface_id':'c'}]}",
     400, "duplicate field in the JSON object at byte 101"},
    {"PUT", "/machine-config", "{'vcpu_count':1,'mem_size_mib':128,'vcpu_count':2}", 400,
     "duplicate field in the JSON object at byte 0"},
    {"PUT", "/machine-config", "{'vcpu_count':1,'mem_size_mib':{'a':1},'mem_size_mib':64}", 400,
     "duplicate field"},
    /* Snapshot load first: any configuration PUT makes it refused. No back end: 500 after
     * validation means the body passed. */
    {"PUT", "/snapshot/load", "{'snapshot_path':'/s','mem_backend':{'backend_path':'/m'}}", 400,
     "missing required field 'mem_backend.backend_type'"},
    {"PUT", "/snapshot/load", "{'snapshot_path':'/s'}", 400, "exactly one of"},
    {"PUT", "/snapshot/load",
     "{'snapshot_path':'/s','mem_file_path':'/m','mem_backend':{'backend_type':'File',"
     "'backend_path':'/m'}}",
     400, "exactly one of"},
    {"PUT", "/snapshot/load", "{'mem_file_path':'/m'}", 400, "missing required field"},
    {"PUT", "/snapshot/load", "{'snapshot_path':'/s','mem_file_path':'/m','huge_pages':'2M'}", 400,
     NOT_AMBER},
    {"PUT", "/snapshot/load", "{'snapshot_path':'/s','mem_file_path':'/m','huge_pages':'4M'}", 400,
     "unsupported value '4M'"},
    {"PUT", "/snapshot/load", "{'snapshot_path':'/s','mem_file_path':'/m','huge_pages':false}", 400,
     "must be a string"},
    {"PUT", "/snapshot/load", "{'snapshot_path':'/s','mem_file_path':'/m','huge_pages':'Snapshot'}",
     500, "not implemented"},
    {"PUT", "/snapshot/load", "{'snapshot_path':'/s','mem_file_path':'/m','resume_vm':1}", 400,
     "must be a boolean"},
    {"PUT", "/snapshot/create", "{'snapshot_path':'/s','mem_file_path':'/m'}", 400,
     "not supported in VM state Not started"},

    /* MachineConfiguration */
    {"PUT", "/machine-config", "{'mem_size_mib':128}", 400, "missing required field 'vcpu_count'"},
    {"PUT", "/machine-config", "{'vcpu_count':1}", 400, "missing required field 'mem_size_mib'"},
    {"PUT", "/machine-config", "{'vcpu_count':0,'mem_size_mib':128}", 400, "between 1 and 32"},
    {"PUT", "/machine-config", "{'vcpu_count':33,'mem_size_mib':128}", 400, "between 1 and 32"},
    {"PUT", "/machine-config", "{'vcpu_count':'2','mem_size_mib':128}", 400, "must be an integer"},
    {"PUT", "/machine-config", "{'vcpu_count':1.5,'mem_size_mib':128}", 400, "must be an integer"},
    {"PUT", "/machine-config", "{'vcpu_count':1,'mem_size_mib':0}", 400, "between 16"},
    {"PUT", "/machine-config", "{'vcpu_count':1,'mem_size_mib':8}", 400, "between 16"},
    {"PUT", "/machine-config", "{'vcpu_count':1,'mem_size_mib':-1}", 400, "between 16"},
    {"PUT", "/machine-config", "{'vcpu_count':1,'mem_size_mib':128,'smt':true}", 400, NOT_AMBER},
    {"PUT", "/machine-config", "{'vcpu_count':1,'mem_size_mib':128,'smt':'no'}", 400,
     "must be a boolean"},
    {"PUT", "/machine-config", "{'vcpu_count':1,'mem_size_mib':128,'cpu_template':false}", 400,
     "must be a string"},
    {"PUT", "/machine-config", "{'vcpu_count':1,'mem_size_mib':128,'cpu_template':'T9'}", 400,
     "unsupported value 'T9'"},
    {"PUT", "/machine-config", "{'vcpu_count':1,'mem_size_mib':128,'cpu_template':'T2'}", 400,
     NOT_AMBER},
    {"PUT", "/machine-config", "{'vcpu_count':1,'mem_size_mib':128,'huge_pages':{}}", 400,
     "must be a string"},
    {"PUT", "/machine-config", "{'vcpu_count':1,'mem_size_mib':128,'huge_pages':'2M'}", 400,
     NOT_AMBER},
    {"PUT", "/machine-config", "{'vcpu_count':1,'mem_size_mib':128,'huge_pages':'1G'}", 400,
     "unsupported value '1G'"},
    {"PUT", "/machine-config", "{'vcpu_count':1,'mem_size_mib':128,'gdb':1}", 400,
     "unknown field 'gdb'"},
    {"PUT", "/machine-config",
     "{'vcpu_count':2,'mem_size_mib':16,'cpu_template':'None','huge_pages':'None'}", 204, NULL},
    {"PATCH", "/machine-config", "{}", 400, "at least one field"},
    {"PATCH", "/machine-config", "{'vcpu_count':null}", 400, "at least one field"},
    {"PATCH", "/machine-config", "{'mem_size_mib':15}", 400, "between 16"},
    {"PATCH", "/machine-config", "{'track_dirty_pages':true}", 204, NULL},

    /* BootSource */
    {"PUT", "/boot-source", "{'boot_args':'console=ttyS0'}", 400,
     "missing required field 'kernel_image_path'"},
    {"PUT", "/boot-source", "{'kernel_image_path':7}", 400, "must be a string"},
    {"PUT", "/boot-source", "{'kernel_image_path':''}", 400, "must not be empty"},
    {"PUT", "/boot-source", "{'kernel_image_path':'/k','boot_args':'a\\nb'}", 400,
     "printable ASCII (byte 0x0a at offset 1)"},
    {"PUT", "/boot-source", "{'kernel_image_path':'/k','boot_args':'caf\\u00e9'}", 400,
     "printable ASCII"},
    {"PUT", "/boot-source", "{'kernel_image_path':'/k','boot_args':'\\t'}", 400, "printable ASCII"},
    {"PUT", "/boot-source", "{'kernel_image_path':'/k','initrd_path':false}", 400,
     "must be a string"},
    {"PUT", "/boot-source", "{'kernel_image_path':'/k','initrd':'/i'}", 400,
     "unknown field 'initrd'"},
    {"PUT", "/boot-source", "{'kernel_image_path':'/k','boot_args':'console=ttyS0 ro ~'}", 204,
     NULL},
    /* Quotes, colons and braces inside strings are not keys. */
    {"PUT", "/boot-source", "{'kernel_image_path':'/k','boot_args':'a\\':x'}", 204, NULL},
    {"PUT", "/boot-source",
     "{'kernel_image_path':'/k\\\\','boot_args':'a:b \\'c\\': {d} \\'kernel_image_path\\':'}", 204,
     NULL},

    /* Drive */
    {"PUT", "/drives/d1", "{'drive_id':'d1','path_on_host':'/d.img'}", 400,
     "missing required field 'is_root_device'"},
    {"PUT", "/drives/d1", "{'path_on_host':'/d.img','is_root_device':false}", 400,
     "missing required field 'drive_id'"},
    {"PUT", "/drives/d1", DRIVE("d2", "'is_root_device':false"), 400, "does not match"},
    {"PUT", "/drives/d-1", DRIVE("d-1", "'is_root_device':false"), 400, "invalid id in path"},
    {"PUT", "/drives/d1", DRIVE("d1", "'is_root_device':'no'"), 400, "must be a boolean"},
    {"PUT", "/drives/d1", DRIVE("d1", "'is_root_device':false,'is_read_only':1"), 400,
     "must be a boolean"},
    {"PUT", "/drives/d1", DRIVE("d1", "'is_root_device':false,'cache_type':'unsafe'"), 400,
     "unsupported value 'unsafe'"},
    {"PUT", "/drives/d1", DRIVE("d1", "'is_root_device':false,'io_engine':'Uring'"), 400,
     "unsupported value 'Uring'"},
    {"PUT", "/drives/d1", DRIVE("d1", "'is_root_device':false,'partuuid':5"), 400,
     "must be a string"},
    {"PUT", "/drives/d1", DRIVE("d1", "'is_root_device':false,'socket':false"), 400,
     "must be a string"},
    {"PUT", "/drives/d1", DRIVE("d1", "'is_root_device':false,'socket':'/vhost.sock'"), 400,
     NOT_AMBER},
    {"PUT", "/drives/d1", "{'drive_id':'d1','is_root_device':false}", 400,
     "missing required field 'path_on_host'"},
    {"PUT", "/drives/d1", DRIVE("d1", "'is_root_device':true"), 204, NULL},
    {"PUT", "/drives/d2", DRIVE("d2", "'is_root_device':true"), 400, "already the root device"},

    /* NetworkInterface */
    {"PUT", "/network-interfaces/eth0", "{'iface_id':'eth0'}", 400,
     "missing required field 'host_dev_name'"},
    {"PUT", "/network-interfaces/eth0", "{'iface_id':'eth0','host_dev_name':'tap0','mtu':false}",
     400, "must be an integer"},
    {"PUT", "/network-interfaces/eth0", "{'iface_id':'eth0','host_dev_name':'tap0','mtu':67}", 400,
     "between 68 and 65535"},
    {"PUT", "/network-interfaces/eth0", "{'iface_id':'eth0','host_dev_name':'tap0','mtu':65536}",
     400, "between 68 and 65535"},
    {"PUT", "/network-interfaces/eth0", "{'iface_id':'eth0','host_dev_name':'tap0','mtu':1500}",
     400, NOT_AMBER},
    {"PUT", "/network-interfaces/eth0",
     "{'iface_id':'eth0','host_dev_name':'tap0','guest_mac':'-1:00:00:00:00:00'}", 400,
     "guest_mac"},
    {"PUT", "/network-interfaces/eth0",
     "{'iface_id':'eth0','host_dev_name':'tap0','guest_mac':' 1:00:00:00:00:00'}", 400,
     "guest_mac"},
    {"PUT", "/network-interfaces/eth0",
     "{'iface_id':'eth0','host_dev_name':'tap0','guest_mac':'06:00:00:00:00:0g'}", 400,
     "guest_mac"},
    {"PUT", "/network-interfaces/eth0",
     "{'iface_id':'eth0','host_dev_name':'tap0','guest_mac':'06:00:AC:10:00:02'}", 204, NULL},
    {"PUT", "/network-interfaces/eth1",
     "{'iface_id':'eth1','host_dev_name':'tap1','guest_mac':'06:00:ac:10:00:02'}", 400,
     "already used by 'eth0'"},
    {"PUT", "/network-interfaces/eth1", "{'iface_id':'eth1','host_dev_name':'tap0'}", 400,
     "already used by 'eth0'"},
    {"PUT", "/network-interfaces/eth1", "{'iface_id':'eth0','host_dev_name':'tap1'}", 400,
     "does not match"},
    {"PUT", "/network-interfaces/eth1", "{'iface_id':'eth1','host_dev_name':'tap_name_16_byte'}",
     400, "'host_dev_name' is too long"},
    {"PUT", "/network-interfaces/eth1", "{'iface_id':'eth1','host_dev_name':'../tap'}", 400,
     "not a valid interface name"},
    {"PATCH", "/network-interfaces/eth0", "{'iface_id':'eth0'}", 400,
     "not supported in VM state Not started"},

    /* Vsock */
    {"PUT", "/vsock", "{'guest_cid':2,'uds_path':'/v.sock'}", 400, "between 3"},
    {"PUT", "/vsock", "{'guest_cid':4294967295,'uds_path':'/v.sock'}", 400, "between 3"},
    {"PUT", "/vsock", "{'guest_cid':'3','uds_path':'/v.sock'}", 400, "must be an integer"},
    {"PUT", "/vsock", "{'guest_cid':3}", 400, "missing required field 'uds_path'"},
    {"PUT", "/vsock", "{'uds_path':'/v.sock'}", 400, "missing required field 'guest_cid'"},

    /* EntropyDevice: only a rate limiter (its shape is tested with the limiters). */
    {"PUT", "/entropy", "{'rng':1}", 400, "unknown field 'rng'"},
    {"PUT", "/entropy", "[]", 400, "must be a JSON object"},

    /* Logger */
    {"PUT", "/logger", "{'level':'Verbose'}", 400, "unsupported value 'Verbose'"},
    {"PUT", "/logger", "{'show_level':'yes'}", 400, "must be a boolean"},
    {"PUT", "/logger", "{'module':5}", 400, "must be a string"},
    {"PUT", "/logger", "{'module':'api_server'}", 400, NOT_AMBER},
    {"PUT", "/logger", "{'level':'debug','show_log_origin':true}", 204, NULL},

    /* Metrics */
    {"PUT", "/metrics", "{}", 400, "missing required field 'metrics_path'"},
    {"PUT", "/metrics", "{'metrics_path':'/m','properties':[]}", 400, "object of strings"},
    {"PUT", "/metrics", "{'metrics_path':'/m','properties':{'a':1}}", 400, "object of strings"},
    {"PUT", "/metrics", "{'metrics_path':'/m','properties':{'a':'b'}}", 400, NOT_AMBER},
    {"PUT", "/metrics", "{'metrics_path':'/m','emit_id':'x'}", 400, "must be a boolean"},
    {"PUT", "/metrics", "{'metrics_path':'/m','properties':{}}", 204, NULL},
    {"PUT", "/metrics", "{'metrics_path':'/m2'}", 400, "already configured"},

    /* InstanceActionInfo and Vm */
    {"PUT", "/actions", "{}", 400, "missing required field 'action_type'"},
    {"PUT", "/actions", "{'action_type':'instancestart'}", 400, "unsupported value"},
    {"PUT", "/actions", "{'action_type':1}", 400, "must be a string"},
    {"PUT", "/actions", "{'action_type':'SendCtrlAltDel'}", 400, "needs a running VM"},
    {"PATCH", "/vm", "{'state':'Paused'}", 400, "not supported in VM state Not started"},
    {"PATCH", "/drives/d1", "{'drive_id':'d1'}", 400, "not supported in VM state Not started"},
};

/* Routes after boot: PATCH bodies (PartialDrive, PartialNetworkInterface, Vm). */
static const struct row booted_rows[] = {
    {"PUT", "/actions", "{'action_type':'InstanceStart'}", 204, NULL},
    {"PUT", "/actions", "{'action_type':'InstanceStart'}", 400, "already started"},
    {"PATCH", "/vm", "{}", 400, "missing required field 'state'"},
    {"PATCH", "/vm", "{'state':'paused'}", 400, "unsupported value 'paused'"},
    {"PATCH", "/drives/d1", "{'path_on_host':'/x'}", 400, "missing required field 'drive_id'"},
    {"PATCH", "/drives/d1", "{'drive_id':'d1','is_read_only':true}", 400,
     "unknown field 'is_read_only'"},
    {"PATCH", "/drives/d1", "{'drive_id':'d2','path_on_host':'/x'}", 400, "does not match"},
    {"PATCH", "/drives/d1", "{'drive_id':'d1','path_on_host':true}", 400, "must be a string"},
    {"PATCH", "/drives/d1", "{'drive_id':'d1'}", 204, NULL},
    {"PATCH", "/drives/d9", "{'drive_id':'d9'}", 400, "no drive with id 'd9'"},
    {"PATCH", "/network-interfaces/eth0", "{}", 400, "missing required field 'iface_id'"},
    {"PATCH", "/network-interfaces/eth0", "{'iface_id':'eth0','host_dev_name':'tap1'}", 400,
     "unknown field 'host_dev_name'"},
    {"PATCH", "/network-interfaces/eth9", "{'iface_id':'eth9'}", 400, "no network interface"},
    {"PUT", "/snapshot/create", "{'snapshot_path':'/s'}", 400, "not supported in VM state Running"},
    {"PATCH", "/vm", "{'state':'Paused'}", 204, NULL},
    /* SnapshotCreateParams; no back end, so 500 after validation means the body passed. */
    {"PUT", "/snapshot/create", "{'snapshot_path':'/s'}", 400,
     "missing required field 'mem_file_path'"},
    {"PUT", "/snapshot/create", "{'mem_file_path':'/m'}", 400,
     "missing required field 'snapshot_path'"},
    {"PUT", "/snapshot/create",
     "{'snapshot_path':'/s','mem_file_path':'/m','snapshot_type':'full'}", 400,
     "unsupported value 'full'"},
    {"PUT", "/snapshot/create", "{'snapshot_path':'/s','mem_file_path':'/m','compress':true}", 400,
     "unknown field 'compress'"},
    {"PUT", "/snapshot/create",
     "{'snapshot_path':'/s','mem_file_path':'/m','snapshot_type':'Full'}", 500, "not implemented"},
};

static void test_schema(void **state)
{
    struct fix *f = *state;
    run_table(f, schema_rows, sizeof(schema_rows) / sizeof(schema_rows[0]));
    run_table(f, booted_rows, sizeof(booted_rows) / sizeof(booted_rows[0]));
}

/* Every Firecracker path amber does not implement, with each of its methods: 400 saying so. */
static const struct row unimplemented_rows[] = {
    {"GET", "/balloon", NULL, 400, "/balloon is not supported by amber"},
    {"PUT", "/balloon", "{'amount_mib':1,'deflate_on_oom':true}", 400, "/balloon is not"},
    {"PATCH", "/balloon", "{'amount_mib':1}", 400, "/balloon is not"},
    {"GET", "/balloon/statistics", NULL, 400, "/balloon is not"},
    {"PATCH", "/balloon/statistics", "{'stats_polling_interval_s':1}", 400, "/balloon is not"},
    {"PATCH", "/balloon/hinting/start", "{}", 400, "/balloon is not"},
    {"GET", "/balloon/hinting/status", NULL, 400, "/balloon is not"},
    {"PATCH", "/balloon/hinting/stop", "{}", 400, "/balloon is not"},
    {"PUT", "/cpu-config", "{}", 400, "/cpu-config is not supported by amber"},
    {"PUT", "/pmem/p0", "{'id':'p0','path_on_host':'/p'}", 400, "/pmem is not"},
    {"PATCH", "/pmem/p0", "{'id':'p0'}", 400, "/pmem is not"},
    {"PUT", "/pmem", "{}", 400, "/pmem is not"},
    {"GET", "/mmds", NULL, 400, "/mmds is not"},
    {"PUT", "/mmds", "{}", 400, "/mmds is not"},
    {"PATCH", "/mmds", "{}", 400, "/mmds is not"},
    {"PUT", "/mmds/config", "{'network_interfaces':[]}", 400, "/mmds is not"},
    {"PUT", "/serial", "{}", 400, "/serial is not"},
    {"GET", "/hotplug/memory", NULL, 400, "/hotplug is not"},
    {"PUT", "/hotplug/memory", "{}", 400, "/hotplug is not"},
    {"PATCH", "/hotplug/memory", "{}", 400, "/hotplug is not"},
    {"PUT", "/snapshot/restore", "{}", 400, "/snapshot is not"},
    {"PUT", "/snapshot", "{}", 400, "/snapshot is not"},
    {"GET", "/balloons", NULL, 404, "unknown path"},
    {"GET", "/serialx", NULL, 404, "unknown path"},
};

static void test_unimplemented_routes(void **state)
{
    struct fix *f = *state;
    run_table(f, unimplemented_rows, sizeof(unimplemented_rows) / sizeof(unimplemented_rows[0]));
}

/* PUT-time file checks on kernel, initrd and drive: missing, a directory, a FIFO, a character
 * device, a path through a regular file. DIR/f is a regular file. */
static const struct row file_rows[] = {
    {"PUT", "/boot-source", "{'kernel_image_path':'DIR/none'}", 400, "No such file"},
    {"PUT", "/boot-source", "{'kernel_image_path':'DIR'}", 400, "is a directory"},
    {"PUT", "/boot-source", "{'kernel_image_path':'DIR/fifo'}", 400, "not a regular file"},
    {"PUT", "/boot-source", "{'kernel_image_path':'/dev/null'}", 400, "not a regular file"},
    {"PUT", "/boot-source", "{'kernel_image_path':'DIR/f/x'}", 400, "Not a directory"},
    {"PUT", "/boot-source", "{'kernel_image_path':'DIR/f','initrd_path':'DIR/none'}", 400,
     "initrd_path"},
    {"PUT", "/boot-source", "{'kernel_image_path':'DIR/f','initrd_path':'DIR'}", 400,
     "is a directory"},
    {"PUT", "/boot-source", "{'kernel_image_path':'DIR/f','initrd_path':'DIR/fifo'}", 400,
     "not a regular file"},
    {"PUT", "/boot-source", "{'kernel_image_path':'DIR/f','initrd_path':'DIR/f'}", 204, NULL},
    {"PUT", "/drives/d", "{'drive_id':'d','path_on_host':'DIR/none','is_root_device':false}", 400,
     "No such file"},
    {"PUT", "/drives/d", "{'drive_id':'d','path_on_host':'DIR','is_root_device':false}", 400,
     "is a directory"},
    {"PUT", "/drives/d", "{'drive_id':'d','path_on_host':'DIR/fifo','is_root_device':false}", 400,
     "not a regular file or a block device"},
    {"PUT", "/drives/d",
     "{'drive_id':'d','path_on_host':'/dev/null','is_root_device':false,'is_read_only':true}", 400,
     "not a regular file or a block device"},
    {"PUT", "/drives/d", "{'drive_id':'d','path_on_host':'DIR/f/x','is_root_device':false}", 400,
     "Not a directory"},
    {"PUT", "/drives/d", "{'drive_id':'d','path_on_host':'DIR/f','is_root_device':false}", 204,
     NULL},
};

static void make_file(const char *dir, const char *name, mode_t mode)
{
    char p[128];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    int fd = open(p, O_CREAT | O_WRONLY | O_CLOEXEC, mode);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(chmod(p, mode), 0);
}

static void test_file_checks(void **state)
{
    struct fix *f = *state;
    char fifo[128];
    f->core.check_file = api_check_file;
    make_file(f->dir, "f", 0644);
    snprintf(fifo, sizeof(fifo), "%s/fifo", f->dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    run_table(f, file_rows, sizeof(file_rows) / sizeof(file_rows[0]));
    assert_int_equal(f->cfg.ndrives, 1); /* only the good PUT applied */
}

/* A file that exists but cannot be opened (read, or read-write for a writable drive). Root
 * opens anything, so as root the check runs in a child that has become nobody. */
static const struct row unreadable_rows[] = {
    {"PUT", "/boot-source", "{'kernel_image_path':'DIR/secret'}", 400,
     "cannot be opened for reading: Permission denied"},
    {"PUT", "/boot-source", "{'kernel_image_path':'DIR/ro','initrd_path':'DIR/secret'}", 400,
     "initrd_path"},
    {"PUT", "/drives/d", "{'drive_id':'d','path_on_host':'DIR/ro','is_root_device':false}", 400,
     "cannot be opened for reading and writing"},
    {"PUT", "/drives/d",
     "{'drive_id':'d','path_on_host':'DIR/secret','is_root_device':false,'is_read_only':true}", 400,
     "cannot be opened for reading"},
    {"PUT", "/drives/d",
     "{'drive_id':'d','path_on_host':'DIR/ro','is_root_device':false,'is_read_only':true}", 204,
     NULL},
};

static void test_unopenable_files(void **state)
{
    struct fix *f = *state;
    f->core.check_file = api_check_file;
    make_file(f->dir, "secret", 0600);
    make_file(f->dir, "ro", 0444);
    assert_int_equal(chmod(f->dir, 0755), 0);
    if (geteuid() != 0) {
        run_table(f, unreadable_rows, sizeof(unreadable_rows) / sizeof(unreadable_rows[0]));
        return;
    }
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (setgid(65534) || setuid(65534))
            _exit(3);
        unsigned bad = 0;
        for (size_t i = 0; i < sizeof(unreadable_rows) / sizeof(unreadable_rows[0]); i++)
            bad += !run_row(f, &unreadable_rows[i], (unsigned)i);
        _exit(bad ? 1 : 0);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_schema, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unimplemented_routes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_checks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unopenable_files, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
