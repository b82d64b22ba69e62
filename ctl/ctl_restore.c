/* amberctl: a new sandbox restored from a store image (hibernated, template or fork). */
#include "ctl/ctl_store.h"

#include "ctl/amberctl.h"
#include "ctl/http_client.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS 300000 /* amber start to agent answering, at the test host's pace */
#define IDENTITY_SCRIPT                                                                            \
    "{ amber-agent reseed 2>/dev/null || cat > /dev/urandom; } && "                                \
    "printf '%s\\n' \"$1\" > /etc/machine-id && hostname \"$2\" && "                               \
    "printf '%s\\n' \"$2\" > /etc/hostname"

static long long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* amber with only an API socket, detached in dir (its own session). Returns its pid or -errno. */
static pid_t spawn_empty(const char *dir, const char *id)
{
    char amber[PATH_MAX], api[PATH_MAX], pid[PATH_MAX], con[PATH_MAX], exitf[PATH_MAX];
    ctl_artefact(amber, sizeof(amber), "AMBER_BIN", "amber");
    snprintf(api, sizeof(api), "%s/api.sock", dir);
    snprintf(pid, sizeof(pid), "%s/amber.pid", dir);
    snprintf(con, sizeof(con), "%s/console.log", dir);
    snprintf(exitf, sizeof(exitf), "%s/exit.json", dir);
    char *const argv[] = {amber, "--id",       (char *)id, "--api-sock",  api,   "--console",
                          con,   "--pid-file", pid,        "--exit-file", exitf, NULL};
    return ctl_spawn_amber(dir, argv);
}

static int load(const char *api, const struct store_restore *r, const char *vsock,
                const char *drive, pid_t pid, long long deadline)
{
    struct json_object *b = json_object_new_object(), *mb = json_object_new_object(),
                       *vo = json_object_new_object(), *dov = json_object_new_array(),
                       *d = json_object_new_object();
    char snap[PATH_MAX], mem[PATH_MAX], err[600];
    snprintf(snap, sizeof(snap), "%s/" STORE_STATE_FILE, r->image_dir);
    snprintf(mem, sizeof(mem), "%s/" STORE_MEM_FILE, r->image_dir);
    json_object_object_add(b, "snapshot_path", json_object_new_string(snap));
    json_object_object_add(mb, "backend_type", json_object_new_string("File"));
    json_object_object_add(mb, "backend_path", json_object_new_string(mem));
    json_object_object_add(b, "mem_backend", mb);
    json_object_object_add(b, "resume_vm", json_object_new_boolean(1));
    json_object_object_add(vo, "uds_path", json_object_new_string(vsock));
    json_object_object_add(vo, "guest_cid", json_object_new_int64(r->cid));
    json_object_object_add(b, "vsock_override", vo);
    json_object_object_add(d, "drive_id",
                           json_object_new_string(store_jstr(r->cfg, "drive_id", STORE_DRIVE_ID)));
    json_object_object_add(d, "path_on_host", json_object_new_string(drive));
    json_object_array_add(dov, d);
    json_object_object_add(b, "drive_overrides", dov);
    int st;
    for (;;) {
        st = store_api(api, "PUT", "/snapshot/load", json_object_to_json_string(b), 120000, NULL,
                       err, sizeof(err));
        if ((st != -ENOENT && st != -ECONNREFUSED) || now_ms() > deadline ||
            waitpid(pid, NULL, WNOHANG) == pid)
            break;
        usleep(10000);
    }
    json_object_put(b);
    if (st == 204 || st == 200)
        return 0;
    fprintf(stderr, "amberctl: sandbox %s: cannot restore %s: %s\n", r->id, snap, err);
    return st == 400 ? -ENOENT : -EIO;
}

static int identity(const struct store_restore *r, const char *vsock)
{
    uint8_t rnd[16], seed[64];
    char mid[40];
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd) ||
        getrandom(seed, sizeof(seed), 0) != (ssize_t)sizeof(seed))
        return -EIO;
    for (int i = 0; i < 16; i++)
        snprintf(mid + 2 * i, 3, "%02x", rnd[i]);
    int fds[2];
    if (pipe(fds) < 0)
        return -errno;
    ssize_t w = write(fds[1], seed, sizeof(seed));
    close(fds[1]);
    const char *argv[] = {"/bin/sh", "-c", IDENTITY_SCRIPT, "sh", mid, r->id, NULL};
    struct agent_addr a = {.path = vsock, .hybrid = true, .timeout_ms = 10000};
    struct agent_exec_spec spec = {.argv = argv, .timeout_ms = 60000};
    struct agent_exec_io io = {
        .stdin_fd = fds[0], .stdout_fd = -1, .stderr_fd = 2, .resize_fd = -1, .size_fd = -1};
    struct agent_exec_result res;
    struct agent_error err = {0};
    int rc = w == (ssize_t)sizeof(seed) ? agent_exec(&a, &spec, &io, &res, &err) : -EIO;
    close(fds[0]);
    if (rc < 0 || res.signal || res.exit_code) {
        fprintf(stderr, "amberctl: sandbox %s: setting its hostname and machine-id failed: %s\n",
                r->id, rc < 0 ? err.msg : "the script failed");
        return -EIO;
    }
    json_object_object_add(r->cfg, "machine_id", json_object_new_string(mid));
    return 0;
}

int store_restore(const struct store_restore *r)
{
    char root[400], dir[600], p_lock[700], api[700], vsock[700], con[700], cfgp[700];
    char sdir[PATH_MAX] = "", drive[PATH_MAX];
    int slock = -1, lock = -1, rc = CTL_FAIL;
    pid_t pid = -1;
    bool made_dir = false;
    if (ctl_runtime_root(root, sizeof(root)) < 0)
        return CTL_FAIL;
    mkdir(root, 0700);
    snprintf(dir, sizeof(dir), "%s/%s", root, r->id);
    if (r->register_locked) {
        char snap[PATH_MAX];
        snprintf(snap, sizeof(snap), "%s/" STORE_STATE_FILE, r->image_dir);
        if ((slock = store_lock()) < 0 || access(snap, R_OK) < 0) {
            fprintf(stderr, "amberctl: no image in %s (deleted?)\n", r->image_dir);
            rc = CTL_NOT_FOUND;
            goto out;
        }
    }
    if (mkdir(dir, 0700) < 0) {
        fprintf(stderr, "amberctl: sandbox %s: %s\n", r->id,
                errno == EEXIST ? "already exists" : strerror(errno));
        rc = errno == EEXIST ? CTL_CONFLICT : CTL_FAIL;
        goto out;
    }
    made_dir = true;
    snprintf(p_lock, sizeof(p_lock), "%s/starting.lock", dir);
    lock = open(p_lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock >= 0)
        flock(lock, LOCK_EX);
    snprintf(api, sizeof(api), "%s/api.sock", dir);
    snprintf(vsock, sizeof(vsock), "%s/vsock.sock", dir);
    snprintf(con, sizeof(con), "%s/console.log", dir);
    snprintf(cfgp, sizeof(cfgp), "%s/config.json", dir);
    if (r->drive_src) {
        char sub[80];
        snprintf(sub, sizeof(sub), "%s", r->id);
        if (store_path(sdir, sizeof(sdir) - 20, sub) < 0)
            goto out;
        snprintf(drive, sizeof(drive), "%s/" STORE_ROOTFS, sdir);
        json_object_object_add(r->cfg, "state_dir", json_object_new_string(sdir));
    } else {
        snprintf(drive, sizeof(drive), "%s", r->drive_path);
    }
    struct json_object *c = r->cfg;
    json_object_object_add(c, "id", json_object_new_string(r->id));
    json_object_object_add(c, "api_sock", json_object_new_string(api));
    json_object_object_add(c, "vsock_uds", json_object_new_string(vsock));
    json_object_object_add(c, "console", json_object_new_string(con));
    json_object_object_add(c, "guest_cid", json_object_new_int64(r->cid));
    json_object_object_add(c, "rootfs", json_object_new_string(drive));
    json_object_object_add(c, "creator_pid", json_object_new_int(getpid()));
    if (store_json_write(cfgp, c, false) < 0)
        goto out;
    if (slock >= 0) {
        close(slock); /* registered: the image now counts as used */
        slock = -1;
    }
    const char *kind;
    int e = r->drive_src ? store_clone_file(r->drive_src, drive, &kind) : 0;
    if (e < 0) {
        fprintf(stderr, "amberctl: cloning %s to %s: %s\n", r->drive_src, drive, strerror(-e));
        goto out;
    }
    if ((pid = spawn_empty(dir, r->id)) < 0)
        goto out;
    long long deadline = now_ms() + WAIT_MS;
    while (access(api, F_OK) < 0 && now_ms() < deadline && waitpid(pid, NULL, WNOHANG) == 0)
        usleep(10000);
    if ((e = load(api, r, vsock, drive, pid, deadline)) < 0) {
        rc = e == -ENOENT ? CTL_NOT_FOUND : CTL_FAIL;
        goto out;
    }
    struct agent_addr a = {.path = vsock, .hybrid = true, .timeout_ms = 3000};
    struct agent_ping_info info;
    while (agent_ping(&a, &info, NULL) < 0) {
        if (now_ms() > deadline || waitpid(pid, NULL, WNOHANG) == pid) {
            fprintf(stderr, "amberctl: sandbox %s: the agent did not answer after the restore\n",
                    r->id);
            goto out;
        }
        usleep(50000);
    }
    if (r->identity && (identity(r, vsock) < 0 || store_json_write(cfgp, c, false) < 0))
        goto out;
    rc = CTL_OK;
out:
    if (slock >= 0)
        close(slock);
    if (rc != CTL_OK) {
        if (pid > 0) {
            kill(-pid, SIGKILL);
            waitpid(pid, NULL, 0);
        }
        if (made_dir)
            ctl_remove_tree(dir);
        if (r->drive_src && sdir[0])
            ctl_remove_tree(sdir);
    }
    if (lock >= 0) {
        close(lock);
        if (rc == CTL_OK)
            unlink(p_lock);
    }
    return rc;
}
