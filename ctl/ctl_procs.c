/* amberctl ps and kill: the guest's background commands (agent LIST_PROCS and KILL). */
#include "ctl/agent_client_priv.h"
#include "ctl/amberctl.h"

#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PS_USAGE   "ps TARGET [--all] [--json]"
#define KILL_USAGE "kill TARGET PID [--signal N]"

enum { OPT_ALL = 0x300, OPT_SIGNAL };

/* Parse TARGET options plus --all / --signal; returns 0 or CTL_USAGE (printed). */
static int parse(int argc, char **argv, struct ctl_target *t, const char *usage, bool *all,
                 long *sig)
{
    static const struct option opts[] = {CTL_TARGET_OPTIONS,
                                         {"all", no_argument, NULL, OPT_ALL},
                                         {"signal", required_argument, NULL, OPT_SIGNAL},
                                         {NULL, 0, NULL, 0}};
    int ch;
    optind = 0;
    while ((ch = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        char *end;
        if (ch == OPT_ALL && all) {
            *all = true;
        } else if (ch == OPT_SIGNAL && sig) {
            *sig = strtol(optarg, &end, 10);
            if (*end || end == optarg || *sig < 1 || *sig > 64) {
                fprintf(stderr, "amberctl: --signal must be 1..64\n");
                return CTL_USAGE;
            }
        } else if (ctl_target_opt(t, ch, optarg) <= 0) {
            fprintf(stderr, "usage: amberctl %s\n", usage);
            return CTL_USAGE;
        }
    }
    return 0;
}

/* One LIST_PROCS ENTRY as JSON (values bounded by the codec: strings <= 4096 bytes). */
static struct json_object *entry_json(const struct proto_frame *f)
{
    struct json_object *o = json_object_new_object(), *args = json_object_new_array();
    struct proto_tlv_iter it;
    uint16_t tag;
    const uint8_t *val;
    uint32_t n;
    uint64_t v;
    char *s;
    proto_tlv_iter_init(&it, f->payload, f->len);
    while (proto_tlv_next(&it, &tag, &val, &n) > 0) {
        if ((tag == TAG_PID || tag == TAG_EXIT_CODE || tag == TAG_SIGNAL) &&
            proto_tlv_u64(val, n, &v) == 0 && v <= INT32_MAX) {
            const char *k = tag == TAG_PID ? "pid" : tag == TAG_EXIT_CODE ? "exit_code" : "signal";
            json_object_object_add(o, k, json_object_new_int64((int64_t)v));
        } else if ((tag == TAG_SHELL || tag == TAG_ARGV || tag == TAG_CWD) &&
                   proto_tlv_strdup(val, n, &s) == 0) {
            if (tag == TAG_ARGV)
                json_object_array_add(args, json_object_new_string(s));
            else
                json_object_object_add(o, tag == TAG_SHELL ? "shell" : "cwd",
                                       json_object_new_string(s));
            free(s);
        }
    }
    json_object_object_add(o, "args", args);
    return o;
}

int ctl_ps(int argc, char **argv)
{
    struct ctl_target t = {0};
    bool all = false;
    if (parse(argc, argv, &t, PS_USAGE, &all, NULL) || optind != argc)
        return CTL_USAGE;
    struct agent_addr a;
    int r = ctl_target_agent(&t, &a);
    if (r < 0)
        return r == -ENOENT ? CTL_NOT_FOUND : CTL_USAGE;
    struct agent_error err = {0};
    struct proto_rx rx;
    if (proto_rx_init(&rx) < 0)
        return CTL_FAIL;
    int fd = agent_connect(&a, &err);
    struct json_object *arr = json_object_new_array();
    if (fd < 0 || (r = ac_send(fd, PROTO_LIST_PROCS, NULL, 0)) < 0) {
        fprintf(stderr, "amberctl ps: %s\n", fd < 0 ? err.msg : strerror(-r));
        goto fail;
    }
    for (;;) {
        struct proto_frame f;
        r = ac_next(fd, &rx, &f, ac_timeout(&a));
        if (r < 0 || f.type == PROTO_ERROR || (f.type != PROTO_ENTRY && f.type != PROTO_EOF)) {
            if (r >= 0 && f.type == PROTO_ERROR)
                ac_error_frame(&f, &err);
            fprintf(stderr, "amberctl ps: %s\n",
                    r < 0        ? strerror(-r)
                    : err.msg[0] ? err.msg
                                 : "unexpected frame");
            goto fail;
        }
        if (f.type == PROTO_EOF)
            break;
        struct json_object *o = entry_json(&f), *x;
        bool ended = json_object_object_get_ex(o, "exit_code", &x) ||
                     json_object_object_get_ex(o, "signal", &x);
        if (ended && !all)
            json_object_put(o);
        else
            json_object_array_add(arr, o);
    }
    close(fd);
    proto_rx_free(&rx);
    if (t.json) {
        printf("%s\n", json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PLAIN));
    } else {
        printf("%-8s %-8s %s\n", "PID", "STATE", "COMMAND");
        for (size_t i = 0; i < json_object_array_length(arr); i++) {
            struct json_object *o = json_object_array_get_idx(arr, i), *x, *args;
            char state[24] = "running";
            if (json_object_object_get_ex(o, "exit_code", &x))
                snprintf(state, sizeof(state), "exit %d", json_object_get_int(x));
            else if (json_object_object_get_ex(o, "signal", &x))
                snprintf(state, sizeof(state), "signal %d", json_object_get_int(x));
            printf("%-8d %-8s ",
                   json_object_object_get_ex(o, "pid", &x) ? json_object_get_int(x) : 0, state);
            if (json_object_object_get_ex(o, "shell", &x)) {
                printf("%s\n", json_object_get_string(x));
                continue;
            }
            json_object_object_get_ex(o, "args", &args);
            for (size_t k = 0; k < json_object_array_length(args); k++)
                printf("%s%s", k ? " " : "",
                       json_object_get_string(json_object_array_get_idx(args, k)));
            printf("\n");
        }
    }
    json_object_put(arr);
    return CTL_OK;
fail:
    if (fd >= 0)
        close(fd);
    proto_rx_free(&rx);
    json_object_put(arr);
    return CTL_FAIL;
}

int ctl_kill(int argc, char **argv)
{
    struct ctl_target t = {0};
    long sig = 9;
    if (parse(argc, argv, &t, KILL_USAGE, NULL, &sig))
        return CTL_USAGE;
    char *end;
    long pid = optind + 1 == argc ? strtol(argv[optind], &end, 10) : 0;
    if (optind + 1 != argc || *end || pid < 1 || pid > (1L << 22)) {
        fprintf(stderr, "usage: amberctl %s\n", KILL_USAGE);
        return CTL_USAGE;
    }
    struct agent_addr a;
    int r = ctl_target_agent(&t, &a);
    if (r < 0)
        return r == -ENOENT ? CTL_NOT_FOUND : CTL_USAGE;
    uint8_t buf[64];
    struct proto_buf b = {buf, 0, sizeof(buf)};
    proto_tlv_put_u64(&b, TAG_PID, (uint64_t)pid);
    proto_tlv_put_u64(&b, TAG_SIGNAL, (uint64_t)sig);
    struct agent_error err = {0};
    struct proto_rx rx;
    if (proto_rx_init(&rx) < 0)
        return CTL_FAIL;
    int fd = agent_connect(&a, &err);
    struct proto_frame f;
    if (fd >= 0 && (r = ac_send(fd, PROTO_KILL, b.data, b.len)) == 0)
        r = ac_next(fd, &rx, &f, ac_timeout(&a));
    int status = CTL_OK;
    if (fd < 0) {
        fprintf(stderr, "amberctl kill: %s\n", err.msg);
        status = CTL_FAIL;
    } else if (r < 0) {
        fprintf(stderr, "amberctl kill: %s\n", strerror(-r));
        status = CTL_FAIL;
    } else if (f.type == PROTO_ERROR) {
        r = ac_error_frame(&f, &err);
        fprintf(stderr, "amberctl kill: %s\n", err.msg);
        status = r == -ESRCH ? CTL_NOT_FOUND : CTL_FAIL;
    } else if (f.type == PROTO_RESULT && f.len) {
        printf("command %ld had already ended\n", pid);
    }
    if (fd >= 0)
        close(fd);
    proto_rx_free(&rx);
    return status;
}
