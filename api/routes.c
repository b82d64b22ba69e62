/* The API router: maps method + path to a handler, answers 404/405/400, and builds responses. */
#include "api/core.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/jfield.h"

enum { BODY_NONE, BODY_JSON };

struct route_method {
    enum http_method method;
    api_handler fn;
    int body;
};

struct route {
    const char *path; /* exact path, or a prefix ending in '/' followed by an {id} */
    bool has_id;
    struct route_method m[3];
};

static const struct route routes[] = {
    {"/", false, {{HTTP_GET, h_get_root, BODY_NONE}}},
    {"/version", false, {{HTTP_GET, h_get_version, BODY_NONE}}},
    {"/machine-config",
     false,
     {{HTTP_GET, h_get_machine, BODY_NONE},
      {HTTP_PUT, h_put_machine, BODY_JSON},
      {HTTP_PATCH, h_patch_machine, BODY_JSON}}},
    {"/boot-source", false, {{HTTP_PUT, h_put_boot, BODY_JSON}}},
    {"/drives/",
     true,
     {{HTTP_PUT, h_put_drive, BODY_JSON}, {HTTP_PATCH, h_patch_drive, BODY_JSON}}},
    {"/network-interfaces/",
     true,
     {{HTTP_PUT, h_put_net, BODY_JSON}, {HTTP_PATCH, h_patch_net, BODY_JSON}}},
    {"/vsock", false, {{HTTP_PUT, h_put_vsock, BODY_JSON}}},
    {"/entropy", false, {{HTTP_PUT, h_put_entropy, BODY_JSON}}},
    {"/logger", false, {{HTTP_PUT, h_put_logger, BODY_JSON}}},
    {"/metrics", false, {{HTTP_PUT, h_put_metrics, BODY_JSON}}},
    {"/actions", false, {{HTTP_PUT, h_put_actions, BODY_JSON}}},
    {"/vm", false, {{HTTP_PATCH, h_patch_vm, BODY_JSON}}},
    {"/vm/config", false, {{HTTP_GET, h_get_vm_config, BODY_NONE}}},
    {"/pause", false, {{HTTP_POST, h_post_pause, BODY_NONE}}},
    {"/resume", false, {{HTTP_POST, h_post_resume, BODY_NONE}}},
    {"/timeout",
     false,
     {{HTTP_GET, h_get_timeout, BODY_NONE}, {HTTP_PUT, h_put_timeout, BODY_JSON}}},
};

/* Firecracker endpoints amber does not offer: 400 rather than 404, so the reason is clear. */
static const char *const unsupported_prefixes[] = {
    "/balloon", "/mmds", "/snapshot/", "/cpu-config", "/serial", "/hotplug/", "/pmem/", NULL};

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
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
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

static void route(struct api_core *c, const struct http_request *req, struct api_response *r)
{
    const char *id;
    const struct route *rt = find_route(req->path, &id);
    if (!rt) {
        for (const char *const *p = unsupported_prefixes; *p; p++) {
            if (strncmp(req->path, *p, strlen(*p)) == 0) {
                resp_error(r, 400, "%s is not supported by amber", *p);
                return;
            }
        }
        resp_error(r, 404, "unknown path");
        return;
    }
    const struct route_method *m = NULL;
    char allow[64] = "";
    static const char *const names[] = {"GET", "PUT", "PATCH", "POST"};
    for (int i = 0; i < 3 && rt->m[i].fn; i++) {
        if (rt->m[i].method == req->method)
            m = &rt->m[i];
        size_t used = strlen(allow);
        snprintf(allow + used, sizeof(allow) - used, "%s%s", used ? ", " : "",
                 names[rt->m[i].method]);
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
}

void api_core_route(struct api_core *c, const struct http_request *req, struct api_response *r)
{
    memset(r, 0, sizeof(*r));
    c->requests++;
    route(c, req, r);
    if (r->status >= 400)
        c->errors++;
}
