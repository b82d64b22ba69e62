/* libFuzzer target: the HTTP parser, then the router and handlers (mock back end) on every
 * request it accepts, across a pipelined stream split at a fuzzer-chosen point. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/core.h"
#include "vmm/log.h"

static int f_ok(void *ctx, char *err, size_t n)
{
    return *(int *)ctx;
}
static int f_start(void *ctx, const struct vm_config *cfg, char *err, size_t n)
{
    return f_ok(ctx, err, n);
}
static int f_swap(void *ctx, const char *id, const char *path, char *err, size_t n)
{
    return f_ok(ctx, err, n);
}
static int f_bind(void *ctx, const struct vsock_config *v, char *err, size_t n)
{
    return f_ok(ctx, err, n);
}
/* Never create files from fuzz input. */
static int f_open(const char *path)
{
    int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    int be_ret = (data[0] & 1) ? -EIO : 0;
    size_t split = data[1] % (size - 1);
    data += 2;
    size -= 2;
    log_set_level(LOG_ERROR);
    struct vm_config *cfg = calloc(1, sizeof(*cfg));
    cfg->vcpus = 1;
    cfg->mem_mib = 128;
    struct api_backend be = {&be_ret, f_start, f_ok, f_ok, f_ok, f_swap, f_bind, NULL};
    struct api_core core;
    api_core_init(&core, cfg, &be);
    core.open_sink = f_open;

    /* Feed in two chunks, as two reads would arrive. */
    char *buf = malloc(size + 1);
    size_t have = 0, off = 0;
    struct http_parser p;
    http_parser_reset(&p);
    for (int chunk = 0; chunk < 2; chunk++) {
        size_t add = chunk == 0 ? split : size - split;
        memcpy(buf + have, data + have, add);
        have += add;
        for (;;) {
            struct http_request req;
            int used = http_parse(&p, buf + off, have - off, &req);
            if (used <= 0) {
                if (used < 0)
                    goto out;
                break;
            }
            struct api_response r;
            api_core_route(&core, &req, &r);
            if (r.status < 200 || r.status > 599)
                abort();
            char head[512];
            if (http_write_head(head, sizeof(head), r.status, r.body_len, r.headers, false) < 0)
                abort();
            api_response_free(&r);
            off += (size_t)used;
        }
    }
out:
    free(buf);
    api_core_fini(&core);
    free(cfg);
    return 0;
}
