/* Validators for each Firecracker configuration section, shared by the endpoints and
 * --config-file: every check happens before cfg changes. */
#include "config/json.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "config/jfield.h"

#define TRY(x)                                                                                     \
    do {                                                                                           \
        int e_ = (x);                                                                              \
        if (e_)                                                                                    \
            return e_;                                                                             \
    } while (0)

static int copy_str(char *dst, size_t cap, const char *s, const char *field, char *err,
                    size_t errlen)
{
    size_t n = strlen(s);
    if (n >= cap) {
        snprintf(err, errlen, "field '%s' is too long (max %zu bytes)", field, cap - 1);
        return -ENAMETOOLONG;
    }
    memcpy(dst, s, n + 1);
    return 0;
}

/* True when o has a key whose value is not null (a PATCH that changes something). */
static bool has_value(struct json_object *o)
{
    json_object_object_foreach(o, key, val)
    {
        (void)key;
        if (val)
            return true;
    }
    return false;
}

/* A string field amber does not implement: a string (Firecracker's type), and then only null. */
static int unsupported_str(struct json_object *o, const char *key, char *err, size_t errlen)
{
    const char *s;
    TRY(jf_str(o, key, false, &s, err, errlen));
    return jf_unsupported(o, key, NULL, err, errlen);
}

/* Kernel command lines are printable ASCII (what Firecracker's command-line builder accepts). */
static int check_boot_args(const char *args, size_t cap, char *err, size_t errlen)
{
    for (const char *c = args; *c; c++) {
        if (*c < ' ' || *c > '~') {
            snprintf(err, errlen,
                     "field 'boot_args' must be printable ASCII (byte 0x%02x at offset %zu)",
                     (unsigned char)*c, (size_t)(c - args));
            return -EINVAL;
        }
    }
    if (strlen(args) >= cap) {
        snprintf(err, errlen, "field 'boot_args' is too long (max %zu bytes)", cap - 1);
        return -EINVAL;
    }
    return 0;
}

/* A boolean amber supports only as false. */
static int false_only(struct json_object *o, const char *key, char *err, size_t errlen)
{
    bool v;
    TRY(jf_bool(o, key, false, false, &v, err, errlen));
    if (v) {
        snprintf(err, errlen, "field '%s' is not supported by amber (only false)", key);
        return -EINVAL;
    }
    return 0;
}

int cfgjson_machine(struct vm_config *cfg, struct json_object *o, bool partial, char *err,
                    size_t errlen)
{
    static const char *const known[] = {"vcpu_count",   "mem_size_mib", "smt", "track_dirty_pages",
                                        "cpu_template", "huge_pages",   NULL};
    /* Firecracker's CPU templates and huge-page modes; amber implements the first of each. */
    static const char *const templates[] = {"None", "C3", "T2", "T2S", "T2CL", "T2A", "V1N1", NULL};
    static const char *const huge[] = {"None", "Transparent", "2M", NULL};
    TRY(jf_object(o, "machine-config", err, errlen));
    TRY(jf_known(o, known, err, errlen));
    if (partial && !has_value(o)) {
        snprintf(err, errlen, "PATCH /machine-config needs at least one field to change");
        return -EINVAL;
    }
    bool has_vcpus, has_mem;
    uint64_t vcpus, mem;
    TRY(jf_uint(o, "vcpu_count", !partial, 1, CONFIG_MAX_VCPUS, &has_vcpus, &vcpus, err, errlen));
    /* amber's floor (CONFIG_MIN_MEM_MIB), checked now rather than at InstanceStart. */
    TRY(jf_uint(o, "mem_size_mib", !partial, CONFIG_MIN_MEM_MIB, CONFIG_MEM_MIB_MAX, &has_mem, &mem,
                err, errlen));
    TRY(false_only(o, "smt", err, errlen));
    bool dirty; /* PUT sets every field (missing: false); PATCH keeps what is not given */
    TRY(jf_bool(o, "track_dirty_pages", false, partial && cfg->track_dirty_pages, &dirty, err,
                errlen));
    TRY(jf_enum_subset(o, "cpu_template", templates, 1, err, errlen));
    TRY(jf_enum_subset(o, "huge_pages", huge, 1, err, errlen));
    if (has_vcpus)
        cfg->vcpus = (unsigned)vcpus;
    if (has_mem)
        cfg->mem_mib = mem;
    cfg->track_dirty_pages = dirty;
    return 0;
}

int cfgjson_boot_source(struct vm_config *cfg, struct json_object *o, char *err, size_t errlen)
{
    static const char *const known[] = {"kernel_image_path", "boot_args", "initrd_path", NULL};
    TRY(jf_object(o, "boot-source", err, errlen));
    TRY(jf_known(o, known, err, errlen));
    const char *kernel, *args, *initrd;
    TRY(jf_str(o, "kernel_image_path", true, &kernel, err, errlen));
    TRY(jf_str(o, "boot_args", false, &args, err, errlen));
    TRY(jf_str(o, "initrd_path", false, &initrd, err, errlen));
    char kpath[CONFIG_PATH_MAX], ipath[CONFIG_PATH_MAX] = "";
    TRY(jf_path(kernel, "kernel_image_path", kpath, sizeof(kpath), err, errlen));
    if (initrd)
        TRY(jf_path(initrd, "initrd_path", ipath, sizeof(ipath), err, errlen));
    if (args)
        TRY(check_boot_args(args, sizeof(cfg->cmdline), err, errlen));
    memcpy(cfg->kernel, kpath, sizeof(kpath));
    memcpy(cfg->initrd, ipath, sizeof(ipath));
    cfg->cmdline_set = args != NULL;
    snprintf(cfg->cmdline, sizeof(cfg->cmdline), "%s", args ? args : "");
    return 0;
}

static int check_path_id(const char *field, const char *id, const char *path_id, char *err,
                         size_t errlen)
{
    if (!jf_valid_id(id)) {
        snprintf(err, errlen, "field '%s' must match [A-Za-z0-9_]{1,64}", field);
        return -EINVAL;
    }
    if (path_id && strcmp(id, path_id) != 0) {
        snprintf(err, errlen, "field '%s' ('%s') does not match the id in the path", field, id);
        return -EINVAL;
    }
    return 0;
}

int cfgjson_drive(struct vm_config *cfg, struct json_object *o, const char *path_id, char *err,
                  size_t errlen)
{
    static const char *const known[] = {
        "drive_id",     "partuuid",     "is_root_device", "cache_type", "is_read_only",
        "path_on_host", "rate_limiter", "io_engine",      "socket",     NULL};
    static const char *const caches[] = {"Unsafe", "Writeback", NULL};
    static const char *const engines[] = {"Sync", "Async", NULL};
    TRY(jf_object(o, "drive", err, errlen));
    TRY(jf_known(o, known, err, errlen));
    struct drive_config d;
    memset(&d, 0, sizeof(d));
    const char *id, *path, *partuuid;
    int cache, engine;
    TRY(jf_str(o, "drive_id", true, &id, err, errlen));
    TRY(check_path_id("drive_id", id, path_id, err, errlen));
    TRY(jf_bool(o, "is_root_device", true, false, &d.root, err, errlen));
    TRY(jf_bool(o, "is_read_only", false, false, &d.read_only, err, errlen));
    TRY(jf_str(o, "path_on_host", true, &path, err, errlen));
    TRY(jf_str(o, "partuuid", false, &partuuid, err, errlen));
    TRY(jf_enum(o, "cache_type", caches, 0, false, &cache, err, errlen));
    TRY(jf_enum(o, "io_engine", engines, 0, false, &engine, err, errlen));
    unsigned rl_set;
    TRY(jf_rate_limiter(o, "rate_limiter", &d.rl, &rl_set, err, errlen));
    TRY(unsupported_str(o, "socket", err, errlen));
    TRY(jf_path(path, "path_on_host", d.path, sizeof(d.path), err, errlen));
    if (partuuid)
        TRY(copy_str(d.partuuid, sizeof(d.partuuid), partuuid, "partuuid", err, errlen));
    snprintf(d.id, sizeof(d.id), "%s", id);
    d.cache_writeback = cache == 1;
    d.io_async = engine == 1;

    unsigned idx = cfg->ndrives;
    for (unsigned i = 0; i < cfg->ndrives; i++) {
        if (strcmp(cfg->drive[i].id, id) == 0)
            idx = i;
        else if (d.root && cfg->drive[i].root) {
            snprintf(err, errlen, "drive '%s' is already the root device", cfg->drive[i].id);
            return -EINVAL;
        }
    }
    if (idx == cfg->ndrives) {
        if (cfg->ndrives >= CONFIG_MAX_DRIVES) {
            snprintf(err, errlen, "too many drives (at most %d)", CONFIG_MAX_DRIVES);
            return -ENOSPC;
        }
        cfg->ndrives++;
    } else if (cfg->drive[idx].root && !d.root) {
        /* No longer root: move it to the end, after the others. */
        memmove(&cfg->drive[idx], &cfg->drive[idx + 1],
                (cfg->ndrives - idx - 1) * sizeof(cfg->drive[0]));
        idx = cfg->ndrives - 1;
    }
    if (d.root && idx != 0) { /* the root device is vda: keep it first */
        memmove(&cfg->drive[1], &cfg->drive[0], idx * sizeof(cfg->drive[0]));
        idx = 0;
    }
    cfg->drive[idx] = d;
    return 0;
}

int cfgjson_drive_patch(const struct vm_config *cfg, struct json_object *o, const char *path_id,
                        char *new_path, struct rl_config *rl, unsigned *rl_set, char *err,
                        size_t errlen)
{
    static const char *const known[] = {"drive_id", "path_on_host", "rate_limiter", NULL};
    TRY(jf_object(o, "drive", err, errlen));
    TRY(jf_known(o, known, err, errlen));
    const char *id, *path;
    TRY(jf_str(o, "drive_id", true, &id, err, errlen));
    TRY(check_path_id("drive_id", id, path_id, err, errlen));
    TRY(jf_str(o, "path_on_host", false, &path, err, errlen));
    TRY(jf_rate_limiter(o, "rate_limiter", rl, rl_set, err, errlen));
    bool found = false;
    for (unsigned i = 0; i < cfg->ndrives; i++)
        found |= strcmp(cfg->drive[i].id, id) == 0;
    if (!found) {
        snprintf(err, errlen, "no drive with id '%s'", id);
        return -EINVAL;
    }
    new_path[0] = '\0';
    if (path)
        TRY(jf_path(path, "path_on_host", new_path, CONFIG_PATH_MAX, err, errlen));
    return 0;
}

static int parse_mac(const char *s, uint8_t mac[6])
{
    unsigned v[6];
    if (strlen(s) != 17)
        return -EINVAL;
    for (int i = 0; i < 17; i++) /* sscanf alone would take signs and spaces */
        if (i % 3 == 2 ? s[i] != ':' : !isxdigit((unsigned char)s[i]))
            return -EINVAL;
    if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6)
        return -EINVAL;
    for (int i = 0; i < 6; i++)
        mac[i] = (uint8_t)v[i];
    return 0;
}

int cfgjson_net(struct vm_config *cfg, struct json_object *o, const char *path_id, char *err,
                size_t errlen)
{
    static const char *const known[] = {"iface_id",        "host_dev_name",   "guest_mac", "mtu",
                                        "rx_rate_limiter", "tx_rate_limiter", NULL};
    TRY(jf_object(o, "network interface", err, errlen));
    TRY(jf_known(o, known, err, errlen));
    struct net_config n;
    memset(&n, 0, sizeof(n));
    const char *id, *tap, *mac;
    TRY(jf_str(o, "iface_id", true, &id, err, errlen));
    TRY(check_path_id("iface_id", id, path_id, err, errlen));
    TRY(jf_str(o, "host_dev_name", true, &tap, err, errlen));
    TRY(jf_str(o, "guest_mac", false, &mac, err, errlen));
    bool has_mtu;
    uint64_t mtu;
    TRY(jf_uint(o, "mtu", false, 68, 65535, &has_mtu, &mtu, err, errlen));
    TRY(jf_unsupported(o, "mtu", NULL, err, errlen));
    unsigned rl_set;
    TRY(jf_rate_limiter(o, "rx_rate_limiter", &n.rx_rl, &rl_set, err, errlen));
    TRY(jf_rate_limiter(o, "tx_rate_limiter", &n.tx_rl, &rl_set, err, errlen));
    if (!tap[0] || strchr(tap, '/')) {
        snprintf(err, errlen, "field 'host_dev_name' is not a valid interface name");
        return -EINVAL;
    }
    TRY(copy_str(n.tap, sizeof(n.tap), tap, "host_dev_name", err, errlen));
    if (mac) {
        if (parse_mac(mac, n.mac)) {
            snprintf(err, errlen, "field 'guest_mac' must look like 06:00:ac:10:00:02");
            return -EINVAL;
        }
        n.has_mac = true;
    }
    snprintf(n.id, sizeof(n.id), "%s", id);

    unsigned idx = cfg->nnets;
    for (unsigned i = 0; i < cfg->nnets; i++) {
        if (strcmp(cfg->net[i].id, id) == 0) {
            idx = i;
        } else if (strcmp(cfg->net[i].tap, n.tap) == 0) {
            snprintf(err, errlen, "host_dev_name '%s' is already used by '%s'", n.tap,
                     cfg->net[i].id);
            return -EINVAL;
        } else if (n.has_mac && cfg->net[i].has_mac && !memcmp(n.mac, cfg->net[i].mac, 6)) {
            snprintf(err, errlen, "guest_mac '%s' is already used by '%s'", mac, cfg->net[i].id);
            return -EINVAL;
        }
    }
    if (idx == cfg->nnets) {
        if (cfg->nnets >= CONFIG_MAX_NETS) {
            snprintf(err, errlen, "too many network interfaces (at most %d)", CONFIG_MAX_NETS);
            return -ENOSPC;
        }
        cfg->nnets++;
    }
    cfg->net[idx] = n;
    return 0;
}

int cfgjson_net_patch(const struct vm_config *cfg, struct json_object *o, const char *path_id,
                      struct rl_config rl[2], unsigned rl_set[2], char *err, size_t errlen)
{
    static const char *const known[] = {"iface_id", "rx_rate_limiter", "tx_rate_limiter", NULL};
    TRY(jf_object(o, "network interface", err, errlen));
    TRY(jf_known(o, known, err, errlen));
    const char *id;
    TRY(jf_str(o, "iface_id", true, &id, err, errlen));
    TRY(check_path_id("iface_id", id, path_id, err, errlen));
    TRY(jf_rate_limiter(o, "rx_rate_limiter", &rl[0], &rl_set[0], err, errlen));
    TRY(jf_rate_limiter(o, "tx_rate_limiter", &rl[1], &rl_set[1], err, errlen));
    for (unsigned i = 0; i < cfg->nnets; i++)
        if (strcmp(cfg->net[i].id, id) == 0)
            return 0;
    snprintf(err, errlen, "no network interface with id '%s'", id);
    return -EINVAL;
}

void cfgjson_rl_merge(struct rl_config *dst, const struct rl_config *src, unsigned set)
{
    if (set & RL_SET_BANDWIDTH)
        dst->bandwidth = src->bandwidth;
    if (set & RL_SET_OPS)
        dst->ops = src->ops;
}

int cfgjson_vsock(struct vsock_config *out, struct json_object *o, char *err, size_t errlen)
{
    static const char *const known[] = {"guest_cid", "uds_path", "vsock_id", NULL};
    TRY(jf_object(o, "vsock", err, errlen));
    TRY(jf_known(o, known, err, errlen));
    struct vsock_config v;
    memset(&v, 0, sizeof(v));
    bool has;
    uint64_t cid;
    const char *uds, *vid;
    TRY(jf_uint(o, "guest_cid", true, 3, 0xfffffffeu, &has, &cid, err, errlen));
    TRY(jf_str(o, "uds_path", true, &uds, err, errlen));
    TRY(jf_str(o, "vsock_id", false, &vid, err, errlen));
    if (!uds[0]) {
        snprintf(err, errlen, "field 'uds_path' must not be empty");
        return -EINVAL;
    }
    /* Kept as given (relative to the working directory): sun_path is short. */
    TRY(copy_str(v.uds_path, sizeof(v.uds_path), uds, "uds_path", err, errlen));
    if (vid)
        TRY(copy_str(v.vsock_id, sizeof(v.vsock_id), vid, "vsock_id", err, errlen));
    v.cid = (uint32_t)cid;
    v.enabled = true;
    *out = v;
    return 0;
}

int cfgjson_entropy(struct vm_config *cfg, struct json_object *o, char *err, size_t errlen)
{
    static const char *const known[] = {"rate_limiter", NULL};
    TRY(jf_object(o, "entropy", err, errlen));
    TRY(jf_known(o, known, err, errlen));
    struct rl_config rl;
    unsigned rl_set;
    TRY(jf_rate_limiter(o, "rate_limiter", &rl, &rl_set, err, errlen));
    cfg->entropy = true;
    cfg->entropy_rl = rl;
    return 0;
}

int cfgjson_logger(struct vm_config *cfg, struct json_object *o, char *err, size_t errlen)
{
    static const char *const known[] = {"log_path",        "level",  "show_level",
                                        "show_log_origin", "module", NULL};
    static const char *const levels[] = {"Error", "Warning", "Info", "Debug", "Trace", "Off", NULL};
    TRY(jf_object(o, "logger", err, errlen));
    TRY(jf_known(o, known, err, errlen));
    const char *path;
    int level;
    bool show_level, show_origin;
    TRY(jf_str(o, "log_path", false, &path, err, errlen));
    TRY(jf_enum(o, "level", levels, 2, true, &level, err, errlen));
    TRY(jf_bool(o, "show_level", false, false, &show_level, err, errlen));
    TRY(jf_bool(o, "show_log_origin", false, false, &show_origin, err, errlen));
    TRY(unsupported_str(o, "module", err, errlen));
    char p[CONFIG_PATH_MAX] = "";
    if (path)
        TRY(jf_path(path, "log_path", p, sizeof(p), err, errlen));
    memcpy(cfg->log_path, p, sizeof(p));
    snprintf(cfg->log_level, sizeof(cfg->log_level), "%s", levels[level]);
    cfg->log_show_level = show_level;
    cfg->log_show_origin = show_origin;
    return 0;
}

/* Metrics "properties": an object of strings in Firecracker; amber takes only null or {}. */
static int check_properties(struct json_object *o, char *err, size_t errlen)
{
    struct json_object *p = NULL;
    if (!json_object_object_get_ex(o, "properties", &p) || !p)
        return 0;
    bool strings = json_object_is_type(p, json_type_object);
    if (strings) {
        json_object_object_foreach(p, key, val)
        {
            (void)key;
            strings &= json_object_is_type(val, json_type_string);
        }
    }
    if (!strings) {
        snprintf(err, errlen, "field 'properties' must be an object of strings");
        return -EINVAL;
    }
    return jf_unsupported(o, "properties", NULL, err, errlen);
}

int cfgjson_metrics(struct vm_config *cfg, struct json_object *o, char *err, size_t errlen)
{
    static const char *const known[] = {"metrics_path", "emit_id", "properties", NULL};
    TRY(jf_object(o, "metrics", err, errlen));
    TRY(jf_known(o, known, err, errlen));
    const char *path;
    bool emit_id;
    TRY(jf_str(o, "metrics_path", true, &path, err, errlen));
    TRY(jf_bool(o, "emit_id", false, false, &emit_id, err, errlen));
    TRY(check_properties(o, err, errlen));
    char p[CONFIG_PATH_MAX];
    TRY(jf_path(path, "metrics_path", p, sizeof(p), err, errlen));
    memcpy(cfg->metrics_path, p, sizeof(p));
    cfg->metrics_emit_id = emit_id;
    return 0;
}
