/* amberctl template create|list|delete, create --template and fork: sandboxes from snapshots. */
#include "ctl/amberctl.h"
#include "ctl/ctl_net.h"
#include "ctl/ctl_store.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_FORK 64

static void now_iso(char *buf, size_t len)
{
    time_t now = time(NULL);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
}

static void random_id(char *buf, size_t len, const char *prefix)
{
    uint8_t r[4] = {0};
    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
        r[0] = (uint8_t)getpid();
    snprintf(buf, len, "%s%02x%02x%02x%02x", prefix, r[0], r[1], r[2], r[3]);
}

/* Copy the key of from (if there) into to. */
static void copy_key(struct json_object *to, struct json_object *from, const char *key)
{
    struct json_object *v;
    if (from && json_object_object_get_ex(from, key, &v) && v)
        json_object_object_add(to, key, json_object_get(v));
}

/*
 * Snapshot live sandbox id into the new directory dir (vm.snap, vm.mem, rootfs.ext4,
 * template.json holding meta plus the source's size): paused meanwhile, resumed after if it
 * was running. Returns CTL_OK or an exit code (printed); dir is removed on failure.
 */
static int make_image(const char *id, const char *dir, struct json_object *meta)
{
    struct ctl_target t = {.id = id};
    char api[700], cfgp[700], rootfs[PATH_MAX], err[600] = "", metap[PATH_MAX];
    int pid, r;
    if (ctl_target_dir(&t) < 0 || ctl_sandbox_probe(t.dir, &pid) != CTL_ALIVE) {
        fprintf(stderr, "amberctl: no live sandbox '%s'\n", id);
        return CTL_NOT_FOUND;
    }
    if (ctl_net_refuse(id, "a template or fork"))
        return CTL_CONFLICT;
    snprintf(api, sizeof(api), "%s/api.sock", t.dir);
    snprintf(cfgp, sizeof(cfgp), "%s/config.json", t.dir);
    snprintf(rootfs, sizeof(rootfs), "%s/" STORE_ROOTFS, dir);
    snprintf(metap, sizeof(metap), "%s/" STORE_META, dir);
    struct json_object *cfg = store_json_read(cfgp);
    if (!cfg || !store_jstr(cfg, "rootfs", NULL)) {
        fprintf(stderr, "amberctl: %s has no root drive path\n", cfgp);
        json_object_put(cfg);
        return CTL_FAIL;
    }
    if (mkdir(dir, 0700) < 0) {
        fprintf(stderr, "amberctl: %s: %s\n", dir, strerror(errno));
        json_object_put(cfg);
        return CTL_FAIL;
    }
    bool was_running = false;
    const char *kind = "?";
    int rc = CTL_FAIL;
    /* Pause (store_snapshot's first step) before the drive copy: one instant for both. */
    struct json_object *o;
    if (store_api(api, "GET", "/", NULL, 10000, &o, err, sizeof(err)) != 200)
        goto out;
    was_running = strcmp(store_jstr(o, "state", ""), "Running") == 0;
    json_object_put(o);
    if (was_running && store_api(api, "POST", "/pause", NULL, 10000, NULL, err, sizeof(err)) != 200)
        goto out;
    bool dummy;
    if ((r = store_clone_file(store_jstr(cfg, "rootfs", ""), rootfs, &kind)) < 0)
        snprintf(err, sizeof(err), "copying the root drive: %s", strerror(-r));
    else if (store_snapshot(api, dir, false, &dummy, err, sizeof(err)) == 0)
        rc = CTL_OK;
    if (was_running && store_api(api, "POST", "/resume", NULL, 10000, NULL, err + strlen(err),
                                 sizeof(err) - strlen(err)) != 200)
        fprintf(stderr, "amberctl: sandbox %s did not resume: %s\n", id, err);
out:
    if (rc == CTL_OK) {
        char now[32];
        now_iso(now, sizeof(now));
        json_object_object_add(meta, "created_at", json_object_new_string(now));
        json_object_object_add(meta, "source_id", json_object_new_string(id));
        json_object_object_add(meta, "rootfs_copy", json_object_new_string(kind));
        copy_key(meta, cfg, "vcpus");
        copy_key(meta, cfg, "mem_mib");
        copy_key(meta, cfg, "envs");
        copy_key(meta, cfg, "metadata");
        json_object_object_add(meta, "drive_id",
                               json_object_new_string(store_jstr(cfg, "drive_id", STORE_DRIVE_ID)));
        if (store_json_write(metap, meta, false) < 0)
            rc = CTL_FAIL;
    } else {
        fprintf(stderr, "amberctl: snapshot of %s failed: %s\n", id, err);
    }
    if (rc != CTL_OK)
        ctl_remove_tree(dir);
    json_object_put(cfg);
    return rc;
}

/* A child of image dir with id: restored, its own drive clone, CID and identity. */
static int make_child(const char *dir, const char *id, const char *template_name,
                      const char *forked_from)
{
    char metap[PATH_MAX], drive[PATH_MAX], now[32];
    snprintf(metap, sizeof(metap), "%s/" STORE_META, dir);
    snprintf(drive, sizeof(drive), "%s/" STORE_ROOTFS, dir);
    struct json_object *meta = store_json_read(metap), *cfg = json_object_new_object();
    if (!meta) {
        fprintf(stderr, "amberctl: no image in %s (missing %s)\n", dir, metap);
        json_object_put(cfg);
        return CTL_NOT_FOUND;
    }
    now_iso(now, sizeof(now));
    copy_key(cfg, meta, "vcpus");
    copy_key(cfg, meta, "mem_mib");
    copy_key(cfg, meta, "envs");
    copy_key(cfg, meta, "metadata");
    copy_key(cfg, meta, "drive_id");
    json_object_object_add(cfg, "agent_port", json_object_new_int(1024));
    json_object_object_add(cfg, "image_dir", json_object_new_string(dir));
    json_object_object_add(cfg, "created_by", json_object_new_string("amberctl"));
    json_object_object_add(cfg, "created_at", json_object_new_string(now));
    if (template_name)
        json_object_object_add(cfg, "template", json_object_new_string(template_name));
    if (forked_from)
        json_object_object_add(cfg, "forked_from", json_object_new_string(forked_from));
    struct store_restore r = {.id = id,
                              .image_dir = dir,
                              .drive_src = drive,
                              .cfg = cfg,
                              .cid = store_new_cid(),
                              .identity = true,
                              .register_locked = true};
    int rc = store_restore(&r);
    json_object_put(cfg);
    json_object_put(meta);
    return rc;
}

static int template_dir(char *buf, size_t len, const char *name)
{
    if (!ctl_id_valid(name)) {
        fprintf(stderr, "amberctl: bad template name '%s': names match [A-Za-z0-9_-]{1,64}\n",
                name);
        return -EINVAL;
    }
    int r = store_path(buf, len - 80, ".templates");
    if (r < 0)
        return r;
    strcat(buf, "/");
    strcat(buf, name);
    return 0;
}

/* Live sandboxes whose config.json names image dir; printed unless quiet; returns how many. */
static int image_users(const char *dir, bool quiet)
{
    char run[400], want[PATH_MAX];
    int n = 0;
    if (ctl_runtime_root(run, sizeof(run)) < 0 || !realpath(dir, want))
        return 0;
    DIR *d = opendir(run);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        char sd[600], cfgp[700], have[PATH_MAX];
        int pid;
        if (!ctl_id_valid(de->d_name))
            continue;
        snprintf(sd, sizeof(sd), "%s/%s", run, de->d_name);
        if (ctl_sandbox_probe(sd, &pid) == CTL_STALE)
            continue;
        snprintf(cfgp, sizeof(cfgp), "%s/config.json", sd);
        struct json_object *c = store_json_read(cfgp);
        const char *img = store_jstr(c, "image_dir", NULL);
        if (img && realpath(img, have) && strcmp(have, want) == 0) {
            if (!quiet)
                fprintf(stderr, "%s  %s\n", n ? "" : "amberctl: in use by:", de->d_name);
            n++;
        }
        json_object_put(c);
    }
    if (d)
        closedir(d);
    return n;
}

static int template_create(int argc, char **argv)
{
    static const struct option opts[] = {CTL_TARGET_OPTIONS, {NULL, 0, NULL, 0}};
    struct ctl_target t = {0};
    int ch;
    optind = 0;
    while ((ch = getopt_long(argc, argv, "+", opts, NULL)) != -1)
        if (ctl_target_opt(&t, ch, optarg) <= 0 || (ch != OPT_ID && ch != OPT_JSON))
            return CTL_USAGE;
    if (!t.id || optind != argc - 1)
        return CTL_USAGE;
    char dir[PATH_MAX], tmp[PATH_MAX + 40], suffix[24];
    if (template_dir(dir, sizeof(dir), argv[optind]) < 0)
        return CTL_USAGE;
    if (access(dir, F_OK) == 0) {
        fprintf(stderr, "amberctl: template %s already exists\n", argv[optind]);
        return CTL_CONFLICT;
    }
    random_id(suffix, sizeof(suffix), ".tmp-");
    snprintf(tmp, sizeof(tmp), "%s", dir);
    snprintf(strrchr(tmp, '/') + 1, sizeof(tmp) - (size_t)(strrchr(tmp, '/') + 1 - tmp), ".%s%s",
             argv[optind], suffix);
    struct json_object *meta = json_object_new_object();
    json_object_object_add(meta, "name", json_object_new_string(argv[optind]));
    int rc = make_image(t.id, tmp, meta);
    json_object_put(meta);
    if (rc != CTL_OK)
        return rc;
    int lock = store_lock();
    if (access(dir, F_OK) == 0 || rename(tmp, dir) < 0) {
        fprintf(stderr, "amberctl: template %s: %s\n", argv[optind],
                access(dir, F_OK) == 0 ? "already exists" : strerror(errno));
        ctl_remove_tree(tmp);
        rc = CTL_CONFLICT;
    }
    if (lock >= 0)
        close(lock);
    if (rc == CTL_OK)
        printf("template %s made from %s in %s\n", argv[optind], t.id, dir);
    return rc;
}

static int template_list(bool json)
{
    char dir[PATH_MAX];
    if (store_path(dir, sizeof(dir) - 200, ".templates") < 0)
        return CTL_FAIL;
    struct json_object *arr = json_object_new_array();
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        char p[PATH_MAX];
        if (!ctl_id_valid(de->d_name))
            continue;
        snprintf(p, sizeof(p), "%s/%s/" STORE_META, dir, de->d_name);
        struct json_object *m = store_json_read(p);
        if (m) {
            json_object_object_add(m, "name", json_object_new_string(de->d_name));
            json_object_array_add(arr, m);
        }
    }
    if (d)
        closedir(d);
    if (json)
        printf("%s\n", json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PRETTY));
    else
        for (size_t i = 0; i < json_object_array_length(arr); i++) {
            struct json_object *m = json_object_array_get_idx(arr, i);
            printf("%-24s %-22s %s\n", store_jstr(m, "name", ""), store_jstr(m, "created_at", ""),
                   store_jstr(m, "source_id", ""));
        }
    json_object_put(arr);
    return CTL_OK;
}

static int template_delete(const char *name)
{
    char dir[PATH_MAX];
    if (template_dir(dir, sizeof(dir), name) < 0)
        return CTL_USAGE;
    int lock = store_lock(), rc = CTL_OK;
    if (access(dir, F_OK) < 0) {
        fprintf(stderr, "amberctl: no template %s\n", name);
        rc = CTL_NOT_FOUND;
    } else if (image_users(dir, false) > 0) {
        fprintf(stderr, "amberctl: template %s is in use: delete those sandboxes first\n", name);
        rc = CTL_CONFLICT;
    } else if (ctl_remove_tree(dir) < 0) {
        rc = CTL_FAIL;
    } else {
        printf("template %s deleted\n", name);
    }
    if (lock >= 0)
        close(lock);
    return rc;
}

int ctl_template(int argc, char **argv)
{
    const char *usage = "template create --id ID NAME | template list [--json] | "
                        "template delete NAME";
    int rc = CTL_USAGE;
    if (argc >= 2 && strcmp(argv[1], "create") == 0)
        rc = template_create(argc - 1, argv + 1);
    else if (argc >= 2 && strcmp(argv[1], "list") == 0 &&
             (argc == 2 || (argc == 3 && strcmp(argv[2], "--json") == 0)))
        rc = template_list(argc == 3);
    else if (argc == 3 && strcmp(argv[1], "delete") == 0)
        rc = template_delete(argv[2]);
    if (rc == CTL_USAGE)
        fprintf(stderr, "usage: amberctl %s\n", usage);
    return rc;
}

int ctl_create_any(int argc, char **argv)
{
    const char *name = NULL, *id = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--template") == 0 && i + 1 < argc)
            name = argv[++i];
        else if (strcmp(argv[i], "--id") == 0 && i + 1 < argc)
            id = argv[++i];
        else if (name || strcmp(argv[i], "--template") == 0)
            return fprintf(stderr, "usage: amberctl create --template NAME [--id ID]\n"), CTL_USAGE;
    }
    if (!name)
        return ctl_create(argc, argv);
    char dir[PATH_MAX], newid[65];
    if (template_dir(dir, sizeof(dir), name) < 0 || (id && !ctl_id_valid(id)))
        return CTL_USAGE;
    if (!id)
        random_id(newid, sizeof(newid), "sbx-");
    else
        snprintf(newid, sizeof(newid), "%s", id);
    int rc = make_child(dir, newid, name, NULL);
    if (rc == CTL_OK)
        printf("%s\n", newid);
    return rc;
}

int ctl_fork(int argc, char **argv)
{
    const char *usage = "fork --id ID [-n N]";
    const char *id = NULL;
    long n = 1;
    for (int i = 1; i < argc; i++) {
        char *end;
        if (strcmp(argv[i], "--id") == 0 && i + 1 < argc) {
            id = argv[++i];
        } else if (strcmp(argv[i], "-n") == 0 && i + 1 < argc) {
            n = strtol(argv[++i], &end, 10);
            if (*end || n < 1 || n > MAX_FORK)
                n = -1;
        } else {
            n = -1;
        }
    }
    if (!id || !ctl_id_valid(id) || n < 1) {
        fprintf(stderr, "usage: amberctl %s   (1 <= N <= %d)\n", usage, MAX_FORK);
        return CTL_USAGE;
    }
    char dir[PATH_MAX], suffix[16];
    if (store_path(dir, sizeof(dir) - 100, ".forks") < 0)
        return CTL_FAIL;
    random_id(suffix, sizeof(suffix), "-");
    strcat(dir, "/");
    strcat(dir, id);
    strcat(dir, suffix);
    struct json_object *meta = json_object_new_object();
    int rc = make_image(id, dir, meta);
    json_object_put(meta);
    if (rc != CTL_OK)
        return rc;
    int made = 0;
    for (long i = 0; i < n && rc == CTL_OK; i++) {
        char kid[65];
        random_id(kid, sizeof(kid), "sbx-");
        rc = make_child(dir, kid, NULL, id);
        if (rc == CTL_OK) {
            printf("%s\n", kid);
            fflush(stdout);
            made++;
        }
    }
    if (!made)
        ctl_remove_tree(dir); /* no child uses it */
    return rc;
}

void ctl_release_image(const char *image_dir)
{
    char forks[PATH_MAX], real[PATH_MAX];
    if (!image_dir || !realpath(image_dir, real) || store_path(forks, sizeof(forks), ".forks") < 0)
        return;
    char *slash = strrchr(real, '/');
    char rf[PATH_MAX];
    if (!slash || !realpath(forks, rf) || strncmp(real, rf, (size_t)(slash - real)) != 0 ||
        strlen(rf) != (size_t)(slash - real))
        return; /* only fork images go by themselves */
    int lock = store_lock();
    if (image_users(real, true) == 0)
        ctl_remove_tree(real);
    if (lock >= 0)
        close(lock);
}
