/* The API router: maps method + path to a handler, answers 404/405/400, and builds responses. */
#include "api/core.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/jfield.h"

enum { BODY_NONE, BODY_JSON };

/*
 * The phases (VM states) in which a route may be served; outside them the router answers 400
 * and the handler never runs. Reconfiguration is pre-boot only: after boot the main thread runs
 * under the VMM seccomp filter, which has no open(O_CREAT), bind or getcwd, so a handler that
 * opens a log file or binds a socket must never be reached then. Routes that change what runs
 * (pause, resume, drive swap) need a booted VM. A stopped VM still answers the GETs.
 * Routes marked ANY check the state in their handler, where the answer depends on the body
 * (PUT /actions) or is a documented 409 (POST /pause, /resume, PUT /timeout once stopped). The one
 * route that creates files after boot, PUT /snapshot/create, is served only while paused (the
 * running filter lets an amber with an API create them, docs/security.md); PUT /snapshot/load also
 * needs a process with no configuration yet, which its handler checks.
 */
#define PH_PRE    API_PHASE_BIT(VM_NOT_STARTED)
#define PH_BOOTED (API_PHASE_BIT(VM_RUNNING) | API_PHASE_BIT(VM_PAUSED))
#define PH_ANY    (PH_PRE | PH_BOOTED | API_PHASE_BIT(VM_STOPPED))
#define PH_PAUSED API_PHASE_BIT(VM_PAUSED)

struct route_method {
    enum http_method method;
    api_handler fn;
    int body;
    unsigned phases; /* API_PHASE_BIT()s of the states that may serve it */
};

struct route {
    const char *path; /* exact path, or a prefix ending in '/' followed by an {id} */
    bool has_id;
    struct route_method m[3];
};

static const struct route routes[] = {
    {"/", false, {{HTTP_GET, h_get_root, BODY_NONE, PH_ANY}}},
    {"/version", false, {{HTTP_GET, h_get_version, BODY_NONE, PH_ANY}}},
    {"/machine-config",
     false,
     {{HTTP_GET, h_get_machine, BODY_NONE, PH_ANY},
      {HTTP_PUT, h_put_machine, BODY_JSON, PH_PRE},
      {HTTP_PATCH, h_patch_machine, BODY_JSON, PH_PRE}}},
    {"/boot-source", false, {{HTTP_PUT, h_put_boot, BODY_JSON, PH_PRE}}},
    {"/drives/",
     true,
     {{HTTP_PUT, h_put_drive, BODY_JSON, PH_PRE},
      {HTTP_PATCH, h_patch_drive, BODY_JSON, PH_BOOTED}}},
    {"/network-interfaces/",
     true,
     {{HTTP_PUT, h_put_net, BODY_JSON, PH_PRE}, {HTTP_PATCH, h_patch_net, BODY_JSON, PH_BOOTED}}},
    {"/vsock", false, {{HTTP_PUT, h_put_vsock, BODY_JSON, PH_PRE}}},
    {"/entropy", false, {{HTTP_PUT, h_put_entropy, BODY_JSON, PH_PRE}}},
    {"/logger", false, {{HTTP_PUT, h_put_logger, BODY_JSON, PH_PRE}}},
    {"/metrics", false, {{HTTP_PUT, h_put_metrics, BODY_JSON, PH_PRE}}},
    {"/actions", false, {{HTTP_PUT, h_put_actions, BODY_JSON, PH_ANY}}},
    {"/vm", false, {{HTTP_PATCH, h_patch_vm, BODY_JSON, PH_BOOTED}}},
    {"/vm/config", false, {{HTTP_GET, h_get_vm_config, BODY_NONE, PH_ANY}}},
    {"/pause", false, {{HTTP_POST, h_post_pause, BODY_NONE, PH_ANY}}},
    {"/resume", false, {{HTTP_POST, h_post_resume, BODY_NONE, PH_ANY}}},
    {"/snapshot/create", false, {{HTTP_PUT, h_put_snapshot_create, BODY_JSON, PH_PAUSED}}},
    {"/snapshot/load", false, {{HTTP_PUT, h_put_snapshot_load, BODY_JSON, PH_PRE}}},
    {"/timeout",
     false,
     {{HTTP_GET, h_get_timeout, BODY_NONE, PH_ANY}, {HTTP_PUT, h_put_timeout, BODY_JSON, PH_ANY}}},
};

#define NROUTES (sizeof(routes) / sizeof(routes[0]))
static const char *const method_names[] = {"GET", "PUT", "PATCH", "POST"};

/* Firecracker endpoints amber does not offer, each with what lies under it: 400 rather than 404,
 * so the reason is clear. (/snapshot/create and /snapshot/load are routes above.) */
static const char *const unsupported_prefixes[] = {
    "/balloon", "/mmds", "/snapshot", "/cpu-config", "/serial", "/hotplug", "/pmem", NULL};

void api_response_free(struct api_response *r)
{
    free(r->body);
    r->body = NULL;
    r->body_len = 0;
}

void resp_json(struct api_response *r, int status, struct json_object *o)
{
    api_response_free(r);
    size_t len = 0;
    const char *s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);
    r->body = s ? strndup(s, len) : NULL;
    r->body_len = r->body ? len : 0;
    r->status = r->body || !s ? status : 500;
    json_object_put(o);
}

void resp_error(struct api_response *r, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct json_object *o = json_object_new_object();
    json_object_object_add(o, "fault_message", json_object_new_string(msg));
    resp_json(r, status, o);
}

void resp_empty(struct api_response *r)
{
    api_response_free(r);
    r->status = 204;
}

int api_backend_status(int err)
{
    switch (-err) {
    case EINVAL:
    case ENOENT:
    case EACCES:
    case EISDIR:
    case ENOTDIR:
    case ENOEXEC:
    case ENAMETOOLONG:
    case EEXIST:
    case EADDRINUSE:
        return 400;
    default:
        return 500;
    }
}

static const struct route *find_route(const char *path, const char **id)
{
    *id = NULL;
    for (size_t i = 0; i < NROUTES; i++) {
        const struct route *rt = &routes[i];
        if (!rt->has_id) {
            if (strcmp(path, rt->path) == 0)
                return rt;
            continue;
        }
        size_t n = strlen(rt->path);
        if (strncmp(path, rt->path, n) == 0 && path[n] && !strchr(path + n, '/')) {
            *id = path + n;
            return rt;
        }
    }
    return NULL;
}

/* Names of the states in phases, "Not started, Running" style, into buf. */
static void phase_names(unsigned phases, char *buf, size_t len)
{
    buf[0] = '\0';
    for (int s = VM_NOT_STARTED; s <= VM_STOPPED; s++) {
        size_t used = strlen(buf);
        if (phases & API_PHASE_BIT(s))
            snprintf(buf + used, len - used, "%s%s", used ? ", " : "",
                     vmstate_name((enum vm_state)s));
    }
}

static void refuse_phase(const struct http_request *req, const struct route *rt, unsigned phases,
                         enum vm_state now, struct api_response *r)
{
    char when[64];
    phase_names(phases, when, sizeof(when));
    const char *path = rt->has_id ? req->path : rt->path;
    if (phases == PH_PRE)
        resp_error(r, 400, "%s %s is not supported after boot (VM state: %s)", req->method_name,
                   path, vmstate_name(now));
    else
        resp_error(r, 400, "%s %s is not supported in VM state %s (allowed in: %s)",
                   req->method_name, path, vmstate_name(now), when);
}

static void route(struct api_core *c, const struct http_request *req, struct api_response *r)
{
    const char *id;
    const struct route *rt = find_route(req->path, &id);
    if (!rt) {
        for (const char *const *p = unsupported_prefixes; *p; p++) {
            size_t n = strlen(*p);
            if (strncmp(req->path, *p, n) == 0 && (!req->path[n] || req->path[n] == '/')) {
                resp_error(r, 400, "%s is not supported by amber", *p);
                return;
            }
        }
        resp_error(r, 404, "unknown path");
        return;
    }
    const struct route_method *m = NULL;
    char allow[64] = "";
    for (int i = 0; i < 3 && rt->m[i].fn; i++) {
        if (rt->m[i].method == req->method)
            m = &rt->m[i];
        size_t used = strlen(allow);
        snprintf(allow + used, sizeof(allow) - used, "%s%s", used ? ", " : "",
                 method_names[rt->m[i].method]);
    }
    if (!m) {
        snprintf(r->headers, sizeof(r->headers), "Allow: %s\r\n", allow);
        resp_error(r, 405, "method %s is not allowed on %s (allowed: %s)", req->method_name,
                   rt->path, allow);
        return;
    }
    if (id && !jf_valid_id(id)) {
        resp_error(r, 400, "invalid id in path: must match [A-Za-z0-9_]{1,64}");
        return;
    }
    if (!(m->phases & API_PHASE_BIT(c->st.state))) {
        refuse_phase(req, rt, m->phases, c->st.state, r);
        return;
    }
    struct json_object *body = NULL;
    if (m->body == BODY_JSON) {
        char err[256];
        body = jf_parse(req->body, req->body_len, err, sizeof(err));
        if (!body) {
            resp_error(r, 400, "%s", err);
            return;
        }
    }
    m->fn(c, body, id, r);
    json_object_put(body);
    /* Firecracker refuses snapshot/load once the VM was configured (logger and metrics are
     * not part of the VM). */
    if (m->method != HTTP_GET && r->status < 300 && strncmp(rt->path, "/snapshot/", 10) &&
        strcmp(rt->path, "/logger") && strcmp(rt->path, "/metrics"))
        c->configured = true;
}

void api_core_route(struct api_core *c, const struct http_request *req, struct api_response *r)
{
    memset(r, 0, sizeof(*r));
    c->requests++;
    route(c, req, r);
    if (r->status >= 400)
        c->errors++;
}

unsigned api_route_count(void)
{
    unsigned n = 0;
    for (size_t i = 0; i < NROUTES; i++)
        for (int j = 0; j < 3 && routes[i].m[j].fn; j++)
            n++;
    return n;
}

bool api_route_at(unsigned i, const char **path, bool *has_id, const char **method,
                  unsigned *phases)
{
    for (size_t k = 0; k < NROUTES; k++) {
        for (int j = 0; j < 3 && routes[k].m[j].fn; j++) {
            if (i--)
                continue;
            *path = routes[k].path;
            *has_id = routes[k].has_id;
            *method = method_names[routes[k].m[j].method];
            *phases = routes[k].m[j].phases;
            return true;
        }
    }
    return false;
}
