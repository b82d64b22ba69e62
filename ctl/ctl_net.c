/* amberctl net: sandbox networking's command-line face (up, down, gc, check, exec), driven by
 * the Python SDK; and the pieces amberctl create uses for --network. */
#include "ctl/ctl_net.h"

#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NET_USAGE                                                                                  \
    "net up --id ID --dir DIR [--allow-out R]... [--deny-out R]... | net down --id ID |\n"         \
    "         net gc | net check [--allow-out R]... [--deny-out R]... | "                          \
    "net exec --id ID -- PROG [ARG]...\n"                                                          \
    "         (R: A.B.C.D[/N][:PORT[-PORT]]; see docs/network.md)"

enum { OPT_NET_ID = 0x300, OPT_NET_DIR, OPT_NET_ALLOW, OPT_NET_DENY };

int ctl_net_opt(struct net_policy *p, bool allow, const char *arg)
{
    char err[160];
    if (net_policy_add(p, allow, arg, err, sizeof(err)) == 0)
        return 0;
    fprintf(stderr, "amberctl: bad --%s: %s\n", allow ? "allow-out" : "deny-out", err);
    return -1;
}

struct json_object *ctl_net_json(const struct net_info *info, const struct net_policy *p)
{
    struct json_object *o = json_object_new_object(), *dns = json_object_new_array();
    struct json_object *allow = json_object_new_array(), *deny = json_object_new_array();
    char s[NET_RULE_MAX_LEN + 8], script[1024], arg[64];
    for (int i = 0; i < info->ndns; i++)
        json_object_array_add(dns, json_object_new_string(info->dns[i]));
    for (int i = 0; i < p->nallow; i++) {
        net_rule_format(&p->allow[i], s, sizeof(s));
        json_object_array_add(allow, json_object_new_string(s));
    }
    for (int i = 0; i < p->ndeny; i++) {
        net_rule_format(&p->deny[i], s, sizeof(s));
        json_object_array_add(deny, json_object_new_string(s));
    }
    if (net_guest_script(info, script, sizeof(script)) < 0)
        script[0] = '\0';
    snprintf(arg, sizeof(arg), "tap=%s,mac=%s", NET_TAP, NET_GUEST_MAC);
    json_object_object_add(o, "netns", json_object_new_string(info->ns));
    json_object_object_add(o, "host_if", json_object_new_string(info->host_if));
    json_object_object_add(o, "host_ip", json_object_new_string(info->host_ip));
    json_object_object_add(o, "ns_ip", json_object_new_string(info->ns_ip));
    json_object_object_add(o, "tap", json_object_new_string(NET_TAP));
    json_object_object_add(o, "guest_ip", json_object_new_string(NET_GUEST_IP));
    json_object_object_add(o, "gateway", json_object_new_string(NET_GATEWAY));
    json_object_object_add(o, "mac", json_object_new_string(NET_GUEST_MAC));
    json_object_object_add(o, "dns", dns);
    json_object_object_add(o, "allow_out", allow);
    json_object_object_add(o, "deny_out", deny);
    json_object_object_add(o, "amber_net_arg", json_object_new_string(arg));
    json_object_object_add(o, "guest_script", json_object_new_string(script));
    return o;
}

int ctl_net_guest_setup(const char *vsock_path, const struct net_info *info)
{
    char script[1024];
    if (net_guest_script(info, script, sizeof(script)) < 0)
        return -E2BIG;
    struct agent_addr a = {.path = vsock_path, .hybrid = true, .timeout_ms = 10000};
    struct agent_exec_spec spec = {.shell = script, .timeout_ms = 30000};
    struct agent_exec_io io = {
        .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = 2, .resize_fd = -1, .size_fd = -1};
    struct agent_exec_result res;
    struct agent_error err;
    int r = agent_exec(&a, &spec, &io, &res, &err);
    if (r < 0) {
        fprintf(stderr, "amberctl: guest network set-up: %s\n", err.msg);
        return r;
    }
    if (res.signal || res.exit_code) {
        fprintf(stderr, "amberctl: guest network set-up exited %d (signal %d)\n", res.exit_code,
                res.signal);
        return -EIO;
    }
    return 0;
}

bool ctl_net_refuse(const char *id, const char *what)
{
    struct ctl_target t = {.id = id};
    if (ctl_target_dir(&t) < 0)
        return false;
    char path[700];
    snprintf(path, sizeof(path), "%s/config.json", t.dir);
    struct json_object *cfg = json_object_from_file(path);
    bool net = cfg && json_object_object_get_ex(cfg, "network", NULL);
    json_object_put(cfg);
    if (net)
        fprintf(stderr, "amberctl: sandbox %s: %s is not supported for a sandbox with --network\n",
                id, what);
    return net;
}

static int net_exec(int argc, char **argv, const char *id)
{
    if (!id || optind >= argc) {
        fprintf(stderr, "usage: amberctl %s\n", NET_USAGE);
        return CTL_USAGE;
    }
    int r = net_enter(id);
    if (r < 0) {
        fprintf(stderr, "amberctl: net exec: no network namespace for sandbox %s: %s\n", id,
                strerror(-r));
        return CTL_NOT_FOUND;
    }
    execv(argv[optind], argv + optind);
    fprintf(stderr, "amberctl: net exec: cannot run %s: %s\n", argv[optind], strerror(errno));
    return CTL_FAIL;
}

int ctl_net(int argc, char **argv)
{
    static const struct option opts[] = {
        {"id", required_argument, NULL, OPT_NET_ID},
        {"dir", required_argument, NULL, OPT_NET_DIR},
        {"allow-out", required_argument, NULL, OPT_NET_ALLOW},
        {"deny-out", required_argument, NULL, OPT_NET_DENY},
        {"json", no_argument, NULL, 'j'},
        {NULL, 0, NULL, 0},
    };
    if (argc < 2) {
        fprintf(stderr, "usage: amberctl %s\n", NET_USAGE);
        return CTL_USAGE;
    }
    const char *verb = argv[1];
    const char *id = NULL, *dir = NULL;
    struct net_policy *p = calloc(1, sizeof(*p));
    if (!p)
        return CTL_FAIL;
    int ch, rc = CTL_USAGE;
    optind = 1;
    /* "+": stop at the first non-option, so that net exec's program keeps its own options. */
    while ((ch = getopt_long(argc - 1, argv + 1, "+", opts, NULL)) != -1) {
        switch (ch) {
        case OPT_NET_ID:
            id = optarg;
            break;
        case OPT_NET_DIR:
            dir = optarg;
            break;
        case OPT_NET_ALLOW:
        case OPT_NET_DENY:
            if (ctl_net_opt(p, ch == OPT_NET_ALLOW, optarg) < 0)
                goto out;
            break;
        case 'j':
            break;
        default:
            goto usage;
        }
    }
    if (id && !ctl_id_valid(id)) {
        fprintf(stderr, "amberctl: bad id '%s': ids match [A-Za-z0-9_-]{1,64}\n", id);
        goto out;
    }
    if (strcmp(verb, "exec") == 0) {
        optind++; /* back to argv's numbering */
        rc = net_exec(argc, argv, id);
        goto out;
    }
    if (optind + 1 != argc)
        goto usage;
    if (strcmp(verb, "check") == 0) {
        rc = CTL_OK;
    } else if (strcmp(verb, "gc") == 0) {
        printf("%d removed\n", net_gc());
        rc = CTL_OK;
    } else if (strcmp(verb, "down") == 0 && id) {
        rc = net_down(id) < 0 ? CTL_FAIL : CTL_OK;
    } else if (strcmp(verb, "up") == 0 && id && dir) {
        struct net_info info;
        char err[1400];
        if (net_up(id, dir, p, &info, err, sizeof(err)) < 0) {
            fprintf(stderr, "amberctl: sandbox %s: network set-up failed: %s\n", id, err);
            rc = CTL_FAIL;
            goto out;
        }
        struct json_object *o = ctl_net_json(&info, p);
        printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
        json_object_put(o);
        rc = CTL_OK;
    } else {
        goto usage;
    }
    goto out;
usage:
    fprintf(stderr, "usage: amberctl %s\n", NET_USAGE);
    rc = CTL_USAGE;
out:
    free(p);
    return rc;
}
