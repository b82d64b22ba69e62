/* --config-file loading (Firecracker's JSON shape) and the GET /vm/config / GET /machine-config
 * exporters. The per-section validators live in config_sections.c. */
#include "config/json.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "config/jfield.h"

/* Sections Firecracker defines that amber does not implement: accepted only when null. */
static const char *const unsupported_sections[] = {
    "balloon", "cpu-config", "mmds-config", "pmem", "memory-hotplug", "serial", NULL};

/* Run fn on every element of the array cfgdoc[key]; prefix errors with "key[i]: ". */
static int load_array(struct vm_config *cfg, struct json_object *doc, const char *key,
                      int (*fn)(struct vm_config *, struct json_object *, const char *, char *,
                                size_t),
                      char *err, size_t errlen)
{
    struct json_object *arr = NULL;
    if (!json_object_object_get_ex(doc, key, &arr) || !arr)
        return 0;
    if (!json_object_is_type(arr, json_type_array)) {
        snprintf(err, errlen, "'%s' must be an array", key);
        return -EINVAL;
    }
    for (size_t i = 0; i < json_object_array_length(arr); i++) {
        char e[256];
        int r = fn(cfg, json_object_array_get_idx(arr, i), NULL, e, sizeof(e));
        if (r) {
            snprintf(err, errlen, "%s[%zu]: %s", key, i, e);
            return r;
        }
    }
    return 0;
}

static struct json_object *section(struct json_object *doc, const char *key)
{
    struct json_object *v = NULL;
    json_object_object_get_ex(doc, key, &v);
    return v;
}

static int load_doc(struct vm_config *cfg, struct json_object *doc, char *err, size_t errlen)
{
    static const char *const known[] = {"boot-source",
                                        "drives",
                                        "machine-config",
                                        "network-interfaces",
                                        "vsock",
                                        "entropy",
                                        "logger",
                                        "metrics",
                                        "balloon",
                                        "cpu-config",
                                        "mmds-config",
                                        "pmem",
                                        "memory-hotplug",
                                        "serial",
                                        NULL};
    char e[256];
    int r;
    if ((r = jf_object(doc, "the configuration", err, errlen)) ||
        (r = jf_known(doc, known, err, errlen)))
        return r;
    for (const char *const *k = unsupported_sections; *k; k++) {
        if (section(doc, *k)) {
            snprintf(err, errlen, "section '%s' is not supported by amber (only null)", *k);
            return -EINVAL;
        }
    }
    struct json_object *v;
#define SECTION(name, call)                                                                        \
    if ((v = section(doc, name)) && (r = (call))) {                                                \
        snprintf(err, errlen, "%s: %s", name, e);                                                  \
        return r;                                                                                  \
    }
    if (!section(doc, "boot-source")) {
        snprintf(err, errlen, "missing required section 'boot-source'");
        return -EINVAL;
    }
    SECTION("boot-source", cfgjson_boot_source(cfg, v, e, sizeof(e)));
    SECTION("machine-config", cfgjson_machine(cfg, v, false, e, sizeof(e)));
    SECTION("entropy", cfgjson_entropy(cfg, v, e, sizeof(e)));
    SECTION("logger", cfgjson_logger(cfg, v, e, sizeof(e)));
    SECTION("metrics", cfgjson_metrics(cfg, v, e, sizeof(e)));
    SECTION("vsock", cfgjson_vsock(&cfg->vsock, v, e, sizeof(e)));
#undef SECTION
    if ((r = load_array(cfg, doc, "drives", cfgjson_drive, err, errlen)) ||
        (r = load_array(cfg, doc, "network-interfaces", cfgjson_net, err, errlen)))
        return r;
    return 0;
}

int config_json_load(struct vm_config *cfg, const char *text, size_t len, char *err, size_t errlen)
{
    struct json_object *doc = jf_parse(text, len, err, errlen);
    if (!doc)
        return -EINVAL;
    int r = load_doc(cfg, doc, err, errlen);
    json_object_put(doc);
    return r;
}

static void add_str(struct json_object *o, const char *key, const char *s)
{
    json_object_object_add(o, key, json_object_new_string(s));
}

struct json_object *config_json_machine(const struct vm_config *cfg)
{
    struct json_object *m = json_object_new_object();
    json_object_object_add(m, "vcpu_count", json_object_new_int64(cfg->vcpus));
    json_object_object_add(m, "mem_size_mib", json_object_new_int64((int64_t)cfg->mem_mib));
    json_object_object_add(m, "smt", json_object_new_boolean(0));
    json_object_object_add(m, "track_dirty_pages", json_object_new_boolean(cfg->track_dirty_pages));
    add_str(m, "huge_pages", "None");
    return m;
}

/* A rate limiter as Firecracker's RateLimiter, or NULL (JSON null) for none. */
static struct json_object *export_rl(const struct rl_config *rl)
{
    const struct tb_config *tb[2] = {&rl->bandwidth, &rl->ops};
    static const char *const names[2] = {"bandwidth", "ops"};
    struct json_object *o = NULL;
    for (int i = 0; i < 2; i++) {
        if (tb[i]->size == 0 || tb[i]->refill_time_ms == 0)
            continue;
        struct json_object *b = json_object_new_object();
        json_object_object_add(b, "size", json_object_new_int64((int64_t)tb[i]->size));
        json_object_object_add(b, "one_time_burst",
                               json_object_new_int64((int64_t)tb[i]->one_time_burst));
        json_object_object_add(b, "refill_time",
                               json_object_new_int64((int64_t)tb[i]->refill_time_ms));
        if (!o)
            o = json_object_new_object();
        json_object_object_add(o, names[i], b);
    }
    return o;
}

static struct json_object *export_drive(const struct drive_config *d)
{
    struct json_object *o = json_object_new_object();
    add_str(o, "drive_id", d->id);
    add_str(o, "path_on_host", d->path);
    json_object_object_add(o, "is_root_device", json_object_new_boolean(d->root));
    json_object_object_add(o, "is_read_only", json_object_new_boolean(d->read_only));
    json_object_object_add(o, "partuuid",
                           d->partuuid[0] ? json_object_new_string(d->partuuid) : NULL);
    add_str(o, "cache_type", d->cache_writeback ? "Writeback" : "Unsafe");
    add_str(o, "io_engine", d->io_async ? "Async" : "Sync");
    json_object_object_add(o, "rate_limiter", export_rl(&d->rl));
    return o;
}

static struct json_object *export_net(const struct net_config *n)
{
    struct json_object *o = json_object_new_object();
    add_str(o, "iface_id", n->id);
    add_str(o, "host_dev_name", n->tap);
    if (n->has_mac) {
        char mac[18];
        snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", n->mac[0], n->mac[1], n->mac[2],
                 n->mac[3], n->mac[4], n->mac[5]);
        add_str(o, "guest_mac", mac);
    }
    json_object_object_add(o, "rx_rate_limiter", export_rl(&n->rx_rl));
    json_object_object_add(o, "tx_rate_limiter", export_rl(&n->tx_rl));
    return o;
}

struct json_object *config_json_export(const struct vm_config *cfg)
{
    struct json_object *o = json_object_new_object();
    struct json_object *boot = NULL;
    if (cfg->kernel[0]) {
        boot = json_object_new_object();
        add_str(boot, "kernel_image_path", cfg->kernel);
        if (cfg->cmdline_set)
            add_str(boot, "boot_args", cfg->cmdline);
        if (cfg->initrd[0])
            add_str(boot, "initrd_path", cfg->initrd);
    }
    json_object_object_add(o, "boot-source", boot);
    json_object_object_add(o, "machine-config", config_json_machine(cfg));

    struct json_object *drives = json_object_new_array();
    for (unsigned i = 0; i < cfg->ndrives && i < CONFIG_MAX_DRIVES; i++)
        json_object_array_add(drives, export_drive(&cfg->drive[i]));
    json_object_object_add(o, "drives", drives);

    struct json_object *nets = json_object_new_array();
    for (unsigned i = 0; i < cfg->nnets && i < CONFIG_MAX_NETS; i++)
        json_object_array_add(nets, export_net(&cfg->net[i]));
    json_object_object_add(o, "network-interfaces", nets);

    struct json_object *vsock = NULL;
    if (cfg->vsock.enabled) {
        vsock = json_object_new_object();
        json_object_object_add(vsock, "guest_cid", json_object_new_int64(cfg->vsock.cid));
        add_str(vsock, "uds_path", cfg->vsock.uds_path);
        if (cfg->vsock.vsock_id[0])
            add_str(vsock, "vsock_id", cfg->vsock.vsock_id);
    }
    json_object_object_add(o, "vsock", vsock);
    struct json_object *entropy = NULL;
    if (cfg->entropy) {
        entropy = json_object_new_object();
        struct json_object *rl = export_rl(&cfg->entropy_rl);
        if (rl)
            json_object_object_add(entropy, "rate_limiter", rl);
    }
    json_object_object_add(o, "entropy", entropy);

    struct json_object *logger = NULL;
    if (cfg->log_path[0] || cfg->log_level[0]) {
        logger = json_object_new_object();
        if (cfg->log_path[0])
            add_str(logger, "log_path", cfg->log_path);
        add_str(logger, "level", cfg->log_level[0] ? cfg->log_level : "Info");
        json_object_object_add(logger, "show_level", json_object_new_boolean(cfg->log_show_level));
        json_object_object_add(logger, "show_log_origin",
                               json_object_new_boolean(cfg->log_show_origin));
    }
    json_object_object_add(o, "logger", logger);

    struct json_object *metrics = NULL;
    if (cfg->metrics_path[0]) {
        metrics = json_object_new_object();
        add_str(metrics, "metrics_path", cfg->metrics_path);
        json_object_object_add(metrics, "emit_id", json_object_new_boolean(cfg->metrics_emit_id));
    }
    json_object_object_add(o, "metrics", metrics);
    json_object_object_add(o, "balloon", NULL);
    json_object_object_add(o, "mmds-config", NULL);
    return o;
}
