/* Lifecycle endpoints: GET / and /version, PUT /actions, PATCH /vm, and the sandbox routes
 * POST /pause and /resume. Pause and resume latency is measured around the back-end call. */
#include "api/core.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "config/jfield.h"
#include "vmm/clock.h"
#include "vmm/log.h"

int api_core_event(struct api_core *c, enum vm_event ev)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return vmstatus_apply(&c->st, ev, clock_now_ns(), &now);
}

void h_get_root(struct api_core *c, struct json_object *b, const char *id, struct api_response *r)
{
    struct vm_status *st = &c->st;
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "id", json_object_new_string(c->cfg->id));
    json_object_object_add(o, "state", json_object_new_string(vmstate_name(st->state)));
    json_object_object_add(o, "vmm_version", json_object_new_string(AMBER_VERSION));
    json_object_object_add(o, "app_name", json_object_new_string("amber"));
    struct json_object *pa = NULL;
    if (st->state == VM_PAUSED) {
        char ts[40];
        vmstate_format_time(&st->paused_at, ts, sizeof(ts));
        pa = json_object_new_string(ts);
    }
    json_object_object_add(o, "paused_at", pa);
    json_object_object_add(o, "vcpus", json_object_new_int64(c->cfg->vcpus));
    json_object_object_add(o, "mem_mib", json_object_new_int64((int64_t)c->cfg->mem_mib));
    uint64_t up = 0;
    if (st->state == VM_RUNNING || st->state == VM_PAUSED)
        up = (clock_now_ns() - st->started_ns) / 1000000u;
    json_object_object_add(o, "uptime_ms", json_object_new_int64((int64_t)up));
    json_object_object_add(o, "pauses", json_object_new_int64((int64_t)st->npauses));
    json_object_object_add(o, "pause_latency_us_last",
                           json_object_new_int64((int64_t)st->pause_last_us));
    json_object_object_add(o, "pause_latency_us_max",
                           json_object_new_int64((int64_t)st->pause_max_us));
    json_object_object_add(o, "resume_latency_us_last",
                           json_object_new_int64((int64_t)st->resume_last_us));
    json_object_object_add(o, "resume_latency_us_max",
                           json_object_new_int64((int64_t)st->resume_max_us));
    resp_json(r, 200, o);
}

void h_get_version(struct api_core *c, struct json_object *b, const char *id,
                   struct api_response *r)
{
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "firecracker_version", json_object_new_string(AMBER_VERSION));
    json_object_object_add(o, "vmm_version", json_object_new_string(AMBER_VERSION));
    json_object_object_add(o, "app_name", json_object_new_string("amber"));
    resp_json(r, 200, o);
}

/* Run a back-end op; on failure fill r with 400/500 and return the error. */
static int call_backend(struct api_response *r, const char *what, int (*fn)(void *, char *, size_t),
                        void *ctx)
{
    char err[256] = "";
    if (!fn) {
        resp_error(r, 500, "%s is not implemented", what);
        return -ENOSYS;
    }
    int e = fn(ctx, err, sizeof(err));
    if (e) {
        resp_error(r, api_backend_status(e), "%s failed: %s", what, err[0] ? err : strerror(-e));
        log_err("api: %s failed: %s", what, err[0] ? err : strerror(-e));
    }
    return e;
}

/* Pause or resume through the back end, timing it. 0, or an error response in r. */
static int transition(struct api_core *c, bool pause, struct api_response *r)
{
    uint64_t t0 = clock_now_ns();
    int e =
        call_backend(r, pause ? "pause" : "resume", pause ? c->be.pause : c->be.resume, c->be.ctx);
    if (e)
        return e;
    vmstatus_record_latency(&c->st, pause, (clock_now_ns() - t0) / 1000u);
    api_core_event(c, pause ? VM_EV_PAUSE : VM_EV_RESUME);
    log_info("api: VM %s", pause ? "paused" : "resumed");
    return 0;
}

static void instance_start(struct api_core *c, struct api_response *r)
{
    if (c->st.state != VM_NOT_STARTED) {
        resp_error(r, 400, "the VM is already started");
        return;
    }
    if (!c->cfg->kernel[0]) {
        resp_error(r, 400, "cannot start: no boot source (PUT /boot-source first)");
        return;
    }
    if (!c->be.start) {
        resp_error(r, 500, "InstanceStart is not implemented");
        return;
    }
    char err[256] = "";
    int e = c->be.start(c->be.ctx, c->cfg, err, sizeof(err));
    if (e) {
        resp_error(r, api_backend_status(e), "InstanceStart failed: %s",
                   err[0] ? err : strerror(-e));
        return;
    }
    api_core_event(c, VM_EV_START);
    resp_empty(r);
}

void h_put_actions(struct api_core *c, struct json_object *b, const char *id,
                   struct api_response *r)
{
    static const char *const known[] = {"action_type", NULL};
    static const char *const actions[] = {"InstanceStart", "SendCtrlAltDel", "FlushMetrics", NULL};
    char err[256];
    int act;
    if (jf_object(b, "action", err, sizeof(err)) || jf_known(b, known, err, sizeof(err)) ||
        jf_enum(b, "action_type", actions, -1, false, &act, err, sizeof(err))) {
        resp_error(r, 400, "%s", err);
        return;
    }
    switch (act) {
    case 0:
        instance_start(c, r);
        return;
    case 1:
        if (c->st.state != VM_RUNNING) {
            resp_error(r, 400, "SendCtrlAltDel needs a running VM (state: %s)",
                       vmstate_name(c->st.state));
            return;
        }
        if (!call_backend(r, "SendCtrlAltDel", c->be.ctrl_alt_del, c->be.ctx))
            resp_empty(r);
        return;
    case 2: {
        int e = api_core_flush_metrics(c);
        if (e == -ENOENT)
            resp_error(r, 400, "metrics are not configured (PUT /metrics first)");
        else
            resp_empty(r); /* a full FIFO drops the line, as the periodic flush does */
        return;
    }
    default:
        resp_error(r, 400, "missing required field 'action_type'");
    }
}

void h_patch_vm(struct api_core *c, struct json_object *b, const char *id, struct api_response *r)
{
    static const char *const known[] = {"state", NULL};
    static const char *const states[] = {"Paused", "Resumed", NULL};
    char err[256];
    int want;
    if (jf_object(b, "vm", err, sizeof(err)) || jf_known(b, known, err, sizeof(err)) ||
        jf_enum(b, "state", states, -1, false, &want, err, sizeof(err))) {
        resp_error(r, 400, "%s", err);
        return;
    }
    if (want < 0) {
        resp_error(r, 400, "missing required field 'state'");
        return;
    }
    bool pause = want == 0;
    switch (c->st.state) {
    case VM_NOT_STARTED:
        resp_error(r, 400, "the VM is not started");
        return;
    case VM_STOPPED:
        resp_error(r, 400, "the VM has stopped");
        return;
    case VM_RUNNING:
    case VM_PAUSED:
        if ((c->st.state == VM_PAUSED) == pause) { /* already there: idempotent */
            resp_empty(r);
            return;
        }
        if (!transition(c, pause, r))
            resp_empty(r);
        return;
    }
}

/* 400 before start, 409 when the state is wrong; true when the request may go on. */
static bool sandbox_state_ok(struct api_core *c, enum vm_state need, struct api_response *r)
{
    if (c->st.state == VM_NOT_STARTED) {
        resp_error(r, 400, "sandbox %s is not started", c->cfg->id);
        return false;
    }
    if (c->st.state == need)
        return true;
    if (c->st.state == VM_PAUSED)
        resp_error(r, 409, "sandbox %s is already paused", c->cfg->id);
    else if (c->st.state == VM_RUNNING)
        resp_error(r, 409, "sandbox %s is not paused", c->cfg->id);
    else
        resp_error(r, 409, "sandbox %s has stopped", c->cfg->id);
    return false;
}

void h_post_pause(struct api_core *c, struct json_object *b, const char *id, struct api_response *r)
{
    if (!sandbox_state_ok(c, VM_RUNNING, r) || transition(c, true, r))
        return;
    char ts[40];
    vmstate_format_time(&c->st.paused_at, ts, sizeof(ts));
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "sandbox_id", json_object_new_string(c->cfg->id));
    json_object_object_add(o, "paused", json_object_new_boolean(1));
    json_object_object_add(o, "paused_at", json_object_new_string(ts));
    resp_json(r, 200, o);
}

void h_post_resume(struct api_core *c, struct json_object *b, const char *id,
                   struct api_response *r)
{
    if (!sandbox_state_ok(c, VM_PAUSED, r) || transition(c, false, r))
        return;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    char ts[40];
    vmstate_format_time(&now, ts, sizeof(ts));
    uint64_t paused_ms = (clock_now_ns() - c->st.paused_ns) / 1000000u;
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "sandbox_id", json_object_new_string(c->cfg->id));
    json_object_object_add(o, "paused", json_object_new_boolean(0));
    json_object_object_add(o, "resumed_at", json_object_new_string(ts));
    json_object_object_add(o, "paused_ms", json_object_new_int64((int64_t)paused_ms));
    resp_json(r, 200, o);
}
