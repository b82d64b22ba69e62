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

static int parse(int argc, char **argv, struct ctl_target *t, const char *usage, char **dir,
                 bool create)
{
    static const struct option opts[] = {CTL_TARGET_OPTIONS, {NULL, 0, NULL, 0}};
    int ch;
    optind = 0;
    while ((ch = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
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
    const char *usage = "snapshot (--id ID | --api PATH) DIR";
    struct ctl_target t = {0};
    char *dir = NULL;
    if (parse(argc, argv, &t, usage, &dir, true) < 0)
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
    const char *kv[] = {"snapshot_path", snap, "mem_file_path", mem, "snapshot_type", "Full", NULL};
    char *body = body_of(kv);
    rc = call(api, "PUT", "/snapshot/create", body, &status);
    free(body);
    if (rc == CTL_OK)
        printf("snapshot in %s (%s, %s); the sandbox stays paused\n", dir, STATE_FILE, MEM_FILE);
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

/* Start amber for sandbox dir d in the background (its own session, output to amber.log). */
static int spawn_amber(const char *d, const char *id, pid_t *child_out)
{
    char self[PATH_MAX], amber[PATH_MAX + 8], api[PATH_MAX], pid[PATH_MAX], console[PATH_MAX],
        exitf[PATH_MAX], logf[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0)
        return -errno;
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    *slash = '\0';
    snprintf(amber, sizeof(amber), "%s/amber", self);
    snprintf(api, sizeof(api), "%s/api.sock", d);
    snprintf(pid, sizeof(pid), "%s/amber.pid", d);
    snprintf(console, sizeof(console), "%s/console.log", d);
    snprintf(exitf, sizeof(exitf), "%s/exit.json", d);
    snprintf(logf, sizeof(logf), "%s/amber.log", d);
    pid_t child = fork();
    if (child < 0)
        return -errno;
    if (child == 0) {
        setsid();
        int null = open("/dev/null", O_RDONLY);
        int out = open(logf, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (null < 0 || out < 0)
            _exit(127);
        dup2(null, 0);
        dup2(out, 1);
        dup2(out, 2);
        if (chdir(d) < 0)
            _exit(127);
        execl(amber, amber, "--id", id, "--api-sock", api, "--console", console, "--pid-file", pid,
              "--exit-file", exitf, (char *)NULL);
        _exit(127);
    }
    *child_out = child;
    return wait_socket(api);
}

int ctl_restore(int argc, char **argv)
{
    const char *usage = "restore --id NEWID DIR";
    struct ctl_target t = {0};
    char *dir = NULL;
    if (parse(argc, argv, &t, usage, &dir, false) < 0)
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
        fprintf(stderr, "amberctl: amber did not start (see %s/amber.log)\n", d);
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
