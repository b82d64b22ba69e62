/* Configuration endpoints: machine-config, boot-source, drives, network interfaces, vsock,
 * entropy, logger and metrics; plus GET /vm/config. The router's phase table (routes.c) decides
 * which VM states reach each handler: all the PUTs are pre-boot only. */
#include "api/core.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "config/json.h"
#include "config/jfield.h"
#include "vmm/log.h"

/* 204 on success, 400 with the validator's message otherwise. */
static void finish(struct api_response *r, int err, const char *msg)
{
    if (err)
        resp_error(r, 400, "%s", msg);
    else
        resp_empty(r);
}

void h_get_machine(struct api_core *c, struct json_object *b, const char *id,
                   struct api_response *r)
{
    resp_json(r, 200, config_json_machine(c->cfg));
}

void h_put_machine(struct api_core *c, struct json_object *b, const char *id,
                   struct api_response *r)
{
    char err[256];
    finish(r, cfgjson_machine(c->cfg, b, false, err, sizeof(err)), err);
}

void h_patch_machine(struct api_core *c, struct json_object *b, const char *id,
                     struct api_response *r)
{
    char err[256];
    finish(r, cfgjson_machine(c->cfg, b, true, err, sizeof(err)), err);
}

void h_put_boot(struct api_core *c, struct json_object *b, const char *id, struct api_response *r)
{
    char err[256];
    int e = api_check_body_file(c, b, "kernel_image_path", API_FILE_KERNEL, err, sizeof(err));
    if (!e)
        e = api_check_body_file(c, b, "initrd_path", API_FILE_INITRD, err, sizeof(err));
    finish(r, e ? e : cfgjson_boot_source(c->cfg, b, err, sizeof(err)), err);
}

void h_put_drive(struct api_core *c, struct json_object *b, const char *id, struct api_response *r)
{
    char err[256];
    struct json_object *ro;
    bool read_only = json_object_is_type(b, json_type_object) &&
                     json_object_object_get_ex(b, "is_read_only", &ro) &&
                     json_object_is_type(ro, json_type_boolean) && json_object_get_boolean(ro);
    int e = api_check_body_file(c, b, "path_on_host",
                                read_only ? API_FILE_DRIVE_RO : API_FILE_DRIVE, err, sizeof(err));
    finish(r, e ? e : cfgjson_drive(c->cfg, b, id, err, sizeof(err)), err);
}

/* Apply a PATCH's rate limiter buckets (set != 0) to the device, then record them in cfg.
 * Returns 0, or -errno after filling r with the error. */
static int patch_rl(struct api_core *c, enum api_rl_target t, const char *id,
                    const struct rl_config *rl, unsigned set, struct rl_config *in_cfg,
                    struct api_response *r)
{
    if (!set)
        return 0;
    if (!c->be.rate_limit) {
        resp_error(r, 500, "rate limiter update is not implemented");
        return -ENOSYS;
    }
    char err[256] = "";
    int e = c->be.rate_limit(c->be.ctx, t, id, rl, set, err, sizeof(err));
    if (e) {
        resp_error(r, api_backend_status(e), "rate limiter update failed: %s",
                   err[0] ? err : strerror(-e));
        return e;
    }
    cfgjson_rl_merge(in_cfg, rl, set);
    return 0;
}

void h_patch_drive(struct api_core *c, struct json_object *b, const char *id,
                   struct api_response *r)
{
    char err[256], path[CONFIG_PATH_MAX];
    struct rl_config rl;
    unsigned rl_set;
    int e = cfgjson_drive_patch(c->cfg, b, id, path, &rl, &rl_set, err, sizeof(err));
    if (e) {
        resp_error(r, 400, "%s", err);
        return;
    }
    struct drive_config *dc = NULL;
    for (unsigned i = 0; i < c->cfg->ndrives; i++)
        if (strcmp(c->cfg->drive[i].id, id) == 0)
            dc = &c->cfg->drive[i];
    if (path[0]) {
        if (!c->be.drive_swap) {
            resp_error(r, 500, "drive swap is not implemented");
            return;
        }
        err[0] = '\0';
        e = c->be.drive_swap(c->be.ctx, id, path, err, sizeof(err));
        if (e) {
            resp_error(r, api_backend_status(e), "drive swap failed: %s",
                       err[0] ? err : strerror(-e));
            return;
        }
        snprintf(dc->path, sizeof(dc->path), "%s", path);
    }
    if (patch_rl(c, API_RL_DRIVE, id, &rl, rl_set, &dc->rl, r))
        return;
    resp_empty(r);
}

void h_put_net(struct api_core *c, struct json_object *b, const char *id, struct api_response *r)
{
    char err[256];
    finish(r, cfgjson_net(c->cfg, b, id, err, sizeof(err)), err);
}

void h_patch_net(struct api_core *c, struct json_object *b, const char *id, struct api_response *r)
{
    char err[256];
    struct rl_config rl[2];
    unsigned set[2];
    int e = cfgjson_net_patch(c->cfg, b, id, rl, set, err, sizeof(err));
    if (e) {
        resp_error(r, 400, "%s", err);
        return;
    }
    struct net_config *nc = NULL;
    for (unsigned i = 0; i < c->cfg->nnets; i++)
        if (strcmp(c->cfg->net[i].id, id) == 0)
            nc = &c->cfg->net[i];
    if (patch_rl(c, API_RL_NET_RX, id, &rl[0], set[0], &nc->rx_rl, r) ||
        patch_rl(c, API_RL_NET_TX, id, &rl[1], set[1], &nc->tx_rl, r))
        return;
    resp_empty(r);
}

void h_put_vsock(struct api_core *c, struct json_object *b, const char *id, struct api_response *r)
{
    char err[256];
    struct vsock_config v;
    int e = cfgjson_vsock(&v, b, err, sizeof(err));
    if (e) {
        resp_error(r, 400, "%s", err);
        return;
    }
    if (c->be.vsock_bind) {
        err[0] = '\0';
        e = c->be.vsock_bind(c->be.ctx, &v, err, sizeof(err));
        if (e) {
            resp_error(r, api_backend_status(e), "cannot bind vsock socket '%s': %s", v.uds_path,
                       err[0] ? err : strerror(-e));
            return;
        }
    }
    c->cfg->vsock = v;
    resp_empty(r);
}

void h_put_entropy(struct api_core *c, struct json_object *b, const char *id,
                   struct api_response *r)
{
    char err[256];
    finish(r, cfgjson_entropy(c->cfg, b, err, sizeof(err)), err);
}

void h_put_logger(struct api_core *c, struct json_object *b, const char *id, struct api_response *r)
{
    char err[256];
    char old_path[CONFIG_PATH_MAX], old_level[sizeof(c->cfg->log_level)];
    bool old_show = c->cfg->log_show_level, old_origin = c->cfg->log_show_origin;
    memcpy(old_path, c->cfg->log_path, sizeof(old_path));
    memcpy(old_level, c->cfg->log_level, sizeof(old_level));
    int e = cfgjson_logger(c->cfg, b, err, sizeof(err));
    if (!e)
        e = api_core_open_sinks(c, true, false, err, sizeof(err));
    if (e) {
        memcpy(c->cfg->log_path, old_path, sizeof(old_path));
        memcpy(c->cfg->log_level, old_level, sizeof(old_level));
        c->cfg->log_show_level = old_show;
        c->cfg->log_show_origin = old_origin;
        resp_error(r, 400, "%s", err);
        return;
    }
    resp_empty(r);
}

void h_put_metrics(struct api_core *c, struct json_object *b, const char *id,
                   struct api_response *r)
{
    char err[256];
    char old_path[CONFIG_PATH_MAX];
    bool old_emit = c->cfg->metrics_emit_id;
    if (c->cfg->metrics_path[0]) { /* as in Firecracker: the metrics system starts once */
        resp_error(r, 400, "metrics are already configured (metrics_path '%s')",
                   c->cfg->metrics_path);
        return;
    }
    memcpy(old_path, c->cfg->metrics_path, sizeof(old_path));
    int e = cfgjson_metrics(c->cfg, b, err, sizeof(err));
    if (!e)
        e = api_core_open_sinks(c, false, true, err, sizeof(err));
    if (e) {
        memcpy(c->cfg->metrics_path, old_path, sizeof(old_path));
        c->cfg->metrics_emit_id = old_emit;
        resp_error(r, 400, "%s", err);
        return;
    }
    resp_empty(r);
}

void h_get_vm_config(struct api_core *c, struct json_object *b, const char *id,
                     struct api_response *r)
{
    resp_json(r, 200, config_json_export(c->cfg));
}
