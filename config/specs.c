/* The --drive, --net and --vsock values: "key=value,flag,..." lists into config slots. */
#include "config/config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A "key=value,flag,..." list: the next item, split in place. */
static bool next_item(char **cursor, char **key, char **value)
{
    char *s = *cursor;
    if (!s)
        return false;
    char *comma = strchr(s, ',');
    if (comma) {
        *comma = '\0';
        *cursor = comma + 1;
    } else {
        *cursor = NULL;
    }
    *key = s;
    char *eq = strchr(s, '=');
    if (eq) {
        *eq = '\0';
        *value = eq + 1;
    } else {
        *value = NULL;
    }
    return true;
}

/* Parse a --drive value into the next drive slot. */
int config_parse_drive(struct vm_config *cfg, const char *arg, char *err, size_t errlen)
{
    char buf[CONFIG_PATH_MAX + 128];
    struct drive_config d;
    bool has_path = false, has_id = false, ro = false, root = false, direct = false;

    if (cfg->ndrives >= CONFIG_MAX_DRIVES)
        return config_fail(err, errlen, "too many --drive (at most %d)", CONFIG_MAX_DRIVES);
    if (strlen(arg) >= sizeof(buf))
        return config_fail(err, errlen, "--drive value too long");
    memset(&d, 0, sizeof(d));
    strcpy(buf, arg);

    char *cursor = buf, *key, *value;
    while (next_item(&cursor, &key, &value)) {
        bool *flag = !strcmp(key, "ro")       ? &ro
                     : !strcmp(key, "root")   ? &root
                     : !strcmp(key, "direct") ? &direct
                                              : NULL;
        if (flag) {
            if (value)
                return config_fail(err, errlen, "--drive: '%s' takes no value", key);
            if (*flag)
                return config_fail(err, errlen, "--drive: '%s' given twice", key);
            *flag = true;
        } else if (!strcmp(key, "path") && value) {
            if (has_path)
                return config_fail(err, errlen, "--drive: path given twice");
            if (config_copy(d.path, sizeof(d.path), value))
                return config_fail(err, errlen, "--drive: path is empty or too long");
            has_path = true;
        } else if (!strcmp(key, "id") && value) {
            if (has_id)
                return config_fail(err, errlen, "--drive: id given twice");
            if (!config_id_valid(value))
                return config_fail(err, errlen, "--drive: id '%s' must match [A-Za-z0-9_-]{1,64}",
                                   value);
            strcpy(d.id, value);
            has_id = true;
        } else {
            return config_fail(err, errlen,
                               "--drive: unknown item '%s' (want path=, id=, ro, "
                               "root, direct)",
                               key);
        }
    }
    if (!has_path)
        return config_fail(err, errlen, "--drive needs path=FILE");
    if (!has_id)
        snprintf(d.id, sizeof(d.id), "drive%u", cfg->ndrives);
    d.read_only = ro;
    d.root = root;
    d.direct = direct;
    for (unsigned i = 0; i < cfg->ndrives; i++) {
        if (!strcmp(cfg->drive[i].id, d.id))
            return config_fail(err, errlen, "duplicate drive id '%s'", d.id);
        if (root && cfg->drive[i].root)
            return config_fail(err, errlen, "two root drives ('%s' and '%s')", cfg->drive[i].id,
                               d.id);
    }
    cfg->drive[cfg->ndrives++] = d;
    return 0;
}

int config_parse_net(struct vm_config *cfg, const char *arg, char *err, size_t errlen)
{
    char buf[256];
    struct net_config n;
    bool has_tap = false, has_id = false;

    if (cfg->nnets >= CONFIG_MAX_NETS)
        return config_fail(err, errlen, "too many --net (at most %d)", CONFIG_MAX_NETS);
    if (strlen(arg) >= sizeof(buf))
        return config_fail(err, errlen, "--net value too long");
    memset(&n, 0, sizeof(n));
    strcpy(buf, arg);

    char *cursor = buf, *key, *value;
    while (next_item(&cursor, &key, &value)) {
        if (!value)
            return config_fail(err, errlen, "--net: '%s' needs a value", key);
        if (!strcmp(key, "tap")) {
            if (has_tap)
                return config_fail(err, errlen, "--net: tap given twice");
            if (!config_ifname_valid(value))
                return config_fail(err, errlen,
                                   "--net: bad tap name '%s' (1-15 characters, no "
                                   "'/', ':' or spaces)",
                                   value);
            strcpy(n.tap, value);
            has_tap = true;
        } else if (!strcmp(key, "mac")) {
            if (n.has_mac)
                return config_fail(err, errlen, "--net: mac given twice");
            if (config_mac_parse(value, n.mac))
                return config_fail(err, errlen,
                                   "--net: bad mac '%s' (want a unicast "
                                   "xx:xx:xx:xx:xx:xx)",
                                   value);
            n.has_mac = true;
        } else if (!strcmp(key, "id")) {
            if (has_id)
                return config_fail(err, errlen, "--net: id given twice");
            if (!config_id_valid(value))
                return config_fail(err, errlen, "--net: id '%s' must match [A-Za-z0-9_-]{1,64}",
                                   value);
            strcpy(n.id, value);
            has_id = true;
        } else {
            return config_fail(err, errlen, "--net: unknown item '%s' (want tap=, mac=, id=)", key);
        }
    }
    if (!has_tap)
        return config_fail(err, errlen, "--net needs tap=NAME");
    if (!has_id)
        snprintf(n.id, sizeof(n.id), "net%u", cfg->nnets);
    for (unsigned i = 0; i < cfg->nnets; i++) {
        if (!strcmp(cfg->net[i].id, n.id))
            return config_fail(err, errlen, "duplicate interface id '%s'", n.id);
        if (!strcmp(cfg->net[i].tap, n.tap))
            return config_fail(err, errlen, "tap '%s' used twice", n.tap);
    }
    cfg->net[cfg->nnets++] = n;
    return 0;
}

int config_parse_vsock(struct vm_config *cfg, const char *arg, char *err, size_t errlen)
{
    char buf[256];
    struct vsock_config v = {.enabled = true};
    bool has_cid = false, has_uds = false;

    if (cfg->vsock.enabled)
        return config_fail(err, errlen, "only one --vsock");
    if (strlen(arg) >= sizeof(buf))
        return config_fail(err, errlen, "--vsock value too long");
    strcpy(buf, arg);

    char *cursor = buf, *key, *value;
    while (next_item(&cursor, &key, &value)) {
        uint64_t cid;
        if (!value)
            return config_fail(err, errlen, "--vsock: '%s' needs a value", key);
        if (!strcmp(key, "cid") && !has_cid) {
            if (config_parse_u64(value, UINT32_MAX - 1, &cid) || cid < 3)
                return config_fail(err, errlen, "--vsock: cid '%s' must be 3..%u", value,
                                   UINT32_MAX - 1);
            v.cid = (uint32_t)cid;
            has_cid = true;
        } else if (!strcmp(key, "uds") && !has_uds) {
            if (config_copy(v.uds_path, sizeof(v.uds_path), value))
                return config_fail(err, errlen, "--vsock: uds path is empty or longer than %zu",
                                   sizeof(v.uds_path) - 1);
            has_uds = true;
        } else {
            return config_fail(err, errlen, "--vsock: unexpected item '%s' (want cid=N,uds=PATH)",
                               key);
        }
    }
    if (!has_cid || !has_uds)
        return config_fail(err, errlen, "--vsock needs cid=N,uds=PATH");
    cfg->vsock = v;
    return 0;
}
