/* amberctl sandbox commands: list, status, pause, resume, logs, delete (runtime dir + API). */
#include "ctl/amberctl.h"
#include "ctl/ctl_store.h"
#include "ctl/http_client.h"
#include "ctl/netns.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define API_TIMEOUT_MS 10000

static int parse_common(int argc, char **argv, struct ctl_target *t, const char *usage,
                        long long *timeout_ms, long *tail)
{
    static const struct option opts[] = {
        CTL_TARGET_OPTIONS,
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"tail", required_argument, NULL, OPT_TAIL},
        {NULL, 0, NULL, 0},
    };
    int ch;
    optind = 0;
    while ((ch = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        int r = ctl_target_opt(t, ch, optarg);
        if (r > 0)
            continue;
        if (r == 0 && ch == OPT_TIMEOUT && timeout_ms &&
            (*timeout_ms = ctl_parse_seconds_ms(optarg)) > 0)
            continue;
        if (r == 0 && ch == OPT_TAIL && tail && (*tail = atol(optarg)) > 0)
            continue;
        fprintf(stderr, "usage: amberctl %s\n", usage);
        return -EINVAL;
    }
    if (optind != argc) {
        fprintf(stderr, "usage: amberctl %s\n", usage);
        return -EINVAL;
    }
    return 0;
}

/*
 * Find the API socket of t (--api, or --id's runtime dir). A stale directory is reported and
 * cleaned up. Returns CTL_OK or the exit code to return.
 */
static int resolve_api(struct ctl_target *t, const char **api)
{
    if (t->api_path) {
        *api = t->api_path;
        return CTL_OK;
    }
    if (!t->id) {
        fprintf(stderr, "amberctl: give --id or --api\n");
        return CTL_USAGE;
    }
    int r = ctl_target_dir(t);
    if (r == -EINVAL) {
        fprintf(stderr, "amberctl: bad sandbox id '%s'\n", t->id);
        return CTL_USAGE;
    }
    if (r < 0) {
        fprintf(stderr, "amberctl: no sandbox '%s'\n", t->id);
        return CTL_NOT_FOUND;
    }
    int pid;
    if (ctl_sandbox_probe(t->dir, &pid) == CTL_STALE) {
        ctl_sandbox_reap(t->dir, t->id, false);
        return CTL_NOT_FOUND;
    }
    snprintf(t->path_buf, sizeof(t->path_buf), "%s/api.sock", t->dir);
    *api = t->path_buf;
    return CTL_OK;
}

/* One API call; prints failures. Returns CTL_OK with *out (caller puts), or an exit code. */
static int api_call(const char *api, const char *method, const char *path, const char *body,
                    struct json_object **out, int *status)
{
    struct httpc_response resp;
    int r = httpc_request(api, method, path, body, API_TIMEOUT_MS, &resp);
    if (r == -ENOENT || r == -ECONNREFUSED) {
        fprintf(stderr, "amberctl: nothing serves %s (amber is gone?)\n", api);
        return CTL_NOT_FOUND;
    }
    if (r < 0) {
        fprintf(stderr, "amberctl: %s %s: %s\n", method, path, strerror(-r));
        return CTL_FAIL;
    }
    *status = resp.status;
    *out = resp.body_len ? json_tokener_parse(resp.body) : NULL;
    int rc = CTL_OK;
    if (resp.status >= 300) {
        struct json_object *msg = NULL;
        if (*out)
            json_object_object_get_ex(*out, "fault_message", &msg);
        fprintf(stderr, "amberctl: %s %s: %d %s\n", method, path, resp.status,
                msg ? json_object_get_string(msg) : resp.body);
        json_object_put(*out);
        *out = NULL;
        rc = resp.status == 409 ? CTL_CONFLICT : resp.status == 404 ? CTL_NOT_FOUND : CTL_FAIL;
    }
    httpc_response_free(&resp);
    return rc;
}

static const char *jstr(struct json_object *o, const char *key, const char *def)
{
    struct json_object *v;
    if (o && json_object_object_get_ex(o, key, &v) && v)
        return json_object_get_string(v);
    return def;
}

static void print_json(struct json_object *o)
{
    printf("%s\n",
           json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
                                                 JSON_C_TO_STRING_NOSLASHESCAPE));
}

int ctl_status(int argc, char **argv)
{
    struct ctl_target t = {0};
    const char *api;
    struct json_object *o = NULL;
    int status, rc;
    if (parse_common(argc, argv, &t, "status (--id ID | --api PATH) [--json]", NULL, NULL) < 0)
        return CTL_USAGE;
    if ((rc = resolve_api(&t, &api)) != CTL_OK)
        return rc;
    if ((rc = api_call(api, "GET", "/", NULL, &o, &status)) != CTL_OK)
        return rc;
    if (t.json) {
        print_json(o);
    } else {
        printf("id:       %s\nstate:    %s\n", jstr(o, "id", "?"), jstr(o, "state", "?"));
        printf("vcpus:    %s\nmem_mib:  %s\nuptime:   %s ms\n", jstr(o, "vcpus", "?"),
               jstr(o, "mem_mib", "?"), jstr(o, "uptime_ms", "?"));
        if (strcmp(jstr(o, "state", ""), "Paused") == 0)
            printf("paused_at: %s\n", jstr(o, "paused_at", "?"));
    }
    json_object_put(o);
    return CTL_OK;
}

static int pause_resume(int argc, char **argv, bool pause)
{
    struct ctl_target t = {0};
    const char *api;
    struct json_object *o = NULL;
    int status, rc;
    if (parse_common(argc, argv, &t,
                     pause ? "pause (--id ID | --api PATH) [--json]"
                           : "resume (--id ID | --api PATH) [--json]",
                     NULL, NULL) < 0)
        return CTL_USAGE;
    if ((rc = resolve_api(&t, &api)) != CTL_OK)
        return rc;
    rc = api_call(api, "POST", pause ? "/pause" : "/resume", NULL, &o, &status);
    if (rc != CTL_OK)
        return rc;
    if (t.json)
        print_json(o);
    else if (pause)
        printf("%s paused at %s\n", jstr(o, "sandbox_id", "?"), jstr(o, "paused_at", "?"));
    else
        printf("%s resumed at %s after %s ms\n", jstr(o, "sandbox_id", "?"),
               jstr(o, "resumed_at", "?"), jstr(o, "paused_ms", "?"));
    json_object_put(o);
    return CTL_OK;
}

int ctl_pause(int argc, char **argv)
{
    return pause_resume(argc, argv, true);
}

int ctl_resume(int argc, char **argv)
{
    return pause_resume(argc, argv, false);
}

/* The state of a live sandbox from its API (or "unreachable"). */
static void live_state(const char *dir, char *state, size_t len)
{
    char api[600];
    struct httpc_response resp;
    snprintf(state, len, "unreachable");
    snprintf(api, sizeof(api), "%s/api.sock", dir);
    if (httpc_request(api, "GET", "/", NULL, 2000, &resp) < 0)
        return;
    struct json_object *o = resp.status == 200 ? json_tokener_parse(resp.body) : NULL;
    if (o)
        snprintf(state, len, "%s", jstr(o, "state", "unknown"));
    json_object_put(o);
    httpc_response_free(&resp);
}

int ctl_list(int argc, char **argv)
{
    struct ctl_target t = {0};
    char root[400];
    if (parse_common(argc, argv, &t, "list [--json]", NULL, NULL) < 0)
        return CTL_USAGE;
    if (ctl_runtime_root(root, sizeof(root)) < 0)
        return CTL_FAIL;
    struct json_object *arr = json_object_new_array();
    DIR *d = opendir(root);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        char dir[600], state[32];
        int pid;
        if (!ctl_id_valid(de->d_name))
            continue;
        snprintf(dir, sizeof(dir), "%s/%s", root, de->d_name);
        enum ctl_liveness l = ctl_sandbox_probe(dir, &pid);
        if (l == CTL_STALE) {
            ctl_sandbox_reap(dir, de->d_name, t.json);
            continue;
        }
        if (l == CTL_STARTING)
            snprintf(state, sizeof(state), "Starting");
        else
            live_state(dir, state, sizeof(state));
        struct json_object *o = json_object_new_object();
        json_object_object_add(o, "id", json_object_new_string(de->d_name));
        json_object_object_add(o, "state", json_object_new_string(state));
        json_object_object_add(o, "pid", json_object_new_int(pid));
        json_object_object_add(o, "dir", json_object_new_string(dir));
        json_object_array_add(arr, o);
    }
    if (d)
        closedir(d);
    ctl_list_hibernated(arr);
    net_gc(); /* networks whose sandbox is gone (docs/network.md) */
    if (t.json) {
        print_json(arr);
    } else {
        printf("%-24s %-12s %s\n", "ID", "STATE", "PID");
        for (size_t i = 0; i < json_object_array_length(arr); i++) {
            struct json_object *o = json_object_array_get_idx(arr, i);
            printf("%-24s %-12s %s\n", jstr(o, "id", ""), jstr(o, "state", ""), jstr(o, "pid", ""));
        }
    }
    json_object_put(arr);
    return CTL_OK;
}

int ctl_logs(int argc, char **argv)
{
    struct ctl_target t = {0};
    long tail = 0;
    if (parse_common(argc, argv, &t, "logs --id ID [--tail N]", NULL, &tail) < 0 || !t.id)
        return CTL_USAGE;
    int r = ctl_target_dir(&t);
    if (r < 0) {
        fprintf(stderr, "amberctl: no sandbox '%s'\n", t.id);
        return r == -EINVAL ? CTL_USAGE : CTL_NOT_FOUND;
    }
    char path[600];
    snprintf(path, sizeof(path), "%s/console.log", t.dir);
    FILE *f = fopen(path, "re");
    if (!f) {
        fprintf(stderr, "amberctl: %s: %s\n", path, strerror(errno));
        return CTL_FAIL;
    }
    /* amber caps the console log, so reading it whole is fine. */
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    char chunk[65536];
    size_t n;
    while (mem && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        fwrite(chunk, 1, n, mem);
    fclose(f);
    if (!mem)
        return CTL_FAIL;
    fclose(mem);
    size_t start = 0;
    if (tail > 0) {
        long lines = 0;
        size_t i = len;
        if (i > 0 && buf[i - 1] == '\n')
            i--; /* the final newline ends the last line, it does not start a new one */
        while (i > 0) {
            if (buf[i - 1] == '\n' && ++lines == tail)
                break;
            i--;
        }
        start = i;
    }
    fwrite(buf + start, 1, len - start, stdout);
    free(buf);
    return CTL_OK;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Wait until amber's lock is free (it exited). True if it did within ms. */
static bool wait_gone(const char *dir, long ms)
{
    int pid;
    for (long waited = 0; waited <= ms; waited += 50) {
        if (ctl_sandbox_probe(dir, &pid) != CTL_ALIVE)
            return true;
        sleep_ms(50);
    }
    return false;
}

int ctl_delete(int argc, char **argv)
{
    struct ctl_target t = {0};
    long long timeout_ms = 10000;
    if (parse_common(argc, argv, &t, "delete --id ID [--timeout S]", &timeout_ms, NULL) < 0 ||
        !t.id)
        return CTL_USAGE;
    int r = ctl_target_dir(&t);
    if (r < 0) {
        fprintf(stderr, "amberctl: no sandbox '%s'\n", t.id);
        return r == -EINVAL ? CTL_USAGE : CTL_NOT_FOUND;
    }
    int pid;
    if (ctl_sandbox_probe(t.dir, &pid) == CTL_ALIVE) {
        char state[32];
        live_state(t.dir, state, sizeof(state));
        /* A paused guest cannot answer: go straight to SIGTERM. */
        if (strcmp(state, "Paused") != 0) {
            char vsock[600];
            snprintf(vsock, sizeof(vsock), "%s/vsock.sock", t.dir);
            struct agent_addr a = {.path = vsock, .hybrid = true, .timeout_ms = 2000};
            struct agent_error err;
            if (agent_shutdown(&a, false, &err) < 0) {
                char api[600];
                struct httpc_response resp;
                snprintf(api, sizeof(api), "%s/api.sock", t.dir);
                if (httpc_request(api, "PUT", "/actions", "{\"action_type\": \"SendCtrlAltDel\"}",
                                  2000, &resp) == 0)
                    httpc_response_free(&resp);
            }
        }
        bool gone = wait_gone(t.dir, (long)timeout_ms);
        if (!gone && pid > 0) {
            kill(pid, SIGTERM);
            gone = wait_gone(t.dir, 3000);
        }
        if (!gone && pid > 0) {
            kill(pid, SIGKILL);
            gone = wait_gone(t.dir, 3000);
        }
        if (!gone) {
            fprintf(stderr, "amberctl: sandbox %s (pid %d) did not exit\n", t.id, pid);
            return CTL_FAIL;
        }
    }
    r = ctl_remove_tree(t.dir);
    if (r < 0) {
        fprintf(stderr, "amberctl: removing %s: %s\n", t.dir, strerror(-r));
        return CTL_FAIL;
    }
    if (net_down(t.id) < 0) {
        fprintf(stderr, "amberctl: sandbox %s: its network could not be removed\n", t.id);
        return CTL_FAIL;
    }
    if (!t.json)
        printf("%s deleted\n", t.id);
    return CTL_OK;
}
