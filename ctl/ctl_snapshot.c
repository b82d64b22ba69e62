/* amberctl snapshot and restore: a sandbox to a directory (state + memory file) and back. */
#include "ctl/amberctl.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ctl/http_client.h"
#include "ctl/snapshot_merge.h"

#define API_TIMEOUT_MS   120000 /* a snapshot writes all of guest RAM */
#define START_TIMEOUT_MS 10000
#define STATE_FILE       "vm.snap"
#define MEM_FILE         "vm.mem"

/* One API call; prints a failure. Returns CTL_OK or an exit code; *status gets the HTTP code. */
static int call(const char *api, const char *method, const char *path, const char *body,
                int *status)
{
    struct httpc_response resp;
    int r = httpc_request(api, method, path, body, API_TIMEOUT_MS, &resp);
    if (r < 0) {
        fprintf(stderr, "amberctl: %s %s on %s: %s\n", method, path, api, strerror(-r));
        return r == -ENOENT || r == -ECONNREFUSED ? CTL_NOT_FOUND : CTL_FAIL;
    }
    *status = resp.status;
    int rc = CTL_OK;
    if (resp.status >= 300) {
        struct json_object *o = resp.body_len ? json_tokener_parse(resp.body) : NULL, *msg = NULL;
        if (o)
            json_object_object_get_ex(o, "fault_message", &msg);
        fprintf(stderr, "amberctl: %s %s: %d %s\n", method, path, resp.status,
                msg         ? json_object_get_string(msg)
                : resp.body ? resp.body
                            : "");
        json_object_put(o);
        rc = CTL_FAIL;
    }
    httpc_response_free(&resp);
    return rc;
}

/* A JSON body {key: value, ...} from pairs (NULL-terminated); the caller frees it. */
static char *body_of(const char *const *kv)
{
    struct json_object *o = json_object_new_object();
    for (; kv[0]; kv += 2)
        json_object_object_add(o, kv[0], json_object_new_string(kv[1]));
    char *s = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    json_object_put(o);
    return s;
}

#define OPT_FLAG 0x200 /* this file's one boolean option: --diff or --track-dirty-pages */

/* Target options, DIR, and the boolean option flag_name (NULL: none) into *flag. */
static int parse(int argc, char **argv, struct ctl_target *t, const char *usage, char **dir,
                 bool create, const char *flag_name, bool *flag)
{
    struct option opts[] = {
        CTL_TARGET_OPTIONS, {flag_name, no_argument, NULL, OPT_FLAG}, {NULL, 0, NULL, 0}};
    int ch;
    optind = 0;
    while ((ch = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        if (ch == OPT_FLAG && flag) {
            *flag = true;
            continue;
        }
        if (ctl_target_opt(t, ch, optarg) <= 0) {
            fprintf(stderr, "usage: amberctl %s\n", usage);
            return -EINVAL;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "usage: amberctl %s\n", usage);
        return -EINVAL;
    }
    /* amber resolves relative paths against its own directory: send absolute ones. */
    if (create && mkdir(argv[optind], 0700) < 0 && errno != EEXIST) {
        fprintf(stderr, "amberctl: cannot create %s: %s\n", argv[optind], strerror(errno));
        return -errno;
    }
    *dir = realpath(argv[optind], NULL);
    if (!*dir) {
        fprintf(stderr, "amberctl: %s: %s\n", argv[optind], strerror(errno));
        return -errno;
    }
    return 0;
}

int ctl_snapshot(int argc, char **argv)
{
    const char *usage = "snapshot [--diff] (--id ID | --api PATH) DIR";
    struct ctl_target t = {0};
    char *dir = NULL;
    bool diff = false;
    if (parse(argc, argv, &t, usage, &dir, true, "diff", &diff) < 0)
        return CTL_USAGE;
    char api[PATH_MAX], snap[PATH_MAX], mem[PATH_MAX];
    int rc = CTL_USAGE, status;
    if (t.api_path) {
        snprintf(api, sizeof(api), "%s", t.api_path);
    } else if (t.id && ctl_target_dir(&t) == 0) {
        snprintf(api, sizeof(api), "%s/api.sock", t.dir);
    } else {
        fprintf(stderr, "amberctl: give --api, or --id of a live sandbox\n");
        goto out;
    }
    snprintf(snap, sizeof(snap), "%s/" STATE_FILE, dir);
    snprintf(mem, sizeof(mem), "%s/" MEM_FILE, dir);
    /* A running sandbox is paused for the snapshot and stays paused (as in Firecracker). */
    struct httpc_response resp;
    int r = httpc_request(api, "GET", "/", NULL, API_TIMEOUT_MS, &resp);
    if (r < 0) {
        fprintf(stderr, "amberctl: %s: %s\n", api, strerror(-r));
        rc = r == -ENOENT || r == -ECONNREFUSED ? CTL_NOT_FOUND : CTL_FAIL;
        goto out;
    }
    bool running = resp.status == 200 && resp.body && strstr(resp.body, "\"Running\"");
    httpc_response_free(&resp);
    if (running && (rc = call(api, "POST", "/pause", NULL, &status)) != CTL_OK)
        goto out;
    const char *kv[] = {"snapshot_path",        snap, "mem_file_path", mem, "snapshot_type",
                        diff ? "Diff" : "Full", NULL};
    char *body = body_of(kv);
    rc = call(api, "PUT", "/snapshot/create", body, &status);
    free(body);
    if (rc == CTL_OK)
        printf("%s snapshot in %s (%s, %s); the sandbox stays paused\n", diff ? "Diff" : "Full",
               dir, STATE_FILE, MEM_FILE);
out:
    free(dir);
    return rc;
}

static int wait_socket(const char *path)
{
    for (int waited = 0; waited < START_TIMEOUT_MS; waited += 10) {
        struct stat st;
        if (stat(path, &st) == 0 && S_ISSOCK(st.st_mode))
            return 0;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return -ETIMEDOUT;
}

/* Start amber for sandbox dir d in the background (ctl_spawn_amber) and wait for its API socket. */
static int spawn_amber(const char *d, const char *id, pid_t *child_out)
{
    char amber[PATH_MAX], api[PATH_MAX], pid[PATH_MAX], console[PATH_MAX], exitf[PATH_MAX];
    ctl_artefact(amber, sizeof(amber), "AMBER_BIN", "amber");
    snprintf(api, sizeof(api), "%s/api.sock", d);
    snprintf(pid, sizeof(pid), "%s/amber.pid", d);
    snprintf(console, sizeof(console), "%s/console.log", d);
    snprintf(exitf, sizeof(exitf), "%s/exit.json", d);
    char *const argv[] = {amber,   "--id",       (char *)id, "--api-sock",  api,   "--console",
                          console, "--pid-file", pid,        "--exit-file", exitf, NULL};
    pid_t child = ctl_spawn_amber(d, argv);
    if (child < 0)
        return (int)child;
    *child_out = child;
    return wait_socket(api);
}

int ctl_restore(int argc, char **argv)
{
    const char *usage = "restore [--track-dirty-pages] --id NEWID DIR";
    struct ctl_target t = {0};
    char *dir = NULL;
    bool track = false;
    if (parse(argc, argv, &t, usage, &dir, false, "track-dirty-pages", &track) < 0)
        return CTL_USAGE;
    int rc = CTL_USAGE, status;
    pid_t child = -1;
    char root[400], d[PATH_MAX], api[PATH_MAX], vsock[PATH_MAX], snap[PATH_MAX], mem[PATH_MAX];
    if (!t.id || !ctl_id_valid(t.id)) {
        fprintf(stderr, "usage: amberctl %s (a new sandbox id, [A-Za-z0-9_-]{1,64})\n", usage);
        goto out;
    }
    rc = CTL_FAIL;
    if (ctl_runtime_root(root, sizeof(root)) < 0 || (mkdir(root, 0700) < 0 && errno != EEXIST))
        goto out;
    snprintf(d, sizeof(d), "%s/%s", root, t.id);
    if (mkdir(d, 0700) < 0) {
        fprintf(stderr, "amberctl: cannot create sandbox directory %s: %s\n", d, strerror(errno));
        rc = errno == EEXIST ? CTL_CONFLICT : CTL_FAIL;
        goto out;
    }
    if (spawn_amber(d, t.id, &child) < 0) {
        fprintf(stderr, "amberctl: amber did not start (see %s/amber.stderr)\n", d);
        goto out;
    }
    snprintf(api, sizeof(api), "%s/api.sock", d);
    snprintf(vsock, sizeof(vsock), "%s/vsock.sock", d);
    snprintf(snap, sizeof(snap), "%s/" STATE_FILE, dir);
    snprintf(mem, sizeof(mem), "%s/" MEM_FILE, dir);
    struct json_object *o = json_object_new_object(), *mb = json_object_new_object(),
                       *vo = json_object_new_object();
    json_object_object_add(o, "snapshot_path", json_object_new_string(snap));
    json_object_object_add(mb, "backend_type", json_object_new_string("File"));
    json_object_object_add(mb, "backend_path", json_object_new_string(mem));
    json_object_object_add(o, "mem_backend", mb);
    json_object_object_add(o, "resume_vm", json_object_new_boolean(1));
    json_object_object_add(o, "track_dirty_pages", json_object_new_boolean(track));
    json_object_object_add(vo, "uds_path", json_object_new_string(vsock));
    json_object_object_add(o, "vsock_override", vo);
    rc = call(api, "PUT", "/snapshot/load", json_object_to_json_string(o), &status);
    json_object_put(o);
    if (rc == CTL_OK)
        printf("%s restored from %s and running\n", t.id, dir);
out:
    if (rc != CTL_OK && child > 0)
        kill(child, SIGTERM); /* an amber without a VM: amberctl list then reaps its dir */
    free(dir);
    return rc;
}

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* A memory file path from an argument: a snapshot directory means its vm.mem. */
static void mem_path_of(const char *arg, char *out, size_t cap)
{
    if (is_dir(arg))
        snprintf(out, cap, "%s/" MEM_FILE, arg);
    else
        snprintf(out, cap, "%s", arg);
}

/* Copy from_dir's state file over to_dir's (a new file renamed into place). */
static int copy_state(const char *from_dir, const char *to_dir)
{
    char from[PATH_MAX], to[PATH_MAX], tmp[PATH_MAX + 8];
    snprintf(from, sizeof(from), "%s/" STATE_FILE, from_dir);
    snprintf(to, sizeof(to), "%s/" STATE_FILE, to_dir);
    snprintf(tmp, sizeof(tmp), "%s.merge", to);
    int in = open(from, O_RDONLY | O_CLOEXEC), ret = 0;
    int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    char buf[65536];
    ssize_t n = 0;
    while (in >= 0 && out >= 0 && (n = read(in, buf, sizeof(buf))) > 0) {
        if (write(out, buf, (size_t)n) != n) {
            n = -1;
            break;
        }
    }
    if (in < 0 || out < 0 || n < 0 || close(out) < 0 || rename(tmp, to) < 0)
        ret = -errno;
    else
        out = -1;
    if (ret) {
        fprintf(stderr, "amberctl: cannot copy %s to %s: %s\n", from, to, strerror(-ret));
        if (out >= 0)
            close(out);
        unlink(tmp);
    }
    if (in >= 0)
        close(in);
    return ret;
}

int ctl_snapshot_merge(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: amberctl snapshot-merge BASE DIFF [DIFF...]   (memory files or "
                        "snapshot directories; BASE is changed in place)\n");
        return CTL_USAGE;
    }
    char base_path[PATH_MAX], diff_path[PATH_MAX], err[512];
    mem_path_of(argv[1], base_path, sizeof(base_path));
    int base = open(base_path, O_RDWR | O_CLOEXEC);
    if (base < 0) {
        fprintf(stderr, "amberctl: %s: %s\n", base_path, strerror(errno));
        return CTL_FAIL;
    }
    int rc = CTL_OK;
    /* In order: each Diff holds the pages written since the snapshot before it. */
    for (int i = 2; i < argc && rc == CTL_OK; i++) {
        mem_path_of(argv[i], diff_path, sizeof(diff_path));
        int diff = open(diff_path, O_RDONLY | O_CLOEXEC);
        uint64_t copied = 0;
        int ret = diff < 0 ? -errno : snapshot_merge(base, diff, &copied, err, sizeof(err));
        if (ret) {
            fprintf(stderr, "amberctl: %s onto %s: %s\n", diff_path, base_path,
                    diff < 0 ? strerror(-ret) : err);
            rc = CTL_FAIL;
        } else {
            printf("%s: %llu KiB laid over %s\n", diff_path, (unsigned long long)(copied >> 10),
                   base_path);
        }
        if (diff >= 0)
            close(diff);
    }
    if (close(base) < 0 && rc == CTL_OK) {
        fprintf(stderr, "amberctl: %s: %s\n", base_path, strerror(errno));
        rc = CTL_FAIL;
    }
    /* Snapshot directories: BASE becomes the last Diff's snapshot (its state, merged memory),
     * which amberctl restore takes as it is. */
    if (rc == CTL_OK && is_dir(argv[1]) && is_dir(argv[argc - 1])) {
        if (copy_state(argv[argc - 1], argv[1]) < 0)
            rc = CTL_FAIL;
        else
            printf("%s now holds the snapshot of %s\n", argv[1], argv[argc - 1]);
    }
    return rc;
}
