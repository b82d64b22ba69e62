/* amberctl create: launch a sandbox in the runtime directory (the SDK's layout), wait for its
 * agent, set its lifetime, and print its id. */
#include "ctl/amberctl.h"
#include "ctl/ctl_net.h"
#include "ctl/http_client.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <limits.h>
#include <sched.h>
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

#define CREATE_USAGE                                                                               \
    "create [--id ID] [--vcpus N] [--mem-mib N] [--timeout S] [--on-timeout kill|pause]\n"         \
    "                  [--metadata K=V]... [--env K=V]... [--boot-timeout S] [--json]\n"           \
    "                  [--network [--allow-out CIDR[:PORT]]... [--deny-out CIDR[:PORT]]...]"
#define MAX_PAIRS   64
#define BOOT_WAIT_S 30.0

enum {
    OPT_VCPUS = 0x200,
    OPT_MEM,
    OPT_ON_TIMEOUT,
    OPT_META,
    OPT_BOOT_TIMEOUT,
    OPT_NETWORK,
    OPT_ALLOW_OUT,
    OPT_DENY_OUT
};

struct create_opts {
    char id[65];
    long vcpus, mem_mib;
    long long timeout_ms, boot_ms;
    const char *on_timeout;
    const char *meta[MAX_PAIRS], *env[MAX_PAIRS];
    int nmeta, nenv;
    bool json;
    bool network;
    struct net_policy net; /* --allow-out, --deny-out (need --network) */
};

/* $AMBER_TIMEOUT_SCALE, else 10 inside the test host or without vmx/svm, else 1 (as the SDK). */
static double timeout_scale(void)
{
    const char *v = getenv("AMBER_TIMEOUT_SCALE");
    if (v && atof(v) > 0)
        return atof(v);
    char buf[4096];
    FILE *f = fopen("/proc/cmdline", "r");
    bool testhost = f && fgets(buf, sizeof(buf), f) && strstr(buf, "amber.job=");
    if (f)
        fclose(f);
    bool hw = false;
    f = fopen("/proc/cpuinfo", "r");
    while (f && !hw && fgets(buf, sizeof(buf), f))
        hw = strncmp(buf, "flags", 5) == 0 && (strstr(buf, " vmx") || strstr(buf, " svm"));
    if (f)
        fclose(f);
    return testhost || !hw ? 10.0 : 1.0;
}

void ctl_artefact(char *out, size_t len, const char *env, const char *name)
{
    const char *v = getenv(env);
    if (v && *v) {
        snprintf(out, len, "%s", v);
        return;
    }
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    self[n > 0 ? n : 0] = '\0';
    char *slash = strrchr(self, '/');
    if (slash)
        *slash = '\0';
    snprintf(out, len, "%s/%s", self, name);
}

/* K=V with K non-empty and without NUL; env names also [A-Za-z_][A-Za-z0-9_]*. */
static bool pair_ok(const char *kv, bool env)
{
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv || eq - kv > 128 || strlen(eq + 1) > 4096)
        return false;
    for (const char *p = kv; env && p < eq; p++)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || *p == '_' ||
              (p > kv && *p >= '0' && *p <= '9')))
            return false;
    return true;
}

static int parse(int argc, char **argv, struct create_opts *o)
{
    static const struct option opts[] = {
        {"id", required_argument, NULL, OPT_ID},
        {"vcpus", required_argument, NULL, OPT_VCPUS},
        {"mem-mib", required_argument, NULL, OPT_MEM},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"on-timeout", required_argument, NULL, OPT_ON_TIMEOUT},
        {"metadata", required_argument, NULL, OPT_META},
        {"env", required_argument, NULL, OPT_ENV},
        {"boot-timeout", required_argument, NULL, OPT_BOOT_TIMEOUT},
        {"json", no_argument, NULL, OPT_JSON},
        {"network", no_argument, NULL, OPT_NETWORK},
        {"allow-out", required_argument, NULL, OPT_ALLOW_OUT},
        {"deny-out", required_argument, NULL, OPT_DENY_OUT},
        {NULL, 0, NULL, 0},
    };
    int ch;
    char *end;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case OPT_ID:
            if (!ctl_id_valid(optarg)) {
                fprintf(stderr, "amberctl: bad id '%s': ids match [A-Za-z0-9_-]{1,64}\n", optarg);
                return -1;
            }
            snprintf(o->id, sizeof(o->id), "%s", optarg);
            break;
        case OPT_VCPUS:
        case OPT_MEM: {
            long v = strtol(optarg, &end, 10);
            long lo = ch == OPT_VCPUS ? 1 : 32, hi = ch == OPT_VCPUS ? 32 : 1L << 20;
            if (*end || end == optarg || v < lo || v > hi) {
                fprintf(stderr, "amberctl: --%s must be %ld..%ld\n",
                        ch == OPT_VCPUS ? "vcpus" : "mem-mib", lo, hi);
                return -1;
            }
            *(ch == OPT_VCPUS ? &o->vcpus : &o->mem_mib) = v;
            break;
        }
        case OPT_TIMEOUT:
        case OPT_BOOT_TIMEOUT: {
            long long ms = ctl_parse_seconds_ms(optarg);
            if (ms <= 0 || (ch == OPT_TIMEOUT && ms > 366LL * 86400 * 1000)) {
                fprintf(stderr, "amberctl: --%s must be a number of seconds > 0%s\n",
                        ch == OPT_TIMEOUT ? "timeout" : "boot-timeout",
                        ch == OPT_TIMEOUT ? " (at most 366 days)" : "");
                return -1;
            }
            *(ch == OPT_TIMEOUT ? &o->timeout_ms : &o->boot_ms) = ms;
            break;
        }
        case OPT_ON_TIMEOUT:
            if (strcmp(optarg, "kill") != 0 && strcmp(optarg, "pause") != 0) {
                fprintf(stderr, "amberctl: --on-timeout must be kill or pause\n");
                return -1;
            }
            o->on_timeout = optarg;
            break;
        case OPT_META:
        case OPT_ENV: {
            bool env = ch == OPT_ENV;
            int *n = env ? &o->nenv : &o->nmeta;
            if (*n == MAX_PAIRS || !pair_ok(optarg, env)) {
                fprintf(stderr, "amberctl: bad --%s '%s' (K=V, at most %d)\n",
                        env ? "env" : "metadata", optarg, MAX_PAIRS);
                return -1;
            }
            (env ? o->env : o->meta)[(*n)++] = optarg;
            break;
        }
        case OPT_JSON:
            o->json = true;
            break;
        case OPT_NETWORK:
            o->network = true;
            break;
        case OPT_ALLOW_OUT:
        case OPT_DENY_OUT:
            if (ctl_net_opt(&o->net, ch == OPT_ALLOW_OUT, optarg) < 0)
                return -1;
            break;
        default:
            return -1;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "amberctl: create takes no arguments, only options\n");
        return -1;
    }
    if (!o->network && (o->net.nallow || o->net.ndeny)) {
        fprintf(stderr, "amberctl: --allow-out and --deny-out need --network\n");
        return -1;
    }
    return 0;
}

static struct json_object *pairs(const char *const *kv, int n)
{
    struct json_object *o = json_object_new_object();
    for (int i = 0; i < n; i++) {
        const char *eq = strchr(kv[i], '=');
        char key[130];
        snprintf(key, sizeof(key), "%.*s", (int)(eq - kv[i]), kv[i]);
        json_object_object_add(o, key, json_object_new_string(eq + 1));
    }
    return o;
}

static int run_wait(char *const argv[])
{
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        dup2(null, 1);
        execvp(argv[0], argv);
        _exit(127);
    }
    int st;
    if (pid < 0 || waitpid(pid, &st, 0) < 0)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

pid_t ctl_spawn_amber(const char *dir, char *const argv[])
{
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        char out[PATH_MAX], err[PATH_MAX];
        snprintf(out, sizeof(out), "%s/amber.stdout", dir);
        snprintf(err, sizeof(err), "%s/amber.stderr", dir);
        setsid();
        int in = open("/dev/null", O_RDONLY);
        int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (in < 0 || o < 0 || e < 0 || chdir(dir) < 0)
            _exit(126);
        dup2(in, 0);
        dup2(o, 1);
        dup2(e, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static void fail_cleanup(const char *dir, pid_t pid)
{
    if (pid > 0) {
        kill(-pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    const char *slash = strrchr(dir, '/');
    net_down(slash ? slash + 1 : dir); /* its network, if --network made one */
    ctl_remove_tree(dir);
}

/* Start amber inside sandbox id's network namespace (network) or this one. */
static pid_t spawn_in(const char *dir, char *const argv[], bool network, const char *id)
{
    if (!network)
        return ctl_spawn_amber(dir, argv);
    int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    int r = self < 0 ? -errno : net_enter(id);
    pid_t pid = r < 0 ? r : ctl_spawn_amber(dir, argv);
    if (r == 0 && setns(self, CLONE_NEWNET) < 0) {
        fprintf(stderr, "amberctl: cannot return to the host network namespace: %s\n",
                strerror(errno));
        if (pid > 0) {
            kill(-pid, SIGKILL);
            waitpid(pid, NULL, 0);
        }
        pid = -EIO;
    }
    if (self >= 0)
        close(self);
    return pid;
}

static int write_config(const char *dir, struct json_object *cfg)
{
    char tmp[PATH_MAX], path[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s/.config.json.tmp", dir);
    snprintf(path, sizeof(path), "%s/config.json", dir);
    int r = json_object_to_file_ext(tmp, cfg, JSON_C_TO_STRING_PRETTY);
    return r == 0 && rename(tmp, path) == 0 ? 0 : -EIO;
}

int ctl_create(int argc, char **argv)
{
    struct create_opts o = {.vcpus = 1, .mem_mib = 256, .on_timeout = "kill"};
    if (parse(argc, argv, &o) < 0) {
        fprintf(stderr, "usage: amberctl %s\n", CREATE_USAGE);
        return CTL_USAGE;
    }
    if (!o.id[0]) {
        uint8_t rnd[4] = {0};
        if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
            return CTL_FAIL;
        snprintf(o.id, sizeof(o.id), "sbx-%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3]);
    }
    char amber[PATH_MAX], kernel[PATH_MAX], initrd[PATH_MAX], base[PATH_MAX];
    ctl_artefact(amber, sizeof(amber), "AMBER_BIN", "amber");
    ctl_artefact(kernel, sizeof(kernel), "AMBER_KERNEL", "guest/vmlinuz");
    ctl_artefact(initrd, sizeof(initrd), "AMBER_INITRD", "guest/initramfs.cpio.gz");
    ctl_artefact(base, sizeof(base), "AMBER_ROOTFS", "guest/rootfs.ext4");
    const char *need[] = {amber, kernel, initrd, base};
    for (int i = 0; i < 4; i++) {
        if (access(need[i], R_OK) < 0) {
            fprintf(stderr, "amberctl: %s is missing: build it with `make all guest`\n", need[i]);
            return CTL_FAIL;
        }
    }
    char root[400], dir[600];
    if (ctl_runtime_root(root, sizeof(root)) < 0)
        return CTL_FAIL;
    mkdir(root, 0700);
    snprintf(dir, sizeof(dir), "%s/%s", root, o.id);
    if (mkdir(dir, 0700) < 0) {
        fprintf(stderr, "amberctl: sandbox %s: %s\n", o.id,
                errno == EEXIST ? "already exists" : strerror(errno));
        return errno == EEXIST ? CTL_CONFLICT : CTL_FAIL;
    }
    char p_lock[700], p_rootfs[700], p_api[700], p_vsock[700], p_con[700], p_pid[700], p_exit[700];
    snprintf(p_lock, sizeof(p_lock), "%s/starting.lock", dir);
    snprintf(p_rootfs, sizeof(p_rootfs), "%s/rootfs.ext4", dir);
    snprintf(p_api, sizeof(p_api), "%s/api.sock", dir);
    snprintf(p_vsock, sizeof(p_vsock), "%s/vsock.sock", dir);
    snprintf(p_con, sizeof(p_con), "%s/console.log", dir);
    snprintf(p_pid, sizeof(p_pid), "%s/amber.pid", dir);
    snprintf(p_exit, sizeof(p_exit), "%s/exit.json", dir);
    /* Held until the agent answers, so that nobody takes a booting sandbox for a stale one. */
    int lock = open(p_lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock >= 0)
        flock(lock, LOCK_EX);
    char *cp[] = {"cp", "--sparse=always", "--", base, p_rootfs, NULL};
    if (run_wait(cp) != 0) {
        fprintf(stderr, "amberctl: cannot copy %s to %s\n", base, p_rootfs);
        fail_cleanup(dir, 0);
        return CTL_FAIL;
    }
    struct net_info net;
    if (o.network) {
        char err[1400];
        if (net_up(o.id, dir, &o.net, &net, err, sizeof(err)) < 0) {
            fprintf(stderr, "amberctl: sandbox %s: network set-up failed: %s\n", o.id, err);
            fail_cleanup(dir, 0);
            return CTL_FAIL;
        }
    }
    char drive[760], vsock[760], vcpus[16], mem[24], net_arg[64];
    snprintf(drive, sizeof(drive), "path=%s,root", p_rootfs);
    snprintf(vsock, sizeof(vsock), "cid=3,uds=%s", p_vsock);
    snprintf(vcpus, sizeof(vcpus), "%ld", o.vcpus);
    snprintf(mem, sizeof(mem), "%ld", o.mem_mib);
    char *av[] = {amber,  "--id",       o.id,   "--api-sock",  p_api,  "--kernel",
                  kernel, "--initrd",   initrd, "--drive",     drive,  "--vsock",
                  vsock,  "--vcpus",    vcpus,  "--mem-mib",   mem,    "--console",
                  p_con,  "--pid-file", p_pid,  "--exit-file", p_exit, NULL,
                  NULL,   NULL};
    if (o.network) {
        snprintf(net_arg, sizeof(net_arg), "tap=%s,mac=%s", NET_TAP, NET_GUEST_MAC);
        av[sizeof(av) / sizeof(av[0]) - 3] = "--net";
        av[sizeof(av) / sizeof(av[0]) - 2] = net_arg;
    }
    struct json_object *cfg = json_object_new_object(), *jargv = json_object_new_array();
    for (char **a = av; *a; a++)
        json_object_array_add(jargv, json_object_new_string(*a));
    char created[32];
    time_t now = time(NULL);
    strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    json_object_object_add(cfg, "id", json_object_new_string(o.id));
    json_object_object_add(cfg, "vcpus", json_object_new_int64(o.vcpus));
    json_object_object_add(cfg, "mem_mib", json_object_new_int64(o.mem_mib));
    json_object_object_add(cfg, "kernel", json_object_new_string(kernel));
    json_object_object_add(cfg, "initrd", json_object_new_string(initrd));
    json_object_object_add(cfg, "base_rootfs", json_object_new_string(base));
    json_object_object_add(cfg, "rootfs", json_object_new_string(p_rootfs));
    json_object_object_add(cfg, "api_sock", json_object_new_string(p_api));
    json_object_object_add(cfg, "vsock_uds", json_object_new_string(p_vsock));
    json_object_object_add(cfg, "guest_cid", json_object_new_int(3));
    json_object_object_add(cfg, "agent_port", json_object_new_int(1024));
    json_object_object_add(cfg, "console", json_object_new_string(p_con));
    json_object_object_add(cfg, "argv", jargv);
    json_object_object_add(cfg, "created_by", json_object_new_string("amberctl"));
    json_object_object_add(cfg, "creator_pid", json_object_new_int(getpid()));
    json_object_object_add(cfg, "created_at", json_object_new_string(created));
    json_object_object_add(cfg, "metadata", pairs(o.meta, o.nmeta));
    json_object_object_add(cfg, "envs", pairs(o.env, o.nenv));
    if (o.network)
        json_object_object_add(cfg, "network", ctl_net_json(&net, &o.net));
    int r = write_config(dir, cfg);
    json_object_put(cfg);
    if (r < 0) {
        fprintf(stderr, "amberctl: cannot write %s/config.json\n", dir);
        fail_cleanup(dir, 0);
        return CTL_FAIL;
    }
    pid_t pid = spawn_in(dir, av, o.network, o.id);
    if (pid < 0) {
        fprintf(stderr, "amberctl: cannot start %s: %s\n", amber, strerror(-pid));
        fail_cleanup(dir, 0);
        return CTL_FAIL;
    }
    double boot_s = o.boot_ms ? (double)o.boot_ms / 1000.0 : BOOT_WAIT_S * timeout_scale();
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct agent_addr a = {.path = p_vsock, .hybrid = true, .timeout_ms = 3000};
    struct agent_ping_info info;
    for (;;) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            fprintf(stderr,
                    "amberctl: amber exited while starting sandbox %s; see %s/amber.stderr:\n",
                    o.id, dir);
            char *tail[] = {"tail", "-n", "15", "--", NULL, NULL};
            char errp[700];
            snprintf(errp, sizeof(errp), "%s/amber.stderr", dir);
            tail[4] = errp;
            fflush(stderr);
            int saved = dup(1);
            dup2(2, 1);
            run_wait(tail);
            dup2(saved, 1);
            close(saved);
            fail_cleanup(dir, 0);
            return CTL_FAIL;
        }
        if (access(p_vsock, F_OK) == 0 && agent_ping(&a, &info, NULL) == 0)
            break;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) / 1e9 > boot_s) {
            fprintf(stderr, "amberctl: sandbox %s: the guest agent did not answer within %.0f s\n",
                    o.id, boot_s);
            fail_cleanup(dir, pid);
            return CTL_FAIL;
        }
        usleep(200 * 1000);
    }
    if (o.network && ctl_net_guest_setup(p_vsock, &net) < 0) {
        fprintf(stderr, "amberctl: sandbox %s: the guest's network set-up failed\n", o.id);
        fail_cleanup(dir, pid);
        return CTL_FAIL;
    }
    if (o.timeout_ms) {
        char body[96];
        struct httpc_response resp;
        snprintf(body, sizeof(body), "{\"timeout_s\": %lld, \"on_timeout\": \"%s\"}",
                 (o.timeout_ms + 999) / 1000, o.on_timeout);
        r = httpc_request(p_api, "PUT", "/timeout", body, 10000, &resp);
        if (r < 0 || resp.status != 200) {
            fprintf(stderr, "amberctl: sandbox %s: PUT /timeout failed: %s\n", o.id,
                    r < 0 ? strerror(-r) : resp.body);
            if (r == 0)
                httpc_response_free(&resp);
            fail_cleanup(dir, pid);
            return CTL_FAIL;
        }
        httpc_response_free(&resp);
    }
    if (lock >= 0) {
        close(lock);
        unlink(p_lock);
    }
    if (o.json) {
        struct json_object *out = json_object_new_object();
        json_object_object_add(out, "id", json_object_new_string(o.id));
        json_object_object_add(out, "pid", json_object_new_int(pid));
        json_object_object_add(out, "dir", json_object_new_string(dir));
        printf("%s\n", json_object_to_json_string_ext(out, JSON_C_TO_STRING_PLAIN));
        json_object_put(out);
    } else {
        printf("%s\n", o.id);
    }
    return CTL_OK;
}
