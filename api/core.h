/* The API's request-handling core, shared by the socket server, the unit tests and the fuzzer:
 * routing, handlers, VM state and the logger/metrics sinks (no sockets here). */
#ifndef AMBER_API_CORE_H
#define AMBER_API_CORE_H

#include <json-c/json.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include "api/api.h"
#include "api/http.h"
#include "api/state.h"

/* What a file named in a PUT is for (api_check_file). */
enum api_file_kind { API_FILE_KERNEL, API_FILE_INITRD, API_FILE_DRIVE, API_FILE_DRIVE_RO };

/* One response: status, optional JSON body and extra header lines. */
struct api_response {
    int status;
    char *body; /* malloc'd, or NULL for none */
    size_t body_len;
    char headers[96]; /* extra header lines, each ending in "\r\n" (e.g. Allow) */
};

struct api_core {
    struct vm_config *cfg;
    struct api_backend be;
    struct vm_status st;
    int log_fd;     /* our logger sink, or -1 */
    int metrics_fd; /* metrics sink, or -1 */
    /* Opens a logger/metrics path; returns an fd or -errno. Tests and the fuzzer replace it. */
    int (*open_sink)(const char *path);
    uint64_t requests, errors;
    bool configured; /* a configuration PUT/PATCH succeeded: snapshot/load is refused */
    uint64_t metrics_lines, metrics_dropped;
    /* Checks a file named in PUT /boot-source or /drives (api_check_file; NULL: no check). */
    int (*check_file)(const char *path, enum api_file_kind kind, const char *field, char *err,
                      size_t errlen);
    uint64_t deadline_ms; /* PUT /timeout: CLOCK_MONOTONIC ms when it fires, 0 = none */
    int on_timeout;       /* 0 kill, 1 pause */
};

/* Initialise c for cfg and a copy of be (NOT_STARTED, no sinks). */
void api_core_init(struct api_core *c, struct vm_config *cfg, const struct api_backend *be);

/* Close the sinks c opened (detaching the logger sink if it is ours). */
void api_core_fini(struct api_core *c);

/* Handle one request, filling *resp (free it with api_response_free). Never fails. */
void api_core_route(struct api_core *c, const struct http_request *req, struct api_response *resp);

/* The bit for VM state s in a route's phase mask. */
#define API_PHASE_BIT(s) (1u << (s))

/* How many (path, method) routes the router serves. */
unsigned api_route_count(void);

/*
 * The i-th route: its path (a prefix ending in '/' when has_id, the {id} follows), method name
 * and the API_PHASE_BIT()s of the VM states that may serve it; any other state gets a 400 with
 * a fault_message naming the state. Returns false past the end.
 */
bool api_route_at(unsigned i, const char **path, bool *has_id, const char **method,
                  unsigned *phases);

/* Free resp's body. */
void api_response_free(struct api_response *resp);

/* Apply a state event now (api_set_started/api_set_stopped). Returns 0 or -EINVAL. */
int api_core_event(struct api_core *c, enum vm_event ev);

/*
 * Open cfg's logger (if which_logger) and/or metrics (which_metrics) paths with open_sink and
 * install them, closing what they replace. Returns 0 or -errno with err set.
 */
int api_core_open_sinks(struct api_core *c, bool which_logger, bool which_metrics, char *err,
                        size_t errlen);

/* Write one metrics line to the metrics sink, never blocking. 0, -ENOENT or -EAGAIN (dropped). */
int api_core_flush_metrics(struct api_core *c);

/* If the /timeout deadline has passed at now_ms (CLOCK_MONOTONIC), act once: pause the VM, or
 * stop the sandbox through the back end's stop op. Called on the API's 1 s tick. */
void api_core_check_deadline(struct api_core *c, uint64_t now_ms);

/* Refuse, as Firecracker does at PUT time, a file that does not exist, is of the wrong type
 * (kernel, initrd: a regular file; drive: a regular file or block device) or cannot be opened
 * (read, or read-write for a writable drive). stat/access only. Returns 0, or -errno with a
 * message naming field and path in err. */
int api_check_file(const char *path, enum api_file_kind kind, const char *field, char *err,
                   size_t errlen);
/* api_check_file on body[field] (resolved as jf_path does) through c->check_file; 0 when the
 * field is absent or not a string (the section's validation reports that). */
int api_check_body_file(struct api_core *c, struct json_object *body, const char *field,
                        enum api_file_kind kind, char *err, size_t errlen);

/* Response helpers for the handlers. resp_json takes ownership of o. */
void resp_error(struct api_response *r, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void resp_json(struct api_response *r, int status, struct json_object *o);
void resp_empty(struct api_response *r);

/* Status for a back-end error: 400 when the client caused it, else 500. */
int api_backend_status(int err);

/* Handlers: body is the parsed JSON body (NULL for GET/POST), id the {id} path segment or NULL. */
typedef void (*api_handler)(struct api_core *c, struct json_object *body, const char *id,
                            struct api_response *r);

void h_get_machine(struct api_core *c, struct json_object *b, const char *id,
                   struct api_response *r);
void h_put_machine(struct api_core *c, struct json_object *b, const char *id,
                   struct api_response *r);
void h_patch_machine(struct api_core *c, struct json_object *b, const char *id,
                     struct api_response *r);
void h_put_boot(struct api_core *c, struct json_object *b, const char *id, struct api_response *r);
void h_put_drive(struct api_core *c, struct json_object *b, const char *id, struct api_response *r);
void h_patch_drive(struct api_core *c, struct json_object *b, const char *id,
                   struct api_response *r);
void h_put_net(struct api_core *c, struct json_object *b, const char *id, struct api_response *r);
void h_patch_net(struct api_core *c, struct json_object *b, const char *id, struct api_response *r);
void h_put_vsock(struct api_core *c, struct json_object *b, const char *id, struct api_response *r);
void h_put_entropy(struct api_core *c, struct json_object *b, const char *id,
                   struct api_response *r);
void h_put_logger(struct api_core *c, struct json_object *b, const char *id,
                  struct api_response *r);
void h_put_metrics(struct api_core *c, struct json_object *b, const char *id,
                   struct api_response *r);
void h_get_vm_config(struct api_core *c, struct json_object *b, const char *id,
                     struct api_response *r);
void h_get_root(struct api_core *c, struct json_object *b, const char *id, struct api_response *r);
void h_get_version(struct api_core *c, struct json_object *b, const char *id,
                   struct api_response *r);
void h_put_actions(struct api_core *c, struct json_object *b, const char *id,
                   struct api_response *r);
void h_patch_vm(struct api_core *c, struct json_object *b, const char *id, struct api_response *r);
void h_post_pause(struct api_core *c, struct json_object *b, const char *id,
                  struct api_response *r);
void h_post_resume(struct api_core *c, struct json_object *b, const char *id,
                   struct api_response *r);
void h_put_snapshot_create(struct api_core *c, struct json_object *b, const char *id,
                           struct api_response *r);
void h_put_snapshot_load(struct api_core *c, struct json_object *b, const char *id,
                         struct api_response *r);
void h_get_timeout(struct api_core *c, struct json_object *b, const char *id,
                   struct api_response *r);
void h_put_timeout(struct api_core *c, struct json_object *b, const char *id,
                   struct api_response *r);

#endif
