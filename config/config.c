/* The VM configuration: defaults, value checks, and validation before boot (flags, file or API). */
#include "config/config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void config_defaults(struct vm_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->vcpus = 1;
    cfg->mem_mib = 256;
    cfg->console = CONSOLE_STDIO;
    cfg->console_max_mib = CONFIG_DEFAULT_CONSOLE_MIB;
    cfg->on_reboot = ON_REBOOT_EXIT;
    cfg->seccomp = true;
    cfg->entropy = false;
}

int config_fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
        /* Messages quote user input: keep them on one line and free of terminal escapes. */
        for (char *p = err; *p; p++)
            if ((unsigned char)*p < ' ' || *p == 0x7f)
                *p = '?';
    }
    return -EINVAL;
}

int config_parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (!s || !*s)
        return -EINVAL;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -EINVAL;
        unsigned digit = (unsigned)(*p - '0');
        if (v > (max - digit) / 10)
            return -ERANGE;
        v = v * 10 + digit;
    }
    *out = v;
    return 0;
}

int config_copy(char *dst, size_t dstlen, const char *src)
{
    size_t n = strlen(src);
    if (n == 0 || n >= dstlen)
        return -EINVAL;
    memcpy(dst, src, n + 1);
    return 0;
}

bool config_id_valid(const char *id)
{
    size_t n = 0;
    for (; id[n]; n++) {
        char c = id[n];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-';
        if (!ok || n >= CONFIG_ID_MAX)
            return false;
    }
    return n > 0;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int config_mac_parse(const char *s, uint8_t mac[6])
{
    uint8_t out[6];
    if (strlen(s) != 17)
        return -EINVAL;
    for (int i = 0; i < 6; i++) {
        int hi = hex_digit(s[i * 3]), lo = hex_digit(s[i * 3 + 1]);
        if (hi < 0 || lo < 0 || (i < 5 && s[i * 3 + 2] != ':'))
            return -EINVAL;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    if (out[0] & 0x01)
        return -EINVAL; /* multicast or broadcast */
    if (!(out[0] | out[1] | out[2] | out[3] | out[4] | out[5]))
        return -EINVAL;
    memcpy(mac, out, 6);
    return 0;
}

bool config_ifname_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n >= sizeof(((struct net_config *)0)->tap))
        return false;
    if (!strcmp(name, ".") || !strcmp(name, ".."))
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == '/' || c == ':' || c <= ' ' || c >= 0x7f)
            return false;
    }
    return true;
}

/* Checks that hold for any configuration, wherever it came from (flags, file or API). */
static int config_check_structure(const struct vm_config *cfg, char *err, size_t errlen)
{
    if (cfg->id[0] && !config_id_valid(cfg->id))
        return config_fail(err, errlen, "id '%s' must match [A-Za-z0-9_-]{1,64}", cfg->id);
    if (cfg->vcpus < 1 || cfg->vcpus > CONFIG_MAX_VCPUS)
        return config_fail(err, errlen, "vcpus must be 1..%d, not %u", CONFIG_MAX_VCPUS,
                           cfg->vcpus);
    if (cfg->mem_mib < CONFIG_MIN_MEM_MIB || cfg->mem_mib > CONFIG_MAX_MEM_MIB)
        return config_fail(err, errlen, "memory must be %d..%llu MiB", CONFIG_MIN_MEM_MIB,
                           CONFIG_MAX_MEM_MIB);
    if (cfg->console_max_mib < 1 || cfg->console_max_mib > CONFIG_MAX_CONSOLE_MIB)
        return config_fail(err, errlen, "console cap must be 1..%llu MiB", CONFIG_MAX_CONSOLE_MIB);
    if (cfg->console == CONSOLE_FILE && !cfg->console_path[0])
        return config_fail(err, errlen, "console file path is empty");
    if (cfg->ndrives > CONFIG_MAX_DRIVES)
        return config_fail(err, errlen, "at most %d drives", CONFIG_MAX_DRIVES);
    if (cfg->nnets > CONFIG_MAX_NETS)
        return config_fail(err, errlen, "at most %d network interfaces", CONFIG_MAX_NETS);

    unsigned roots = 0;
    for (unsigned i = 0; i < cfg->ndrives; i++) {
        const struct drive_config *d = &cfg->drive[i];
        if (!config_id_valid(d->id))
            return config_fail(err, errlen, "drive id '%s' must match [A-Za-z0-9_-]{1,64}", d->id);
        if (!d->path[0])
            return config_fail(err, errlen, "drive '%s' has no path", d->id);
        for (unsigned j = 0; j < i; j++)
            if (!strcmp(cfg->drive[j].id, d->id))
                return config_fail(err, errlen, "duplicate drive id '%s'", d->id);
        roots += d->root;
    }
    if (roots > 1)
        return config_fail(err, errlen, "more than one root drive");

    for (unsigned i = 0; i < cfg->nnets; i++) {
        const struct net_config *n = &cfg->net[i];
        if (!config_id_valid(n->id))
            return config_fail(err, errlen, "interface id '%s' must match [A-Za-z0-9_-]{1,64}",
                               n->id);
        if (!config_ifname_valid(n->tap))
            return config_fail(err, errlen, "bad tap name '%s'", n->tap);
        for (unsigned j = 0; j < i; j++) {
            if (!strcmp(cfg->net[j].id, n->id))
                return config_fail(err, errlen, "duplicate interface id '%s'", n->id);
            if (!strcmp(cfg->net[j].tap, n->tap))
                return config_fail(err, errlen, "tap '%s' used twice", n->tap);
            if (n->has_mac && cfg->net[j].has_mac && !memcmp(n->mac, cfg->net[j].mac, 6))
                return config_fail(err, errlen, "interfaces '%s' and '%s' share a MAC",
                                   cfg->net[j].id, n->id);
        }
    }
    if (cfg->vsock.enabled) {
        if (cfg->vsock.cid < 3 || cfg->vsock.cid == UINT32_MAX)
            return config_fail(err, errlen, "vsock cid must be 3..%u", UINT32_MAX - 1);
        if (!cfg->vsock.uds_path[0])
            return config_fail(err, errlen, "vsock needs a uds path");
    }
    if (cfg->seccomp_filter[0] && !cfg->seccomp)
        return config_fail(err, errlen, "--seccomp-filter needs seccomp on");
    return 0;
}

/* A file the VMM will open: it must exist, not be a directory, and allow mode. */
static int check_file(const char *what, const char *path, int mode, bool regular_only, char *err,
                      size_t errlen)
{
    struct stat st;
    if (stat(path, &st) < 0 || access(path, mode) < 0) {
        int e = errno;
        config_fail(err, errlen, "%s %s: %s", what, path, strerror(e));
        return -e;
    }
    if (S_ISDIR(st.st_mode)) {
        config_fail(err, errlen, "%s %s: is a directory", what, path);
        return -EISDIR;
    }
    if (regular_only ? !S_ISREG(st.st_mode) : !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))) {
        config_fail(err, errlen, "%s %s: not a regular file", what, path);
        return -EINVAL;
    }
    return 0;
}

int config_validate(const struct vm_config *cfg, char *err, size_t errlen)
{
    int rc = config_check_structure(cfg, err, errlen);
    if (rc)
        return rc;
    if (!cfg->kernel[0])
        return config_fail(err, errlen, "no kernel configured");
    rc = check_file("kernel", cfg->kernel, R_OK, true, err, errlen);
    if (!rc && cfg->initrd[0])
        rc = check_file("initrd", cfg->initrd, R_OK, true, err, errlen);
    for (unsigned i = 0; !rc && i < cfg->ndrives; i++) {
        const struct drive_config *d = &cfg->drive[i];
        rc = check_file("drive", d->path, d->read_only ? R_OK : R_OK | W_OK, false, err, errlen);
    }
    if (!rc && cfg->seccomp_filter[0])
        rc = check_file("seccomp filter", cfg->seccomp_filter, R_OK, true, err, errlen);
    return rc;
}
