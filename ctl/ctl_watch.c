/* amberctl watch: a guest directory's changes (the agent's WATCH), one line per event. */
#include "ctl/agent_client_priv.h"
#include "ctl/amberctl.h"

#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/clock.h"

#define WATCH_USAGE "watch TARGET PATH [--recursive] [--count N] [--for S] [--json]"

enum { OPT_RECURSIVE = 0x400, OPT_COUNT, OPT_FOR };

static const char *event_name(uint64_t ev)
{
    static const char *const names[] = {NULL,     "create", "write",   "remove",
                                        "rename", "chmod",  "overflow"};
    return ev < sizeof(names) / sizeof(names[0]) ? names[ev] : NULL;
}

/* Print one ENTRY: "EVENT PATH" (PATH escaped, "/" appended for a directory) or a JSON line.
 * Returns 0, or -EPROTO for an entry that is not a well-formed event. */
static int print_event(const struct proto_frame *f, bool json)
{
    struct proto_tlv_iter it;
    uint16_t tag;
    const uint8_t *val;
    uint32_t n;
    uint64_t ev = 0, type = 0;
    char path[4 * PROTO_MAX_STR + 1] = "";
    proto_tlv_iter_init(&it, f->payload, f->len);
    while (proto_tlv_next(&it, &tag, &val, &n) > 0) {
        if (tag == TAG_EVENT)
            proto_tlv_u64(val, n, &ev);
        else if (tag == TAG_TYPE)
            proto_tlv_u64(val, n, &type);
        else if (tag == TAG_PATH)
            agent_text_escape(val, n, path, sizeof(path)); /* no guest escape reaches us */
    }
    const char *name = event_name(ev);
    if (!name || !path[0])
        return -EPROTO;
    bool dir = type == PROTO_FT_DIR;
    if (json) {
        struct json_object *o = json_object_new_object();
        json_object_object_add(o, "event", json_object_new_string(name));
        json_object_object_add(o, "path", json_object_new_string(path));
        json_object_object_add(o, "is_dir", json_object_new_boolean(dir));
        printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
                                                             JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
    } else {
        printf("%s %s%s\n", name, path, dir && strcmp(path, "/") ? "/" : "");
    }
    fflush(stdout);
    return 0;
}

int ctl_watch(int argc, char **argv)
{
    static const struct option opts[] = {CTL_TARGET_OPTIONS,
                                         {"recursive", no_argument, NULL, OPT_RECURSIVE},
                                         {"count", required_argument, NULL, OPT_COUNT},
                                         {"for", required_argument, NULL, OPT_FOR},
                                         {NULL, 0, NULL, 0}};
    struct ctl_target t = {0};
    bool recursive = false;
    long count = 0;
    long long for_ms = 0;
    int ch;
    optind = 0;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) { /* options after PATH too */
        char *end;
        if (ch == OPT_RECURSIVE) {
            recursive = true;
        } else if (ch == OPT_COUNT) {
            count = strtol(optarg, &end, 10);
            if (*end || end == optarg || count < 1) {
                fprintf(stderr, "amberctl watch: --count wants a positive number\n");
                return CTL_USAGE;
            }
        } else if (ch == OPT_FOR) {
            if ((for_ms = ctl_parse_seconds_ms(optarg)) < 0) {
                fprintf(stderr, "amberctl watch: bad --for '%s'\n", optarg);
                return CTL_USAGE;
            }
        } else if (ctl_target_opt(&t, ch, optarg) <= 0) {
            fprintf(stderr, "usage: amberctl %s\n", WATCH_USAGE);
            return CTL_USAGE;
        }
    }
    if (argc - optind != 1 || argv[optind][0] != '/') {
        fprintf(stderr, "usage: amberctl %s   (PATH: an absolute guest path)\n", WATCH_USAGE);
        return CTL_USAGE;
    }
    struct agent_addr a;
    int r = ctl_target_agent(&t, &a);
    if (r < 0)
        return r == -ENOENT ? CTL_NOT_FOUND : CTL_USAGE;
    uint8_t req[PROTO_MAX_STR + 64];
    struct proto_buf b = {req, 0, sizeof(req)};
    if (proto_tlv_put_str(&b, TAG_PATH, argv[optind]) < 0 ||
        proto_tlv_put_u64(&b, TAG_RECURSIVE, recursive) < 0) {
        fprintf(stderr, "amberctl watch: path too long\n");
        return CTL_USAGE;
    }
    struct agent_error err = {0};
    struct proto_rx rx = {0};
    int fd = agent_connect(&a, &err), rc = CTL_FAIL;
    if (fd < 0)
        goto fail;
    if (proto_rx_init(&rx) < 0) {
        ac_fail(&err, ENOMEM, "out of memory");
        goto fail;
    }
    if ((r = ac_send(fd, PROTO_WATCH, b.data, b.len)) < 0) {
        ac_fail(&err, r, "sending watch: %s", strerror(-r));
        goto fail;
    }
    uint64_t deadline = for_ms ? clock_now_ms() + (uint64_t)for_ms : 0;
    bool stopping = false;
    long seen = 0;
    for (;;) {
        struct proto_frame f;
        int wait_ms = -1;
        if (deadline && !stopping) {
            uint64_t now = clock_now_ms();
            wait_ms = now >= deadline ? 0 : (int)(deadline - now);
        }
        r = ac_next(fd, &rx, &f, wait_ms);
        if (r == -ETIMEDOUT && !stopping) { /* --for passed: stop, then take what was sent */
            stopping = true;
            if ((r = ac_send(fd, PROTO_EOF, NULL, 0)) == 0)
                continue;
        }
        if (r < 0) {
            ac_fail(&err, r, "reading events: %s", strerror(-r));
            goto fail;
        }
        if (f.type == PROTO_ERROR) {
            ac_error_frame(&f, &err);
            goto fail;
        }
        if (f.type == PROTO_EOF)
            break;
        if (f.type == PROTO_RESULT)
            continue; /* the watch is set */
        if (f.type != PROTO_ENTRY || print_event(&f, t.json) < 0) {
            ac_fail(&err, EPROTO, "unexpected frame from the agent (type 0x%02x)", f.type);
            goto fail;
        }
        if (count && ++seen == count && !stopping) {
            stopping = true;
            ac_send(fd, PROTO_EOF, NULL, 0);
        }
    }
    rc = CTL_OK;
    goto out;
fail:
    fprintf(stderr, "amberctl watch: %s\n", err.msg);
out:
    if (fd >= 0)
        close(fd);
    proto_rx_free(&rx);
    return rc;
}
