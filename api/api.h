/* The VMM's HTTP/JSON control API on a Unix socket: lifecycle, back-end hooks and the server. */
#ifndef AMBER_API_API_H
#define AMBER_API_API_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"
#include "vmm/loop.h"

#ifndef AMBER_VERSION
#define AMBER_VERSION "1.0.0"
#endif

/*
 * What the API asks the VMM to do. Every op runs on the loop thread and returns 0 or a negative
 * errno, with a one-line reason in err. Errors the client caused (-EINVAL, -ENOENT, -EACCES,
 * -EISDIR, -ENOTDIR, -ENOEXEC, -ENAMETOOLONG, -EEXIST, -EADDRINUSE) become 400; anything else
 * becomes 500. An op left NULL answers 500 "not implemented", except vsock_bind and metrics,
 * which are then skipped.
 */
/* PUT /snapshot/create (Firecracker's SnapshotCreateParams, Full only). */
struct api_snapshot_create {
    char snapshot_path[CONFIG_PATH_MAX];
    char mem_file_path[CONFIG_PATH_MAX];
    bool fsync; /* amber's own field: fsync both files before answering (default false) */
    bool diff;  /* snapshot_type "Diff": only pages written since the previous snapshot */
};

/* PUT /snapshot/load (SnapshotLoadParams), or --restore/--mem-file. */
struct api_snapshot_load {
    char snapshot_path[CONFIG_PATH_MAX];
    char mem_file_path[CONFIG_PATH_MAX];
    bool resume_vm;
    bool clock_realtime;    /* amber's default is true (Firecracker's is false) */
    bool track_dirty_pages; /* the restored VM tracks dirty pages (Diff snapshots later) */
    unsigned nnet_overrides;
    struct {
        char iface_id[CONFIG_ID_MAX + 1];
        char host_dev_name[16];
    } net_overrides[CONFIG_MAX_NETS];
    char vsock_uds_path[108]; /* "" = as saved */
    uint32_t vsock_guest_cid; /* amber's own vsock_override.guest_cid; 0 = as saved */
    /* amber's own drive_overrides: a saved drive reopened from another file (a clone). */
    unsigned ndrive_overrides;
    struct {
        char drive_id[CONFIG_ID_MAX + 1];
        char path_on_host[CONFIG_PATH_MAX];
    } drive_overrides[CONFIG_MAX_DRIVES];
};

/* Which limiter of a device a PATCH changes (api_backend.rate_limit). */
enum api_rl_target { API_RL_DRIVE, API_RL_NET_RX, API_RL_NET_TX };

struct api_backend {
    void *ctx;
    /* InstanceStart: build and start the VM from cfg. */
    int (*start)(void *ctx, const struct vm_config *cfg, char *err, size_t errlen);
    /*
     * Pause: return only once every vCPU is stopped at the barrier and device emulation is
     * quiesced. On failure the VM must be running again as before.
     */
    int (*pause)(void *ctx, char *err, size_t errlen);
    /* Resume: devices first, replay notifications, then release the vCPUs. */
    int (*resume)(void *ctx, char *err, size_t errlen);
    /* SendCtrlAltDel through the i8042. */
    int (*ctrl_alt_del)(void *ctx, char *err, size_t errlen);
    /* PATCH /drives/{id} after boot: reopen the drive on path and signal a config change. */
    int (*drive_swap)(void *ctx, const char *drive_id, const char *path, char *err, size_t errlen);
    /*
     * PUT /vsock before boot: (re)bind the host Unix socket vsock->uds_path now. A repeated PUT
     * calls it again: unlink and rebind.
     */
    int (*vsock_bind)(void *ctx, const struct vsock_config *vsock, char *err, size_t errlen);
    /* Add device/VM counters to a metrics line (an object; add members to it). */
    void (*metrics)(void *ctx, struct json_object *out);
    /* Snapshot the paused VM (it stays paused). */
    int (*snapshot_create)(void *ctx, const struct api_snapshot_create *p, char *err,
                           size_t errlen);
    /* Restore a snapshot into this fresh process; the VM runs (resume_vm) or stays paused. */
    int (*snapshot_load)(void *ctx, const struct api_snapshot_load *p, char *err, size_t errlen);
    /* The sandbox's /timeout deadline passed with on_timeout kill: end amber, recording why
     * (the exit file's reason). */
    void (*stop)(void *ctx, const char *why);
    /*
     * PATCH /drives/{id} or /network-interfaces/{id} after boot: give the buckets of rl that set
     * names (RL_SET_*) to the device's limiter t, full, at once; a throttled queue is looked at
     * again under the new limits.
     */
    int (*rate_limit)(void *ctx, enum api_rl_target t, const char *id, const struct rl_config *rl,
                      unsigned set, char *err, size_t errlen);
};

struct api;

/*
 * Create the API on loop. With sock_path, listen there (mode 0600; a stale socket from a dead
 * process is replaced, a live one refused with -EADDRINUSE); with NULL, serve no socket but still
 * honour cfg's logger and metrics (for --no-api). cfg is modified by the configuration endpoints
 * and must outlive the api; be is copied. Opens cfg->log_path / cfg->metrics_path if already set
 * (--config-file). Returns the api, or NULL with err set.
 */
struct api *api_create(struct loop *loop, const char *sock_path, struct vm_config *cfg,
                       const struct api_backend *be, char *err, size_t errlen);

/* Close every connection, unlink the socket (if still ours), close logger/metrics files. */
void api_destroy(struct api *api);

/* The VM was started without InstanceStart (flags or --config-file): the API is now RUNNING. */
void api_set_started(struct api *api);

/* The VM has stopped (guest power-off/reboot, fatal error): every state change is refused. */
void api_set_stopped(struct api *api);

/* Close idle connections after ms of silence (default 30000). For tests. */
void api_set_idle_timeout(struct api *api, unsigned ms);

/*
 * Bound a client however it paces its bytes: request_ms from the first byte of a request to its
 * last (default 10000), and head_ms of head-receiving time summed over a connection's requests
 * (default 10000; the first 50 ms of each head do not count, so a client that sends its heads
 * at once never runs this down). Past either the client gets 408 and is closed. For tests.
 */
void api_set_request_limits(struct api *api, unsigned request_ms, unsigned head_ms);

/* Write one metrics line now (as FlushMetrics does). Returns 0, -ENOENT if not configured. */
int api_flush_metrics(struct api *api);

#endif
