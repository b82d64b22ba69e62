/* The sandbox's lifetime: PUT and GET /timeout, and the deadline check on the API's 1 s tick.
 * amber keeps the deadline itself, so it holds after the process that set it has exited. */
#include "api/core.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "config/jfield.h"
#include "vmm/clock.h"
#include "vmm/log.h"

#define TIMEOUT_MAX_S (366ull * 86400u)

static const char *const actions[] = {"kill", "pause", NULL};

static void timeout_json(struct api_core *c, struct api_response *r)
{
    struct json_object *o = json_object_new_object();
    struct json_object *left = NULL, *at = NULL;
    if (c->deadline_ms) {
        uint64_t now = clock_now_ms();
        uint64_t ms = c->deadline_ms > now ? c->deadline_ms - now : 0;
        left = json_object_new_double((double)ms / 1000.0);
        struct timespec rt;
        clock_gettime(CLOCK_REALTIME, &rt);
        rt.tv_sec += (time_t)(ms / 1000u);
        rt.tv_nsec += (long)(ms % 1000u) * 1000000L;
        if (rt.tv_nsec >= 1000000000L) {
            rt.tv_sec++;
            rt.tv_nsec -= 1000000000L;
        }
        char ts[40];
        vmstate_format_time(&rt, ts, sizeof(ts));
        at = json_object_new_string(ts);
    }
    json_object_object_add(o, "sandbox_id", json_object_new_string(c->cfg->id));
    json_object_object_add(o, "timeout_s_left", left);
    json_object_object_add(o, "deadline", at);
    json_object_object_add(o, "on_timeout", json_object_new_string(actions[c->on_timeout]));
    resp_json(r, 200, o);
}

void h_get_timeout(struct api_core *c, struct json_object *b, const char *id,
                   struct api_response *r)
{
    timeout_json(c, r);
}

void h_put_timeout(struct api_core *c, struct json_object *b, const char *id,
                   struct api_response *r)
{
    static const char *const known[] = {"timeout_s", "on_timeout", NULL};
    char err[256];
    uint64_t secs;
    bool present;
    int action;
    if (jf_object(b, "the body", err, sizeof(err)) || jf_known(b, known, err, sizeof(err)) ||
        jf_uint(b, "timeout_s", true, 1, TIMEOUT_MAX_S, &present, &secs, err, sizeof(err)) ||
        jf_enum(b, "on_timeout", actions, c->on_timeout, false, &action, err, sizeof(err))) {
        resp_error(r, 400, "%s", err);
        return;
    }
    if (c->st.state == VM_STOPPED) {
        resp_error(r, 409, "sandbox %s has stopped", c->cfg->id);
        return;
    }
    c->deadline_ms = clock_now_ms() + secs * 1000u;
    c->on_timeout = action;
    log_info("api: timeout in %llu s, then %s", (unsigned long long)secs, actions[action]);
    timeout_json(c, r);
}

void api_core_check_deadline(struct api_core *c, uint64_t now_ms)
{
    if (!c->deadline_ms || now_ms < c->deadline_ms)
        return;
    c->deadline_ms = 0; /* fires once */
    char err[256] = "";
    if (c->on_timeout == 1) {
        if (c->st.state != VM_RUNNING || !c->be.pause)
            return; /* paused already, not started or stopped: nothing to do */
        int e = c->be.pause(c->be.ctx, err, sizeof(err));
        if (e) {
            log_err("api: timeout: pause failed: %s", err[0] ? err : strerror(-e));
            return;
        }
        api_core_event(c, VM_EV_PAUSE);
        log_info("api: timeout: VM paused");
        return;
    }
    log_info("api: timeout: stopping the sandbox");
    if (c->be.stop)
        c->be.stop(c->be.ctx, "timeout: the sandbox's deadline passed (on_timeout kill)");
}
