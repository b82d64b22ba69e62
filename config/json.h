/* Firecracker-shaped JSON configuration: per-section validators shared by the API endpoints and
 * --config-file, the config-file loader, and the GET /vm/config exporter. */
#ifndef AMBER_CONFIG_JSON_H
#define AMBER_CONFIG_JSON_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"

#define CONFIG_MEM_MIB_MAX (1024u * 1024u) /* 1 TiB */

/*
 * Each section function validates the JSON object o completely and only then changes cfg (a
 * failed call leaves cfg as it was). It returns 0, or -EINVAL (or -ENAMETOOLONG, -ENOSPC) with a
 * one-line reason in err that names the offending field. Unknown fields, wrong types,
 * out-of-range values and fields Firecracker defines but amber does not implement (unless null or
 * their default) are all refused. null is accepted for every optional field.
 */

/* "machine-config". partial (PATCH) makes vcpu_count and mem_size_mib optional. */
int cfgjson_machine(struct vm_config *cfg, struct json_object *o, bool partial, char *err,
                    size_t errlen);

/* "boot-source": kernel_image_path (required), boot_args, initrd_path. Replaces the previous. */
int cfgjson_boot_source(struct vm_config *cfg, struct json_object *o, char *err, size_t errlen);

/*
 * One "drives" entry, added or replaced by drive_id. path_id (from PUT /drives/{id}, NULL for
 * the config file) must equal drive_id. The root device is kept at index 0 (it becomes vda),
 * the others in insertion order; a second root device is refused.
 */
int cfgjson_drive(struct vm_config *cfg, struct json_object *o, const char *path_id, char *err,
                  size_t errlen);

/*
 * A PATCH /drives/{id} body (PartialDrive) for an existing drive. On success *new_path holds the
 * resolved path_on_host (CONFIG_PATH_MAX bytes) or "" when the body has none, and *rl and
 * *rl_set the rate_limiter's buckets and which of them it names (jf_rate_limiter; 0: leave the
 * limiter as it is). cfg is not changed.
 */
int cfgjson_drive_patch(const struct vm_config *cfg, struct json_object *o, const char *path_id,
                        char *new_path, struct rl_config *rl, unsigned *rl_set, char *err,
                        size_t errlen);

/* One "network-interfaces" entry, added or replaced by iface_id (path_id as for drives). */
int cfgjson_net(struct vm_config *cfg, struct json_object *o, const char *path_id, char *err,
                size_t errlen);

/*
 * A PATCH /network-interfaces/{id} body (PartialNetworkInterface) for an existing interface:
 * rl[0], rl_set[0] get rx_rate_limiter and rl[1], rl_set[1] tx_rate_limiter (as
 * cfgjson_drive_patch). cfg is not changed.
 */
int cfgjson_net_patch(const struct vm_config *cfg, struct json_object *o, const char *path_id,
                      struct rl_config rl[2], unsigned rl_set[2], char *err, size_t errlen);

/* Copy into dst the buckets of src that set names (RL_SET_*): how a PATCH updates a limiter. */
void cfgjson_rl_merge(struct rl_config *dst, const struct rl_config *src, unsigned set);

/* "vsock", validated into *out (not into cfg, so that the caller can bind before committing). */
int cfgjson_vsock(struct vsock_config *out, struct json_object *o, char *err, size_t errlen);

/* "entropy": enables the rng device. */
int cfgjson_entropy(struct vm_config *cfg, struct json_object *o, char *err, size_t errlen);

/* "logger": log_path, level, show_level, show_log_origin (paths are stored, not opened). */
int cfgjson_logger(struct vm_config *cfg, struct json_object *o, char *err, size_t errlen);

/* "metrics": metrics_path, emit_id (stored, not opened). */
int cfgjson_metrics(struct vm_config *cfg, struct json_object *o, char *err, size_t errlen);

/*
 * Load a --config-file document text[0..len) into cfg (which the caller filled with defaults).
 * Needs "boot-source". Firecracker sections amber lacks (balloon, mmds-config, ...) must be null.
 * Returns 0 or a negative errno with err set ("drives[1]: unknown field 'x'").
 */
int config_json_load(struct vm_config *cfg, const char *text, size_t len, char *err, size_t errlen);

/* The machine-config object for GET /machine-config. Caller owns the reference. */
struct json_object *config_json_machine(const struct vm_config *cfg);

/* The whole configuration in Firecracker's FullVmConfiguration shape (GET /vm/config). */
struct json_object *config_json_export(const struct vm_config *cfg);

#endif
