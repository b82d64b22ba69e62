/* Snapshot endpoints: PUT /snapshot/create and PUT /snapshot/load (Firecracker's shapes). */
#include "api/core.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "config/jfield.h"
#include "vmm/log.h"

#define TRY(x)                                                                                     \
    do {                                                                                           \
        if ((x) != 0)                                                                              \
            goto bad;                                                                              \
    } while (0)

void h_put_snapshot_create(struct api_core *c, struct json_object *b, const char *id,
                           struct api_response *r)
{
    static const char *const known[] = {"snapshot_path", "mem_file_path", "snapshot_type",
                                        "version",       "fsync",         NULL};
    static const char *const types[] = {"Full", "Diff", NULL};
    char err[512];
    const char *spath, *mpath;
    int type;
    struct api_snapshot_create p;
    memset(&p, 0, sizeof(p));
    TRY(jf_object(b, "snapshot create parameters", err, sizeof(err)));
    TRY(jf_known(b, known, err, sizeof(err)));
    TRY(jf_str(b, "snapshot_path", true, &spath, err, sizeof(err)));
    TRY(jf_str(b, "mem_file_path", true, &mpath, err, sizeof(err)));
    TRY(jf_enum(b, "snapshot_type", types, 0, false, &type, err, sizeof(err)));
    TRY(jf_unsupported(b, "version", NULL, err, sizeof(err)));
    TRY(jf_bool(b, "fsync", false, false, &p.fsync, err, sizeof(err)));
    TRY(jf_path(spath, "snapshot_path", p.snapshot_path, sizeof(p.snapshot_path), err,
                sizeof(err)));
    TRY(jf_path(mpath, "mem_file_path", p.mem_file_path, sizeof(p.mem_file_path), err,
                sizeof(err)));
    p.diff = type == 1; /* without track_dirty_pages the back-end answers -EINVAL: 400 */
    if (c->st.state != VM_PAUSED) {
        resp_error(r, 400,
                   "snapshot/create needs a paused VM (state: %s); PATCH /vm "
                   "{\"state\": \"Paused\"} first",
                   vmstate_name(c->st.state));
        return;
    }
    if (!c->be.snapshot_create) {
        resp_error(r, 500, "snapshot/create is not implemented");
        return;
    }
    int e = c->be.snapshot_create(c->be.ctx, &p, err, sizeof(err));
    if (e) {
        resp_error(r, api_backend_status(e), "snapshot/create failed: %s",
                   err[0] ? err : strerror(-e));
        log_err("api: snapshot/create failed: %s", err[0] ? err : strerror(-e));
        return;
    }
    resp_empty(r);
    return;
bad:
    resp_error(r, 400, "%s", err);
}

/* mem_backend {backend_type, backend_path} or the older mem_file_path: exactly one. */
static int parse_mem(struct json_object *b, char *out, size_t cap, char *err, size_t errlen,
                     bool *uffd)
{
    static const char *const known[] = {"backend_type", "backend_path", NULL};
    static const char *const kinds[] = {"File", "Uffd", NULL};
    struct json_object *mb = NULL;
    const char *path = NULL;
    *uffd = false;
    json_object_object_get_ex(b, "mem_backend", &mb);
    if (json_object_get_type(mb) == json_type_null)
        mb = NULL;
    if (jf_str(b, "mem_file_path", false, &path, err, errlen))
        return -EINVAL;
    if (!mb == !path) {
        snprintf(err, errlen, "exactly one of mem_backend and mem_file_path must be given");
        return -EINVAL;
    }
    if (mb) {
        int kind;
        if (jf_object(mb, "mem_backend", err, errlen) || jf_known(mb, known, err, errlen) ||
            jf_enum(mb, "backend_type", kinds, -1, false, &kind, err, errlen) ||
            jf_str(mb, "backend_path", true, &path, err, errlen))
            return -EINVAL;
        if (kind < 0) {
            snprintf(err, errlen, "missing required field 'mem_backend.backend_type'");
            return -EINVAL;
        }
        if (kind == 1) {
            *uffd = true;
            return 0;
        }
    }
    return jf_path(path, "mem_backend.backend_path", out, cap, err, errlen);
}

/* A TAP name the kernel would take: 1..15 bytes, no '/', ':', space or control byte. */
static bool tap_name_ok(const char *n)
{
    size_t len = strlen(n);
    if (len == 0 || len > 15)
        return false;
    for (const char *c = n; *c; c++)
        if (*c == '/' || *c == ':' || (unsigned char)*c <= ' ' || *c == 0x7f)
            return false;
    return true;
}

/* amber's own "drive_overrides": [{"drive_id", "path_on_host"}], each drive at most once. */
static int parse_drive_overrides(struct json_object *b, struct api_snapshot_load *p, char *err,
                                 size_t errlen)
{
    static const char *const known[] = {"drive_id", "path_on_host", NULL};
    struct json_object *arr = NULL;
    json_object_object_get_ex(b, "drive_overrides", &arr);
    if (!arr || json_object_get_type(arr) == json_type_null)
        return 0;
    if (json_object_get_type(arr) != json_type_array ||
        json_object_array_length(arr) > CONFIG_MAX_DRIVES) {
        snprintf(err, errlen, "drive_overrides must be an array of at most %d entries",
                 CONFIG_MAX_DRIVES);
        return -EINVAL;
    }
    for (size_t i = 0; i < json_object_array_length(arr); i++) {
        struct json_object *o = json_object_array_get_idx(arr, i);
        const char *id, *path;
        if (jf_object(o, "drive_overrides entry", err, errlen) || jf_known(o, known, err, errlen) ||
            jf_str(o, "drive_id", true, &id, err, errlen) ||
            jf_str(o, "path_on_host", true, &path, err, errlen))
            return -EINVAL;
        if (!id[0] || strlen(id) > CONFIG_ID_MAX || strpbrk(id, " /\t\n")) {
            snprintf(err, errlen, "drive_overrides[%zu]: bad drive_id", i);
            return -EINVAL;
        }
        for (unsigned j = 0; j < p->ndrive_overrides; j++) {
            if (!strcmp(p->drive_overrides[j].drive_id, id)) {
                snprintf(err, errlen, "drive_overrides: drive '%s' named twice", id);
                return -EINVAL;
            }
        }
        if (jf_path(path, "drive_overrides.path_on_host", p->drive_overrides[i].path_on_host,
                    sizeof(p->drive_overrides[i].path_on_host), err, errlen))
            return -EINVAL;
        strcpy(p->drive_overrides[i].drive_id, id);
        p->ndrive_overrides++;
    }
    return 0;
}

static int parse_overrides(struct json_object *b, struct api_snapshot_load *p, char *err,
                           size_t errlen)
{
    static const char *const nknown[] = {"iface_id", "host_dev_name", NULL};
    static const char *const vknown[] = {"uds_path", "guest_cid", NULL};
    struct json_object *arr = NULL, *vo = NULL;
    json_object_object_get_ex(b, "network_overrides", &arr);
    if (arr && json_object_get_type(arr) != json_type_null) {
        if (json_object_get_type(arr) != json_type_array ||
            json_object_array_length(arr) > CONFIG_MAX_NETS) {
            snprintf(err, errlen, "network_overrides must be an array of at most %d entries",
                     CONFIG_MAX_NETS);
            return -EINVAL;
        }
        for (size_t i = 0; i < json_object_array_length(arr); i++) {
            struct json_object *o = json_object_array_get_idx(arr, i);
            const char *iface, *dev;
            if (jf_object(o, "network_overrides entry", err, errlen) ||
                jf_known(o, nknown, err, errlen) ||
                jf_str(o, "iface_id", true, &iface, err, errlen) ||
                jf_str(o, "host_dev_name", true, &dev, err, errlen))
                return -EINVAL;
            if (strlen(iface) > CONFIG_ID_MAX || !tap_name_ok(dev)) {
                snprintf(err, errlen, "network_overrides[%zu]: bad iface_id or host_dev_name", i);
                return -EINVAL;
            }
            strcpy(p->net_overrides[i].iface_id, iface);
            strcpy(p->net_overrides[i].host_dev_name, dev);
            p->nnet_overrides++;
        }
    }
    json_object_object_get_ex(b, "vsock_override", &vo);
    if (vo && json_object_get_type(vo) != json_type_null) {
        const char *uds;
        bool has_cid;
        uint64_t cid;
        if (jf_object(vo, "vsock_override", err, errlen) || jf_known(vo, vknown, err, errlen) ||
            jf_str(vo, "uds_path", true, &uds, err, errlen) ||
            jf_uint(vo, "guest_cid", false, 3, UINT32_MAX - 1, &has_cid, &cid, err, errlen))
            return -EINVAL;
        p->vsock_guest_cid = has_cid ? (uint32_t)cid : 0;
        if (!uds[0] || strlen(uds) >= sizeof(p->vsock_uds_path)) {
            snprintf(err, errlen, "vsock_override.uds_path must be 1 to %zu bytes",
                     sizeof(p->vsock_uds_path) - 1);
            return -EINVAL;
        }
        strcpy(p->vsock_uds_path, uds);
    }
    return parse_drive_overrides(b, p, err, errlen);
}

void h_put_snapshot_load(struct api_core *c, struct json_object *b, const char *id,
                         struct api_response *r)
{
    static const char *const known[] = {
        "snapshot_path",     "mem_file_path",     "mem_backend",           "resume_vm",
        "track_dirty_pages", "network_overrides", "vsock_override",        "drive_overrides",
        "clock_realtime",    "huge_pages",        "enable_diff_snapshots", NULL};
    /* Firecracker's huge-page choices on restore; amber's snapshots never use huge pages. */
    static const char *const huge[] = {"Snapshot", "None", "Transparent", "2M", NULL};
    static struct api_snapshot_load p; /* 4 KiB paths: not on the loop's stack */
    char err[512];
    const char *spath;
    bool dirty, old_dirty, uffd;
    memset(&p, 0, sizeof(p));
    TRY(jf_object(b, "snapshot load parameters", err, sizeof(err)));
    TRY(jf_known(b, known, err, sizeof(err)));
    TRY(jf_str(b, "snapshot_path", true, &spath, err, sizeof(err)));
    TRY(jf_path(spath, "snapshot_path", p.snapshot_path, sizeof(p.snapshot_path), err,
                sizeof(err)));
    TRY(parse_mem(b, p.mem_file_path, sizeof(p.mem_file_path), err, sizeof(err), &uffd));
    TRY(jf_bool(b, "resume_vm", false, false, &p.resume_vm, err, sizeof(err)));
    TRY(jf_bool(b, "clock_realtime", false, true, &p.clock_realtime, err, sizeof(err)));
    TRY(jf_bool(b, "track_dirty_pages", false, false, &dirty, err, sizeof(err)));
    TRY(jf_bool(b, "enable_diff_snapshots", false, false, &old_dirty, err, sizeof(err)));
    TRY(jf_enum_subset(b, "huge_pages", huge, 2, err, sizeof(err)));
    TRY(parse_overrides(b, &p, err, sizeof(err)));
    if (uffd) {
        resp_error(r, 400,
                   "mem_backend.backend_type Uffd is not supported by amber: use File "
                   "(amber maps the file copy-on-write, loading pages lazily)");
        return;
    }
    p.track_dirty_pages = dirty || old_dirty;
    if (c->st.state != VM_NOT_STARTED || c->configured) {
        resp_error(r, 400,
                   "snapshot/load is allowed only on a fresh amber, before any boot "
                   "configuration (state: %s%s)",
                   vmstate_name(c->st.state), c->configured ? ", configured" : "");
        return;
    }
    if (!c->be.snapshot_load) {
        resp_error(r, 500, "snapshot/load is not implemented");
        return;
    }
    int e = c->be.snapshot_load(c->be.ctx, &p, err, sizeof(err));
    if (e) {
        /* A file that fails its checks is the client's to fix. */
        bool bad_file = e == -EBADMSG || e == -EPROTONOSUPPORT || e == -E2BIG;
        resp_error(r, bad_file ? 400 : api_backend_status(e), "snapshot/load failed: %s",
                   err[0] ? err : strerror(-e));
        log_err("api: snapshot/load failed: %s", err[0] ? err : strerror(-e));
        return;
    }
    api_core_event(c, VM_EV_START);
    if (!p.resume_vm)
        api_core_event(c, VM_EV_PAUSE);
    c->configured = true;
    resp_empty(r);
    return;
bad:
    resp_error(r, 400, "%s", err);
}
