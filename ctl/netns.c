/* Sandbox networking, the system half: makes and removes a sandbox's namespace, veth pair, TAP
 * and nft tables by running ip(8) and nft(8), and keeps a record per sandbox for clean-up. */
#include "ctl/netns.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RULESET_MAX 32768
#define ERR_TAIL    1024

const char *net_state_dir(void)
{
    const char *d = getenv("AMBER_NET_STATE_DIR");
    return d && *d ? d : "/run/amber-net";
}

static int ns_fd(const char *ns)
{
    char path[160];
    snprintf(path, sizeof(path), "/run/netns/%s", ns);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

/* execvp, then the sbin directories a non-login PATH may lack. */
static void exec_tool(char *const argv[])
{
    execvp(argv[0], argv);
    static const char *const dirs[] = {"/usr/sbin/", "/sbin/", "/usr/bin/"};
    char path[128];
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        snprintf(path, sizeof(path), "%s%s", dirs[i], argv[0]);
        execv(path, argv);
    }
}

/*
 * Run argv (in namespace ns when not NULL), with input on its stdin. Returns 0 when it exits
 * 0, else -EIO with the command and the start of its stderr in err.
 */
static int run(const char *ns, const char *const argv[], const char *input, char *err,
               size_t errlen)
{
    int in[2] = {-1, -1}, errp[2] = {-1, -1};
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0) {
        int e = -errno;
        if (in[0] >= 0) {
            close(in[0]);
            close(in[1]);
        }
        return e;
    }
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGPIPE, SIG_DFL);
        if (ns) {
            int fd = ns_fd(ns);
            if (fd < 0 || setns(fd, CLONE_NEWNET) < 0) {
                dprintf(errp[1], "cannot enter network namespace %s: %s", ns, strerror(errno));
                _exit(126);
            }
        }
        int null = open("/dev/null", O_WRONLY);
        dup2(in[0], 0);
        dup2(null, 1);
        dup2(errp[1], 2);
        exec_tool((char *const *)argv);
        dprintf(2, "cannot run %s: %s%s", argv[0], strerror(errno),
                strcmp(argv[0], "nft") == 0 ? " (install the nftables package)" : "");
        _exit(127);
    }
    close(in[0]);
    close(errp[1]);
    if (pid < 0) {
        close(in[1]);
        close(errp[0]);
        return -errno;
    }
    if (input) {
        void (*old)(int) = signal(SIGPIPE, SIG_IGN);
        size_t left = strlen(input);
        while (left > 0) {
            ssize_t n = write(in[1], input, left);
            if (n <= 0)
                break;
            input += n;
            left -= (size_t)n;
        }
        signal(SIGPIPE, old);
    }
    close(in[1]);
    char tail[ERR_TAIL]; /* the first bytes: nft names the first rule it refused first */
    size_t have = 0;
    for (;;) {
        char chunk[256];
        ssize_t n = read(errp[0], chunk, sizeof(chunk));
        if (n <= 0)
            break;
        for (ssize_t i = 0; i < n && have < sizeof(tail) - 1; i++)
            tail[have++] = chunk[i];
    }
    close(errp[0]);
    tail[have] = '\0';
    while (have > 0 && (tail[have - 1] == '\n' || tail[have - 1] == ' '))
        tail[--have] = '\0';
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return 0;
    if (err && errlen) {
        size_t pos = 0;
        for (const char *const *a = argv; *a && pos + 1 < errlen; a++)
            pos += (size_t)snprintf(err + pos, errlen - pos, "%s%s", a == argv ? "" : " ", *a);
        if (pos + 1 < errlen)
            snprintf(err + pos, errlen - pos, ": %s", have ? tail : "failed");
    }
    return -EIO;
}

/* Write val to the sysctl file path inside namespace ns (NULL: this one). */
static int ns_sysctl(const char *ns, const char *path, const char *val, char *err, size_t errlen)
{
    pid_t pid = fork();
    if (pid == 0) {
        int fd = ns ? ns_fd(ns) : -1;
        if (ns && (fd < 0 || setns(fd, CLONE_NEWNET) < 0))
            _exit(1);
        int s = open(path, O_WRONLY | O_CLOEXEC);
        _exit(s >= 0 && write(s, val, strlen(val)) == (ssize_t)strlen(val) ? 0 : 1);
    }
    int st;
    if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        snprintf(err, errlen, "cannot write %s in %s", path, ns ? ns : "the host");
        return -EIO;
    }
    return 0;
}

static int lock_state(void)
{
    const char *d = net_state_dir();
    if (mkdir(d, 0700) < 0 && errno != EEXIST)
        return -errno;
    char path[300];
    snprintf(path, sizeof(path), "%s/.lock", d);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    flock(fd, LOCK_EX);
    return fd;
}

/* The record of id: "slot N\ndir PATH\n". Returns 0 or -errno. */
static int read_record(const char *id, unsigned *slot, char *dir, size_t dirlen)
{
    char path[400], line[700];
    snprintf(path, sizeof(path), "%s/%s", net_state_dir(), id);
    FILE *f = fopen(path, "re");
    if (!f)
        return -errno;
    int ok = 0;
    if (fgets(line, sizeof(line), f) && sscanf(line, "slot %u", slot) == 1 && *slot < NET_SLOTS)
        ok = 1;
    if (dir && dirlen) {
        dir[0] = '\0';
        if (fgets(line, sizeof(line), f) && strncmp(line, "dir ", 4) == 0) {
            line[strcspn(line, "\n")] = '\0';
            snprintf(dir, dirlen, "%s", line + 4);
        }
    }
    fclose(f);
    return ok ? 0 : -EINVAL;
}

static bool valid_id(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > 64)
        return false;
    for (const char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-'))
            return false;
    return true;
}

/* Take a free slot (hash of id, then the next free ones) and write id's record; lock held. */
static int claim_slot(const char *id, const char *dir, unsigned *slot)
{
    static uint8_t used[NET_SLOTS / 8];
    memset(used, 0, sizeof(used));
    DIR *d = opendir(net_state_dir());
    if (!d)
        return -errno;
    struct dirent *e;
    while ((e = readdir(d))) {
        unsigned s;
        if (e->d_name[0] != '.' && read_record(e->d_name, &s, NULL, 0) == 0)
            used[s / 8] |= (uint8_t)(1u << (s % 8));
    }
    closedir(d);
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const char *p = id; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    for (unsigned i = 0; i < NET_SLOTS; i++) {
        unsigned s = (h + i) % NET_SLOTS;
        char ifname[16];
        snprintf(ifname, sizeof(ifname), "ambn%u", s);
        if (used[s / 8] & (1u << (s % 8)) || if_nametoindex(ifname) != 0)
            continue;
        char path[400];
        snprintf(path, sizeof(path), "%s/%s", net_state_dir(), id);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0)
            return -errno;
        int ok = dprintf(fd, "slot %u\ndir %s\n", s, dir) > 0;
        close(fd);
        if (!ok) {
            unlink(path);
            return -EIO;
        }
        *slot = s;
        return 0;
    }
    return -ENOSPC;
}

/* The nameservers the guest gets: $AMBER_NET_DNS, else the host's resolv.conf (systemd-resolved's
 * upstream list when the host's are all loopback), else two public resolvers. */
static void pick_dns(struct net_info *info)
{
    const char *env = getenv("AMBER_NET_DNS");
    if (env && *env) {
        char text[256] = "";
        char copy[200];
        snprintf(copy, sizeof(copy), "%s", env);
        for (char *save, *t = strtok_r(copy, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
            size_t n = strlen(text);
            snprintf(text + n, sizeof(text) - n, "nameserver %s\n", t);
        }
        info->ndns = net_parse_resolv(text, info->dns, NET_MAX_DNS);
        return;
    }
    static const char *const files[] = {"/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"};
    for (size_t i = 0; i < 2 && info->ndns == 0; i++) {
        char text[4096];
        FILE *f = fopen(files[i], "re");
        if (!f)
            continue;
        size_t n = fread(text, 1, sizeof(text) - 1, f);
        fclose(f);
        text[n] = '\0';
        info->ndns = net_parse_resolv(text, info->dns, NET_MAX_DNS);
    }
    if (info->ndns == 0)
        info->ndns =
            net_parse_resolv("nameserver 8.8.8.8\nnameserver 1.1.1.1\n", info->dns, NET_MAX_DNS);
}

int net_up(const char *id, const char *sandbox_dir, const struct net_policy *p,
           struct net_info *info, char *err, size_t errlen)
{
    if (!valid_id(id)) {
        snprintf(err, errlen, "bad sandbox id '%s'", id);
        return -EINVAL;
    }
    if (geteuid() != 0) {
        snprintf(err, errlen, "sandbox networking needs root (CAP_NET_ADMIN) to make namespaces");
        return -EPERM;
    }
    net_gc();
    int lock = lock_state();
    if (lock < 0) {
        snprintf(err, errlen, "cannot lock %s: %s", net_state_dir(), strerror(-lock));
        return lock;
    }
    unsigned slot = 0;
    int r = claim_slot(id, sandbox_dir, &slot);
    close(lock);
    if (r < 0) {
        snprintf(err, errlen, "%s",
                 r == -EEXIST ? "a network for this sandbox id already exists" : strerror(-r));
        return r;
    }
    net_info_init(info, id, slot);
    pick_dns(info);
    char *rules = malloc(RULESET_MAX);
    if (!rules) {
        r = -ENOMEM;
        goto err_down;
    }
    const char *ns = info->ns, *hi = info->host_if;
    char host_cidr[24], ns_cidr[24], gw_cidr[24];
    snprintf(host_cidr, sizeof(host_cidr), "%s/%d", info->host_ip, NET_PREFIX);
    snprintf(ns_cidr, sizeof(ns_cidr), "%s/%d", info->ns_ip, NET_PREFIX);
    snprintf(gw_cidr, sizeof(gw_cidr), "%s/%d", NET_GATEWAY, NET_PREFIX);
    const char *const steps[][12] = {
        {"ip", "netns", "add", ns, NULL},
        {"ip", "link", "add", hi, "type", "veth", "peer", "name", NET_NS_VETH, "netns", ns, NULL},
        {"ip", "addr", "add", host_cidr, "dev", hi, NULL},
        {"ip", "link", "set", hi, "up", NULL},
        {"ip", "-n", ns, "link", "set", "lo", "up", NULL},
        {"ip", "-n", ns, "addr", "add", ns_cidr, "dev", NET_NS_VETH, NULL},
        {"ip", "-n", ns, "link", "set", NET_NS_VETH, "up", NULL},
        {"ip", "-n", ns, "route", "add", "default", "via", info->host_ip, NULL},
        {"ip", "-n", ns, "tuntap", "add", "dev", NET_TAP, "mode", "tap", "vnet_hdr", NULL},
        {"ip", "-n", ns, "addr", "add", gw_cidr, "dev", NET_TAP, NULL},
        {"ip", "-n", ns, "link", "set", NET_TAP, "up", NULL},
    };
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++)
        if ((r = run(NULL, steps[i], NULL, err, errlen)) < 0)
            goto err_free;
    if ((r = ns_sysctl(ns, "/proc/sys/net/ipv4/ip_forward", "1", err, errlen)) < 0 ||
        (r = ns_sysctl(NULL, "/proc/sys/net/ipv4/ip_forward", "1", err, errlen)) < 0)
        goto err_free;
    static const char *const nft[] = {"nft", "-f", "-", NULL};
    if ((r = net_ns_ruleset(p, info, rules, RULESET_MAX)) < 0 ||
        (r = run(ns, nft, rules, err, errlen)) < 0)
        goto err_free;
    if ((r = net_host_ruleset(info, rules, RULESET_MAX)) < 0 ||
        (r = run(NULL, nft, rules, err, errlen)) < 0)
        goto err_free;
    free(rules);
    return 0;

err_free:
    free(rules);
err_down:
    if (r == -E2BIG)
        snprintf(err, errlen, "the nft ruleset is too long");
    net_down(id);
    return r;
}

static int down_locked(const char *id)
{
    unsigned slot;
    int have = read_record(id, &slot, NULL, 0) == 0;
    char ns[80], nspath[160], err[ERR_TAIL + 100];
    snprintf(ns, sizeof(ns), "amber-%s", id);
    snprintf(nspath, sizeof(nspath), "/run/netns/%s", ns);
    int r = 0;
    if (have) {
        struct net_info info;
        net_info_init(&info, id, slot);
        /* The veth pair would go with the namespace, but only once the kernel's clean-up of
         * it runs: deleting it here makes it gone when this returns. */
        const char *const del_link[] = {"ip", "link", "del", info.host_if, NULL};
        if (if_nametoindex(info.host_if) != 0 && run(NULL, del_link, NULL, err, sizeof(err)) < 0) {
            fprintf(stderr, "amberctl: %s\n", err);
            r = -EIO;
        }
        char table[32];
        net_host_table(slot, table, sizeof(table));
        const char *const del_table[] = {"nft", "delete", "table", "ip", table, NULL};
        const char *const list_table[] = {"nft", "list", "table", "ip", table, NULL};
        if (run(NULL, list_table, NULL, NULL, 0) == 0 &&
            run(NULL, del_table, NULL, err, sizeof(err)) < 0) {
            fprintf(stderr, "amberctl: %s\n", err);
            r = -EIO;
        }
    }
    const char *const del_ns[] = {"ip", "netns", "del", ns, NULL};
    if (access(nspath, F_OK) == 0 && run(NULL, del_ns, NULL, err, sizeof(err)) < 0) {
        fprintf(stderr, "amberctl: %s\n", err);
        r = -EIO;
    }
    char path[400];
    snprintf(path, sizeof(path), "%s/%s", net_state_dir(), id);
    if (r == 0 && unlink(path) < 0 && errno != ENOENT)
        r = -errno;
    return r;
}

int net_down(const char *id)
{
    if (!valid_id(id))
        return -EINVAL;
    char rec[400], nspath[160];
    snprintf(rec, sizeof(rec), "%s/%s", net_state_dir(), id);
    snprintf(nspath, sizeof(nspath), "/run/netns/amber-%s", id);
    if (access(rec, F_OK) < 0 && access(nspath, F_OK) < 0)
        return 0; /* the common case: a sandbox without a network */
    int lock = lock_state();
    int r = down_locked(id);
    if (lock >= 0)
        close(lock);
    return r;
}

/* True while something may still use id's network: its runtime directory exists and its amber
 * holds amber.pid's lock, or its creator holds starting.lock. */
static bool in_use(const char *dir)
{
    struct stat st;
    if (!dir[0] || stat(dir, &st) < 0)
        return false;
    static const char *const locks[] = {"amber.pid", "starting.lock"};
    for (int i = 0; i < 2; i++) {
        char path[800];
        snprintf(path, sizeof(path), "%s/%s", dir, locks[i]);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        bool held = flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK;
        close(fd);
        if (held)
            return true;
    }
    return false;
}

int net_gc(void)
{
    if (access(net_state_dir(), F_OK) < 0)
        return 0;
    int lock = lock_state();
    if (lock < 0)
        return 0;
    DIR *d = opendir(net_state_dir());
    int removed = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        unsigned slot;
        char dir[600];
        if (e->d_name[0] == '.' || read_record(e->d_name, &slot, dir, sizeof(dir)) < 0)
            continue;
        if (valid_id(e->d_name) && !in_use(dir) && down_locked(e->d_name) == 0)
            removed++;
    }
    if (d)
        closedir(d);
    close(lock);
    return removed;
}

int net_enter(const char *id)
{
    char ns[80];
    snprintf(ns, sizeof(ns), "amber-%s", id);
    int fd = ns_fd(ns);
    if (fd < 0)
        return fd;
    int r = setns(fd, CLONE_NEWNET) < 0 ? -errno : 0;
    close(fd);
    return r;
}
