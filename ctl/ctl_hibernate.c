/* amberctl pause --to-disk, resume of a hibernated sandbox, and hibernated ones in list/delete. */
#include "ctl/amberctl.h"
#include "ctl/ctl_net.h"
#include "ctl/ctl_store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Parse "--id ID [--json]"; usage is printed on a mismatch unless it is NULL. */
static int parse_id(int argc, char **argv, const char *usage, struct ctl_target *t)
{
    static const struct option opts[] = {CTL_TARGET_OPTIONS, {NULL, 0, NULL, 0}};
    int ch;
    optind = 0;
    while ((ch = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        if (ctl_target_opt(t, ch, optarg) <= 0 || ch != OPT_ID) {
            if (ch == OPT_JSON)
                continue;
            if (usage)
                fprintf(stderr, "usage: amberctl %s\n", usage);
            return -EINVAL;
        }
    }
    if (optind != argc || !t->id || !ctl_id_valid(t->id)) {
        if (usage)
            fprintf(stderr, "usage: amberctl %s\n", usage);
        return -EINVAL;
    }
    return 0;
}

/* Remove argument flag from argv; true if it was there. */
static bool take_flag(int *argc, char **argv, const char *flag)
{
    for (int i = 1; i < *argc; i++) {
        if (strcmp(argv[i], flag) == 0) {
            memmove(&argv[i], &argv[i + 1], (size_t)(*argc - i) * sizeof(*argv));
            (*argc)--;
            return true;
        }
    }
    return false;
}

static void now_iso(char *buf, size_t len)
{
    time_t now = time(NULL);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
}

static int hibernate(struct ctl_target *t)
{
    char api[700], cfgp[700], sdir[PATH_MAX], rootfs[PATH_MAX], snap[PATH_MAX], mem[PATH_MAX];
    char err[600] = "", paused_at[64] = "", mark[PATH_MAX], scfg[PATH_MAX];
    int pid, r;
    if (ctl_target_dir(t) < 0 || ctl_sandbox_probe(t->dir, &pid) != CTL_ALIVE) {
        fprintf(stderr, "amberctl: no live sandbox '%s'\n", t->id);
        return CTL_NOT_FOUND;
    }
    snprintf(api, sizeof(api), "%s/api.sock", t->dir);
    snprintf(cfgp, sizeof(cfgp), "%s/config.json", t->dir);
    struct json_object *cfg = store_json_read(cfgp), *o = NULL;
    if (!cfg || !store_jstr(cfg, "rootfs", NULL)) {
        fprintf(stderr, "amberctl: %s has no root drive path: cannot hibernate\n", cfgp);
        json_object_put(cfg);
        return CTL_FAIL;
    }
    if ((r = store_path(sdir, sizeof(sdir) - 40, t->id)) < 0) {
        fprintf(stderr, "amberctl: state directory for %s: %s\n", t->id, strerror(-r));
        json_object_put(cfg);
        return CTL_FAIL;
    }
    snprintf(rootfs, sizeof(rootfs), "%s/" STORE_ROOTFS, sdir);
    snprintf(snap, sizeof(snap), "%s/" STORE_STATE_FILE, sdir);
    snprintf(mem, sizeof(mem), "%s/" STORE_MEM_FILE, sdir);
    snprintf(mark, sizeof(mark), "%s/" STORE_MARK, sdir);
    snprintf(scfg, sizeof(scfg), "%s/config.json", sdir);
    bool copied = false, was_running;
    /* Pause first: the drive copy and the memory must be of one instant. */
    if (store_api(api, "GET", "/", NULL, 10000, &o, err, sizeof(err)) != 200)
        goto fail;
    if (strcmp(store_jstr(o, "state", ""), "Running") == 0) {
        json_object_put(o);
        if (store_api(api, "POST", "/pause", NULL, 10000, &o, err, sizeof(err)) != 200)
            goto fail;
    }
    snprintf(paused_at, sizeof(paused_at), "%s", store_jstr(o, "paused_at", ""));
    json_object_put(o);
    o = NULL;
    char a[PATH_MAX], b[PATH_MAX];
    const char *kind = "in place";
    if (!realpath(store_jstr(cfg, "rootfs", ""), a) || !realpath(rootfs, b) || strcmp(a, b)) {
        copied = true;
        if ((r = store_clone_file(store_jstr(cfg, "rootfs", ""), rootfs, &kind)) < 0) {
            snprintf(err, sizeof(err), "copying the root drive to %s: %s", rootfs, strerror(-r));
            goto fail;
        }
    }
    if (store_snapshot(api, sdir, true, &was_running, err, sizeof(err)) < 0)
        goto fail;
    if (store_api(api, "GET", "/timeout", NULL, 10000, &o, err, sizeof(err)) == 200) {
        struct json_object *left;
        if (json_object_object_get_ex(o, "timeout_s_left", &left) && left &&
            !json_object_is_type(left, json_type_null)) {
            json_object_object_add(cfg, "timeout_s_left",
                                   json_object_new_double(json_object_get_double(left)));
            json_object_object_add(cfg, "on_timeout",
                                   json_object_new_string(store_jstr(o, "on_timeout", "kill")));
        }
    }
    json_object_put(o);
    json_object_object_add(cfg, "rootfs", json_object_new_string(rootfs));
    json_object_object_add(cfg, "state_dir", json_object_new_string(sdir));
    json_object_object_del(cfg, "image_dir");
    if (!store_jstr(cfg, "drive_id", NULL))
        json_object_object_add(cfg, "drive_id", json_object_new_string(STORE_DRIVE_ID));
    struct json_object *m = json_object_new_object();
    char now[32];
    now_iso(now, sizeof(now));
    json_object_object_add(m, "sandbox_id", json_object_new_string(t->id));
    json_object_object_add(m, "paused_at", json_object_new_string(paused_at));
    json_object_object_add(m, "hibernated_at", json_object_new_string(now));
    r = store_json_write(scfg, cfg, true);
    if (!r)
        r = store_json_write(mark, m, true); /* the commit point */
    json_object_put(m);
    if (r < 0) {
        snprintf(err, sizeof(err), "writing %s: %s", mark, strerror(-r));
        unlink(snap);
        unlink(mem);
        goto fail;
    }
    json_object_put(cfg);
    if (pid > 0)
        kill(pid, SIGKILL);
    for (int i = 0; i < 200 && ctl_sandbox_probe(t->dir, &pid) == CTL_ALIVE; i++)
        usleep(50000);
    ctl_remove_tree(t->dir);
    if (t->json)
        printf("{\"sandbox_id\": \"%s\", \"paused\": true, \"paused_at\": \"%s\", "
               "\"memory\": \"disk\"}\n",
               t->id, paused_at);
    else
        printf("%s hibernated to %s (paused at %s; root drive %s)\n", t->id, sdir, paused_at, kind);
    return CTL_OK;
fail:
    json_object_put(o);
    json_object_put(cfg);
    if (copied)
        unlink(rootfs);
    unlink(snap);
    unlink(mem);
    fprintf(stderr,
            "amberctl: hibernate %s failed: %s. Nothing is lost: the sandbox is still paused in "
            "memory; `amberctl resume --id %s`, or free space in %s and try again\n",
            t->id, err, t->id, sdir);
    return CTL_FAIL;
}

int ctl_pause_any(int argc, char **argv)
{
    if (!take_flag(&argc, argv, "--to-disk"))
        return ctl_pause(argc, argv);
    struct ctl_target t = {0};
    if (parse_id(argc, argv, "pause --to-disk --id ID [--json]", &t) < 0)
        return CTL_USAGE;
    if (ctl_net_refuse(t.id, "pause --to-disk"))
        return CTL_CONFLICT;
    return hibernate(&t);
}

static int resume_from_disk(struct ctl_target *t)
{
    char sdir[PATH_MAX], lockp[PATH_MAX], p[PATH_MAX];
    if (store_path(sdir, sizeof(sdir) - 40, t->id) < 0)
        return CTL_FAIL;
    snprintf(lockp, sizeof(lockp), "%s", sdir);
    snprintf(strrchr(lockp, '/') + 1, sizeof(lockp) - (size_t)(strrchr(lockp, '/') + 1 - lockp),
             ".resume-%s.lock", t->id);
    int lock = open(lockp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock < 0 || flock(lock, LOCK_EX) < 0) {
        fprintf(stderr, "amberctl: %s: %s\n", lockp, strerror(errno));
        if (lock >= 0)
            close(lock);
        return CTL_FAIL;
    }
    int rc = CTL_NOT_FOUND;
    static const char *const need[] = {"config.json", STORE_STATE_FILE, STORE_MEM_FILE,
                                       STORE_ROOTFS, STORE_MARK};
    for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", sdir, need[i]);
        if (access(p, R_OK) < 0) {
            fprintf(stderr, "amberctl: sandbox %s cannot be resumed: %s: %s\n", t->id, p,
                    strerror(errno));
            goto out;
        }
    }
    snprintf(p, sizeof(p), "%s/config.json", sdir);
    struct json_object *cfg = store_json_read(p), *v;
    if (!cfg) {
        fprintf(stderr, "amberctl: sandbox %s cannot be resumed: %s is not JSON\n", t->id, p);
        goto out;
    }
    char drive[PATH_MAX];
    snprintf(drive, sizeof(drive), "%s/" STORE_ROOTFS, sdir);
    uint32_t cid = json_object_object_get_ex(cfg, "guest_cid", &v) && v
                       ? (uint32_t)json_object_get_int64(v)
                       : 3;
    struct store_restore r = {
        .id = t->id, .image_dir = sdir, .drive_path = drive, .cfg = cfg, .cid = cid < 3 ? 3 : cid};
    rc = store_restore(&r);
    if (rc == CTL_OK) {
        static const char *const gone[] = {STORE_MARK, STORE_STATE_FILE, STORE_MEM_FILE};
        for (size_t i = 0; i < 3; i++) {
            snprintf(p, sizeof(p), "%s/%s", sdir, gone[i]);
            unlink(p);
        }
        if (json_object_object_get_ex(cfg, "timeout_s_left", &v) && v) {
            char api[700], body[96], err[300];
            long long s = (long long)json_object_get_double(v) + 1;
            snprintf(api, sizeof(api), "%s", store_jstr(cfg, "api_sock", ""));
            snprintf(body, sizeof(body), "{\"timeout_s\": %lld, \"on_timeout\": \"%s\"}", s,
                     store_jstr(cfg, "on_timeout", "kill"));
            store_api(api, "PUT", "/timeout", body, 10000, NULL, err, sizeof(err));
        }
        if (t->json)
            printf("{\"sandbox_id\": \"%s\", \"paused\": false, \"memory\": \"disk\"}\n", t->id);
        else
            printf("%s resumed from %s\n", t->id, sdir);
    }
    json_object_put(cfg);
out:
    close(lock);
    return rc;
}

int ctl_resume_any(int argc, char **argv)
{
    struct ctl_target t = {0};
    char *copy[64];
    if (argc > 64)
        return ctl_resume(argc, argv);
    memcpy(copy, argv, (size_t)argc * sizeof(*argv));
    /* Only "--id ID [--json]" of a hibernated sandbox (no live runtime directory) comes here. */
    opterr = 0;
    int r = parse_id(argc, copy, NULL, &t);
    opterr = 1;
    if (r == 0 && store_is_hibernated(t.id) && ctl_target_dir(&t) == -ENOENT)
        return resume_from_disk(&t);
    return ctl_resume(argc, argv);
}

int ctl_delete_any(int argc, char **argv)
{
    struct ctl_target t = {0};
    char *copy[64], sdir[PATH_MAX];
    if (argc > 64)
        return ctl_delete(argc, argv);
    memcpy(copy, argv, (size_t)argc * sizeof(*argv));
    int id_argc = argc;
    for (int i = 1; i < id_argc; i++) /* delete --id ID [--timeout S]: look at --id only */
        if (strcmp(copy[i], "--timeout") == 0 && i + 1 < id_argc) {
            memmove(&copy[i], &copy[i + 2], (size_t)(id_argc - i - 1) * sizeof(*copy));
            id_argc -= 2;
        }
    opterr = 0;
    int r = parse_id(id_argc, copy, NULL, &t);
    opterr = 1;
    bool hib = r == 0 && store_is_hibernated(t.id) && ctl_target_dir(&t) == -ENOENT;
    char image[PATH_MAX] = "";
    if (r == 0 && !hib && ctl_target_dir(&t) == 0) {
        char cfgp[700];
        snprintf(cfgp, sizeof(cfgp), "%s/config.json", t.dir);
        struct json_object *c = store_json_read(cfgp);
        snprintf(image, sizeof(image), "%s", store_jstr(c, "image_dir", ""));
        json_object_put(c);
    }
    int rc = hib ? CTL_OK : ctl_delete(argc, argv);
    if (rc == CTL_OK && image[0])
        ctl_release_image(image);
    if (r == 0 && rc == CTL_OK && store_root(sdir, sizeof(sdir) - 80) == 0) {
        strcat(sdir, "/");
        strcat(sdir, t.id);
        struct stat st;
        if (stat(sdir, &st) == 0)
            ctl_remove_tree(sdir);
        if (hib)
            printf("%s deleted\n", t.id);
    }
    return rc;
}
