/* The API core's lifetime and its output sinks: the logger FIFO/file and newline-delimited JSON
 * metrics, both opened so that a FIFO with no reader works and never blocks. */
#include "api/core.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config/jfield.h"
#include "vmm/log.h"

/* O_RDWR: a FIFO with no reader opens (O_WRONLY|O_NONBLOCK would fail with ENXIO). */
static int open_sink_default(const char *path)
{
    int fd = open(path, O_RDWR | O_NONBLOCK | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    return fd < 0 ? -errno : fd;
}

void api_core_init(struct api_core *c, struct vm_config *cfg, const struct api_backend *be)
{
    memset(c, 0, sizeof(*c));
    c->cfg = cfg;
    if (be)
        c->be = *be;
    vmstatus_init(&c->st);
    c->log_fd = -1;
    c->metrics_fd = -1;
    c->open_sink = open_sink_default;
    jf_path_init(); /* now, while getcwd is still allowed; failure shows on a relative path */
    c->check_file = api_check_file;
}

void api_core_fini(struct api_core *c)
{
    if (c->log_fd >= 0) {
        int cur = log_set_sink(-1);
        if (cur != c->log_fd) /* someone else's sink: put it back */
            log_set_sink(cur);
        close(c->log_fd);
        c->log_fd = -1;
    }
    if (c->metrics_fd >= 0) {
        close(c->metrics_fd);
        c->metrics_fd = -1;
    }
}

static enum log_level level_of(const char *name)
{
    if (!strcasecmp(name, "Error") || !strcasecmp(name, "Off"))
        return LOG_ERROR;
    if (!strcasecmp(name, "Warning"))
        return LOG_WARN;
    if (!strcasecmp(name, "Debug") || !strcasecmp(name, "Trace"))
        return LOG_DEBUG;
    return LOG_INFO;
}

int api_core_open_sinks(struct api_core *c, bool which_logger, bool which_metrics, char *err,
                        size_t errlen)
{
    struct vm_config *cfg = c->cfg;
    int lfd = -1, mfd = -1;
    bool log_off = !strcasecmp(cfg->log_level, "Off");
    if (which_logger && cfg->log_path[0] && !log_off) {
        lfd = c->open_sink(cfg->log_path);
        if (lfd < 0) {
            snprintf(err, errlen, "cannot open log_path '%s': %s", cfg->log_path, strerror(-lfd));
            return lfd;
        }
    }
    if (which_metrics && cfg->metrics_path[0]) {
        mfd = c->open_sink(cfg->metrics_path);
        if (mfd < 0) {
            snprintf(err, errlen, "cannot open metrics_path '%s': %s", cfg->metrics_path,
                     strerror(-mfd));
            if (lfd >= 0)
                close(lfd);
            return mfd;
        }
    }
    if (which_logger) {
        if (cfg->log_level[0])
            log_set_level(level_of(cfg->log_level));
        /* A log path with level Off detaches the sink; no path keeps the current one. */
        if (lfd >= 0 || log_off) {
            int old = log_set_sink(lfd);
            if (c->log_fd >= 0 && old == c->log_fd)
                close(old); /* a line racing in from a vCPU thread may be lost: harmless */
            c->log_fd = lfd;
        }
    }
    if (which_metrics && mfd >= 0) {
        if (c->metrics_fd >= 0)
            close(c->metrics_fd);
        c->metrics_fd = mfd;
    }
    return 0;
}

static void add_u64(struct json_object *o, const char *key, uint64_t v)
{
    json_object_object_add(o, key, json_object_new_int64((int64_t)v));
}

int api_core_flush_metrics(struct api_core *c)
{
    if (c->metrics_fd < 0)
        return -ENOENT;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct json_object *o = json_object_new_object();
    add_u64(o, "utc_timestamp_ms", (uint64_t)now.tv_sec * 1000u + (uint64_t)now.tv_nsec / 1000000u);
    if (c->cfg->metrics_emit_id)
        json_object_object_add(o, "id", json_object_new_string(c->cfg->id));
    struct json_object *api = json_object_new_object();
    add_u64(api, "requests", c->requests);
    add_u64(api, "errors", c->errors);
    add_u64(api, "metrics_dropped", c->metrics_dropped);
    json_object_object_add(o, "api_server", api);
    struct json_object *vmm = json_object_new_object();
    json_object_object_add(vmm, "state", json_object_new_string(vmstate_name(c->st.state)));
    add_u64(vmm, "pauses", c->st.npauses);
    add_u64(vmm, "resumes", c->st.nresumes);
    add_u64(vmm, "pause_latency_us_last", c->st.pause_last_us);
    add_u64(vmm, "pause_latency_us_max", c->st.pause_max_us);
    add_u64(vmm, "resume_latency_us_last", c->st.resume_last_us);
    add_u64(vmm, "resume_latency_us_max", c->st.resume_max_us);
    json_object_object_add(o, "vmm", vmm);
    if (c->be.metrics)
        c->be.metrics(c->be.ctx, o);

    size_t len = 0;
    const char *s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);
    int ret = 0;
    char line[PIPE_BUF];
    /* One write of at most PIPE_BUF bytes is atomic on a FIFO: a line is whole or dropped. */
    if (!s || len + 1 > sizeof(line)) {
        ret = -E2BIG;
    } else {
        memcpy(line, s, len);
        line[len] = '\n';
        ssize_t n = write(c->metrics_fd, line, len + 1);
        if (n != (ssize_t)(len + 1))
            ret = -EAGAIN;
    }
    json_object_put(o);
    if (ret)
        c->metrics_dropped++;
    else
        c->metrics_lines++;
    return ret;
}
