/* The command line: defaults, getopt_long parsing, strict values, and pre-boot validation. */
#include "vmm/config.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void config_defaults(struct vm_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->vcpus = 1;
    cfg->mem_mib = 256;
    cfg->console = CONSOLE_STDIO;
    cfg->console_max_mib = CONFIG_DEFAULT_CONSOLE_MIB;
    cfg->on_reboot = ON_REBOOT_EXIT;
    cfg->seccomp = true;
    cfg->entropy = false;
}

__attribute__((format(printf, 3, 4))) static int config_fail(char *err, size_t errlen,
                                                             const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
        /* Messages quote user input: keep them on one line and free of terminal escapes. */
        for (char *p = err; *p; p++)
            if ((unsigned char)*p < ' ' || *p == 0x7f)
                *p = '?';
    }
    return -EINVAL;
}

static int config_parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (!s || !*s)
        return -EINVAL;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -EINVAL;
        unsigned digit = (unsigned)(*p - '0');
        if (v > (max - digit) / 10)
            return -ERANGE;
        v = v * 10 + digit;
    }
    *out = v;
    return 0;
}

static int config_copy(char *dst, size_t dstlen, const char *src)
{
    size_t n = strlen(src);
    if (n == 0 || n >= dstlen)
        return -EINVAL;
    memcpy(dst, src, n + 1);
    return 0;
}

bool config_id_valid(const char *id)
{
    size_t n = 0;
    for (; id[n]; n++) {
        char c = id[n];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-';
        if (!ok || n >= CONFIG_ID_MAX)
            return false;
    }
    return n > 0;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int config_mac_parse(const char *s, uint8_t mac[6])
{
    uint8_t out[6];
    if (strlen(s) != 17)
        return -EINVAL;
    for (int i = 0; i < 6; i++) {
        int hi = hex_digit(s[i * 3]), lo = hex_digit(s[i * 3 + 1]);
        if (hi < 0 || lo < 0 || (i < 5 && s[i * 3 + 2] != ':'))
            return -EINVAL;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    if (out[0] & 0x01)
        return -EINVAL; /* multicast or broadcast */
    if (!(out[0] | out[1] | out[2] | out[3] | out[4] | out[5]))
        return -EINVAL;
    memcpy(mac, out, 6);
    return 0;
}

static bool config_ifname_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n >= sizeof(((struct net_config *)0)->tap))
        return false;
    if (!strcmp(name, ".") || !strcmp(name, ".."))
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == '/' || c == ':' || c <= ' ' || c >= 0x7f)
            return false;
    }
    return true;
}

/* Checks that hold for any configuration, wherever it came from (flags, file or API). */
static int config_check_structure(const struct vm_config *cfg, char *err, size_t errlen)
{
    if (cfg->id[0] && !config_id_valid(cfg->id))
        return config_fail(err, errlen, "id '%s' must match [A-Za-z0-9_-]{1,64}", cfg->id);
    if (cfg->vcpus < 1 || cfg->vcpus > CONFIG_MAX_VCPUS)
        return config_fail(err, errlen, "vcpus must be 1..%d, not %u", CONFIG_MAX_VCPUS,
                           cfg->vcpus);
    if (cfg->mem_mib < CONFIG_MIN_MEM_MIB || cfg->mem_mib > CONFIG_MAX_MEM_MIB)
        return config_fail(err, errlen, "memory must be %d..%llu MiB", CONFIG_MIN_MEM_MIB,
                           CONFIG_MAX_MEM_MIB);
    if (cfg->console_max_mib < 1 || cfg->console_max_mib > CONFIG_MAX_CONSOLE_MIB)
        return config_fail(err, errlen, "console cap must be 1..%llu MiB", CONFIG_MAX_CONSOLE_MIB);
    if (cfg->console == CONSOLE_FILE && !cfg->console_path[0])
        return config_fail(err, errlen, "console file path is empty");
    if (cfg->ndrives > CONFIG_MAX_DRIVES)
        return config_fail(err, errlen, "at most %d drives", CONFIG_MAX_DRIVES);
    if (cfg->nnets > CONFIG_MAX_NETS)
        return config_fail(err, errlen, "at most %d network interfaces", CONFIG_MAX_NETS);

    unsigned roots = 0;
    for (unsigned i = 0; i < cfg->ndrives; i++) {
        const struct drive_config *d = &cfg->drive[i];
        if (!config_id_valid(d->id))
            return config_fail(err, errlen, "drive id '%s' must match [A-Za-z0-9_-]{1,64}", d->id);
        if (!d->path[0])
            return config_fail(err, errlen, "drive '%s' has no path", d->id);
        for (unsigned j = 0; j < i; j++)
            if (!strcmp(cfg->drive[j].id, d->id))
                return config_fail(err, errlen, "duplicate drive id '%s'", d->id);
        roots += d->root;
    }
    if (roots > 1)
        return config_fail(err, errlen, "more than one root drive");

    for (unsigned i = 0; i < cfg->nnets; i++) {
        const struct net_config *n = &cfg->net[i];
        if (!config_id_valid(n->id))
            return config_fail(err, errlen, "interface id '%s' must match [A-Za-z0-9_-]{1,64}",
                               n->id);
        if (!config_ifname_valid(n->tap))
            return config_fail(err, errlen, "bad tap name '%s'", n->tap);
        for (unsigned j = 0; j < i; j++) {
            if (!strcmp(cfg->net[j].id, n->id))
                return config_fail(err, errlen, "duplicate interface id '%s'", n->id);
            if (!strcmp(cfg->net[j].tap, n->tap))
                return config_fail(err, errlen, "tap '%s' used twice", n->tap);
            if (n->has_mac && cfg->net[j].has_mac && !memcmp(n->mac, cfg->net[j].mac, 6))
                return config_fail(err, errlen, "interfaces '%s' and '%s' share a MAC",
                                   cfg->net[j].id, n->id);
        }
    }
    if (cfg->vsock.enabled) {
        if (cfg->vsock.cid < 3 || cfg->vsock.cid == UINT32_MAX)
            return config_fail(err, errlen, "vsock cid must be 3..%u", UINT32_MAX - 1);
        if (!cfg->vsock.uds_path[0])
            return config_fail(err, errlen, "vsock needs a uds path");
    }
    if (cfg->seccomp_filter[0] && !cfg->seccomp)
        return config_fail(err, errlen, "--seccomp-filter needs seccomp on");
    return 0;
}

/* A file the VMM will open: it must exist, not be a directory, and allow mode. */
static int check_file(const char *what, const char *path, int mode, bool regular_only, char *err,
                      size_t errlen)
{
    struct stat st;
    if (stat(path, &st) < 0 || access(path, mode) < 0) {
        int e = errno;
        config_fail(err, errlen, "%s %s: %s", what, path, strerror(e));
        return -e;
    }
    if (S_ISDIR(st.st_mode)) {
        config_fail(err, errlen, "%s %s: is a directory", what, path);
        return -EISDIR;
    }
    if (regular_only ? !S_ISREG(st.st_mode) : !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode))) {
        config_fail(err, errlen, "%s %s: not a regular file", what, path);
        return -EINVAL;
    }
    return 0;
}

int config_validate(const struct vm_config *cfg, char *err, size_t errlen)
{
    int rc = config_check_structure(cfg, err, errlen);
    if (rc)
        return rc;
    if (!cfg->kernel[0])
        return config_fail(err, errlen, "no kernel configured");
    rc = check_file("kernel", cfg->kernel, R_OK, true, err, errlen);
    if (!rc && cfg->initrd[0])
        rc = check_file("initrd", cfg->initrd, R_OK, true, err, errlen);
    for (unsigned i = 0; !rc && i < cfg->ndrives; i++) {
        const struct drive_config *d = &cfg->drive[i];
        rc = check_file("drive", d->path, d->read_only ? R_OK : R_OK | W_OK, false, err, errlen);
    }
    if (!rc && cfg->seccomp_filter[0])
        rc = check_file("seccomp filter", cfg->seccomp_filter, R_OK, true, err, errlen);
    return rc;
}

/* Long options without a short form; values above any char. */
enum {
    OPT_KERNEL = 256,
    OPT_INITRD,
    OPT_CMDLINE,
    OPT_VCPUS,
    OPT_MEM_MIB,
    OPT_CONSOLE,
    OPT_CONSOLE_MAX_MIB,
    OPT_ID,
    OPT_ON_REBOOT,
    OPT_MMIO_CMDLINE,
    OPT_DRIVE,
    OPT_NET,
    OPT_VSOCK,
    OPT_ENTROPY,
    OPT_NO_ENTROPY,
    OPT_API_SOCK,
    OPT_CONFIG_FILE,
    OPT_NO_API,
    OPT_SECCOMP,
    OPT_NO_SECCOMP,
    OPT_SECCOMP_FILTER,
    OPT_BOOT_TIMER,
    OPT_PID_FILE,
    OPT_EXIT_FILE,
    OPT_CHROOT,
    OPT_UID,
    OPT_GID,
    OPT_NEW_MOUNT_NS,
    OPT_NEW_PID_NS,
    OPT_NETNS,
    OPT_CGROUP,
    OPT_RLIMIT_NOFILE,
    OPT_RLIMIT_FSIZE,
    OPT_VERSION,
};

static const struct option long_opts[] = {
    {"kernel", required_argument, NULL, OPT_KERNEL},
    {"initrd", required_argument, NULL, OPT_INITRD},
    {"cmdline", required_argument, NULL, OPT_CMDLINE},
    {"vcpus", required_argument, NULL, OPT_VCPUS},
    {"mem-mib", required_argument, NULL, OPT_MEM_MIB},
    {"console", required_argument, NULL, OPT_CONSOLE},
    {"console-max-mib", required_argument, NULL, OPT_CONSOLE_MAX_MIB},
    {"id", required_argument, NULL, OPT_ID},
    {"on-reboot", required_argument, NULL, OPT_ON_REBOOT},
    {"mmio-cmdline", no_argument, NULL, OPT_MMIO_CMDLINE},
    {"drive", required_argument, NULL, OPT_DRIVE},
    {"net", required_argument, NULL, OPT_NET},
    {"vsock", required_argument, NULL, OPT_VSOCK},
    {"entropy", no_argument, NULL, OPT_ENTROPY},
    {"no-entropy", no_argument, NULL, OPT_NO_ENTROPY},
    {"api-sock", required_argument, NULL, OPT_API_SOCK},
    {"config-file", required_argument, NULL, OPT_CONFIG_FILE},
    {"no-api", no_argument, NULL, OPT_NO_API},
    {"seccomp", required_argument, NULL, OPT_SECCOMP},
    {"no-seccomp", no_argument, NULL, OPT_NO_SECCOMP},
    {"seccomp-filter", required_argument, NULL, OPT_SECCOMP_FILTER},
    {"boot-timer", no_argument, NULL, OPT_BOOT_TIMER},
    {"pid-file", required_argument, NULL, OPT_PID_FILE},
    {"exit-file", required_argument, NULL, OPT_EXIT_FILE},
    {"chroot", required_argument, NULL, OPT_CHROOT},
    {"uid", required_argument, NULL, OPT_UID},
    {"gid", required_argument, NULL, OPT_GID},
    {"new-mount-ns", no_argument, NULL, OPT_NEW_MOUNT_NS},
    {"new-pid-ns", no_argument, NULL, OPT_NEW_PID_NS},
    {"netns", required_argument, NULL, OPT_NETNS},
    {"cgroup", required_argument, NULL, OPT_CGROUP},
    {"rlimit-nofile", required_argument, NULL, OPT_RLIMIT_NOFILE},
    {"rlimit-fsize", required_argument, NULL, OPT_RLIMIT_FSIZE},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, OPT_VERSION},
    {NULL, 0, NULL, 0},
};

void config_usage(FILE *out)
{
    fputs("usage: amber [options]\n"
          "Boot a Linux microVM from flags, a --config-file, or the API on --api-sock.\n"
          "\n"
          "  --kernel PATH            kernel (bzImage or ELF vmlinux); required unless --api-sock"
          " or --config-file\n"
          "  --initrd PATH            initramfs to load\n"
          "  --cmdline STR            kernel command line (default: amber's console/reboot "
          "args)\n"
          "  --vcpus N                vCPUs, 1..32 (default 1)\n"
          "  --mem-mib N              guest RAM in MiB, 16..1048576 (default 256)\n"
          "  --console stdio|none|FILE  where the serial console goes (default stdio)\n"
          "  --console-max-mib N      stop console output after N MiB, 1..1048576 (default "
          "64)\n"
          "  --id ID                  sandbox id, [A-Za-z0-9_-]{1,64}, shown in logs\n"
          "  --on-reboot exit|restart what a guest reboot does (default exit)\n"
          "  --mmio-cmdline           also describe virtio-mmio devices on the command line\n"
          "  --drive path=FILE[,ro][,id=NAME][,root][,direct]  add a virtio-blk drive "
          "(repeatable, max 16; ids default to drive0, drive1, ...)\n"
          "  --net tap=NAME[,mac=xx:xx:xx:xx:xx:xx][,id=NAME]  add a virtio-net interface on a "
          "TAP (repeatable, max 8; ids default to net0, ...)\n"
          "  --vsock cid=N,uds=PATH   add a virtio-vsock device (cid >= 3) bridged to a Unix "
          "socket\n"
          "  --entropy                add a virtio-rng device (off by default, as in "
          "Firecracker)\n"
          "  --no-entropy             no virtio-rng device (the default)\n"
          "  --api-sock PATH          serve the HTTP API on this Unix socket\n"
          "  --config-file PATH       boot from a Firecracker-style JSON configuration\n"
          "  --no-api                 with --config-file: serve no API\n"
          "  --seccomp on|off         seccomp filtering of amber's threads (default on)\n"
          "  --no-seccomp             same as --seccomp=off\n"
          "  --seccomp-filter PATH    use this compiled BPF filter instead of the built-in one\n"
          "  --boot-timer             log the time from start to the guest's boot marker\n"
          "  --pid-file PATH          write amber's pid here and keep it locked while running\n"
          "  --exit-file PATH         write {\"reason\", \"status\"} here when amber exits\n"
          "  --chroot DIR             confine amber to DIR (device nodes made inside); every "
          "later path, flags and API alike, resolves inside DIR\n"
          "  --uid N                  run as this user id (needs --gid; capabilities dropped)\n"
          "  --gid N                  run as this group id (supplementary groups cleared)\n"
          "  --new-mount-ns           run in a new mount namespace\n"
          "  --new-pid-ns             run as pid 1 of a new pid namespace (a waiting parent "
          "forwards signals)\n"
          "  --netns PATH             join this network namespace (e.g. /var/run/netns/NAME)\n"
          "  --cgroup DIR             join this cgroup v2 directory (writes cgroup.procs)\n"
          "  --rlimit-nofile N        set RLIMIT_NOFILE (soft and hard) to N, 64..1048576\n"
          "  --rlimit-fsize BYTES     set RLIMIT_FSIZE (soft and hard): the largest file amber "
          "may write\n"
          "  -h, --help               print this help and exit\n"
          "  --version                print the version and exit\n"
          "\n"
          "Flags take their value as \"--flag value\" or \"--flag=value\".\n",
          out);
}

/* A "key=value,flag,..." list: the next item, split in place. */
static bool next_item(char **cursor, char **key, char **value)
{
    char *s = *cursor;
    if (!s)
        return false;
    char *comma = strchr(s, ',');
    if (comma) {
        *comma = '\0';
        *cursor = comma + 1;
    } else {
        *cursor = NULL;
    }
    *key = s;
    char *eq = strchr(s, '=');
    if (eq) {
        *eq = '\0';
        *value = eq + 1;
    } else {
        *value = NULL;
    }
    return true;
}

/* Parse a --drive value into the next drive slot. */
static int parse_drive(struct vm_config *cfg, const char *arg, char *err, size_t errlen)
{
    char buf[CONFIG_PATH_MAX + 128];
    struct drive_config d;
    bool has_path = false, has_id = false, ro = false, root = false, direct = false;

    if (cfg->ndrives >= CONFIG_MAX_DRIVES)
        return config_fail(err, errlen, "too many --drive (at most %d)", CONFIG_MAX_DRIVES);
    if (strlen(arg) >= sizeof(buf))
        return config_fail(err, errlen, "--drive value too long");
    memset(&d, 0, sizeof(d));
    strcpy(buf, arg);

    char *cursor = buf, *key, *value;
    while (next_item(&cursor, &key, &value)) {
        bool *flag = !strcmp(key, "ro")       ? &ro
                     : !strcmp(key, "root")   ? &root
                     : !strcmp(key, "direct") ? &direct
                                              : NULL;
        if (flag) {
            if (value)
                return config_fail(err, errlen, "--drive: '%s' takes no value", key);
            if (*flag)
                return config_fail(err, errlen, "--drive: '%s' given twice", key);
            *flag = true;
        } else if (!strcmp(key, "path") && value) {
            if (has_path)
                return config_fail(err, errlen, "--drive: path given twice");
            if (config_copy(d.path, sizeof(d.path), value))
                return config_fail(err, errlen, "--drive: path is empty or too long");
            has_path = true;
        } else if (!strcmp(key, "id") && value) {
            if (has_id)
                return config_fail(err, errlen, "--drive: id given twice");
            if (!config_id_valid(value))
                return config_fail(err, errlen, "--drive: id '%s' must match [A-Za-z0-9_-]{1,64}",
                                   value);
            strcpy(d.id, value);
            has_id = true;
        } else {
            return config_fail(err, errlen,
                               "--drive: unknown item '%s' (want path=, id=, ro, "
                               "root, direct)",
                               key);
        }
    }
    if (!has_path)
        return config_fail(err, errlen, "--drive needs path=FILE");
    if (!has_id)
        snprintf(d.id, sizeof(d.id), "drive%u", cfg->ndrives);
    d.read_only = ro;
    d.root = root;
    d.direct = direct;
    for (unsigned i = 0; i < cfg->ndrives; i++) {
        if (!strcmp(cfg->drive[i].id, d.id))
            return config_fail(err, errlen, "duplicate drive id '%s'", d.id);
        if (root && cfg->drive[i].root)
            return config_fail(err, errlen, "two root drives ('%s' and '%s')", cfg->drive[i].id,
                               d.id);
    }
    cfg->drive[cfg->ndrives++] = d;
    return 0;
}

static int parse_net(struct vm_config *cfg, const char *arg, char *err, size_t errlen)
{
    char buf[256];
    struct net_config n;
    bool has_tap = false, has_id = false;

    if (cfg->nnets >= CONFIG_MAX_NETS)
        return config_fail(err, errlen, "too many --net (at most %d)", CONFIG_MAX_NETS);
    if (strlen(arg) >= sizeof(buf))
        return config_fail(err, errlen, "--net value too long");
    memset(&n, 0, sizeof(n));
    strcpy(buf, arg);

    char *cursor = buf, *key, *value;
    while (next_item(&cursor, &key, &value)) {
        if (!value)
            return config_fail(err, errlen, "--net: '%s' needs a value", key);
        if (!strcmp(key, "tap")) {
            if (has_tap)
                return config_fail(err, errlen, "--net: tap given twice");
            if (!config_ifname_valid(value))
                return config_fail(err, errlen,
                                   "--net: bad tap name '%s' (1-15 characters, no "
                                   "'/', ':' or spaces)",
                                   value);
            strcpy(n.tap, value);
            has_tap = true;
        } else if (!strcmp(key, "mac")) {
            if (n.has_mac)
                return config_fail(err, errlen, "--net: mac given twice");
            if (config_mac_parse(value, n.mac))
                return config_fail(err, errlen,
                                   "--net: bad mac '%s' (want a unicast "
                                   "xx:xx:xx:xx:xx:xx)",
                                   value);
            n.has_mac = true;
        } else if (!strcmp(key, "id")) {
            if (has_id)
                return config_fail(err, errlen, "--net: id given twice");
            if (!config_id_valid(value))
                return config_fail(err, errlen, "--net: id '%s' must match [A-Za-z0-9_-]{1,64}",
                                   value);
            strcpy(n.id, value);
            has_id = true;
        } else {
            return config_fail(err, errlen, "--net: unknown item '%s' (want tap=, mac=, id=)", key);
        }
    }
    if (!has_tap)
        return config_fail(err, errlen, "--net needs tap=NAME");
    if (!has_id)
        snprintf(n.id, sizeof(n.id), "net%u", cfg->nnets);
    for (unsigned i = 0; i < cfg->nnets; i++) {
        if (!strcmp(cfg->net[i].id, n.id))
            return config_fail(err, errlen, "duplicate interface id '%s'", n.id);
        if (!strcmp(cfg->net[i].tap, n.tap))
            return config_fail(err, errlen, "tap '%s' used twice", n.tap);
    }
    cfg->net[cfg->nnets++] = n;
    return 0;
}

static int parse_vsock(struct vm_config *cfg, const char *arg, char *err, size_t errlen)
{
    char buf[256];
    struct vsock_config v = {.enabled = true};
    bool has_cid = false, has_uds = false;

    if (cfg->vsock.enabled)
        return config_fail(err, errlen, "only one --vsock");
    if (strlen(arg) >= sizeof(buf))
        return config_fail(err, errlen, "--vsock value too long");
    strcpy(buf, arg);

    char *cursor = buf, *key, *value;
    while (next_item(&cursor, &key, &value)) {
        uint64_t cid;
        if (!value)
            return config_fail(err, errlen, "--vsock: '%s' needs a value", key);
        if (!strcmp(key, "cid") && !has_cid) {
            if (config_parse_u64(value, UINT32_MAX - 1, &cid) || cid < 3)
                return config_fail(err, errlen, "--vsock: cid '%s' must be 3..%u", value,
                                   UINT32_MAX - 1);
            v.cid = (uint32_t)cid;
            has_cid = true;
        } else if (!strcmp(key, "uds") && !has_uds) {
            if (config_copy(v.uds_path, sizeof(v.uds_path), value))
                return config_fail(err, errlen, "--vsock: uds path is empty or longer than %zu",
                                   sizeof(v.uds_path) - 1);
            has_uds = true;
        } else {
            return config_fail(err, errlen, "--vsock: unexpected item '%s' (want cid=N,uds=PATH)",
                               key);
        }
    }
    if (!has_cid || !has_uds)
        return config_fail(err, errlen, "--vsock needs cid=N,uds=PATH");
    cfg->vsock = v;
    return 0;
}

/* Which flags were given, for the checks on how they combine. */
struct seen {
    const char *boot_flag; /* a flag that describes the VM, which --config-file also does */
    bool kernel, initrd_or_cmdline, seccomp_off, seccomp_filter, uid, gid;
};

/* Apply one option; returns 0 or -EINVAL with err set. */
static int apply_opt(struct vm_config *cfg, struct seen *seen, int opt, const char *name,
                     const char *arg, char *err, size_t errlen)
{
    uint64_t n;
    int rc;

    switch (opt) {
    case OPT_KERNEL:
    case OPT_INITRD:
    case OPT_CONFIG_FILE:
    case OPT_SECCOMP_FILTER:
    case OPT_PID_FILE:
    case OPT_EXIT_FILE:
    case OPT_CHROOT:
    case OPT_NETNS:
    case OPT_CGROUP: {
        char *dst = opt == OPT_KERNEL        ? cfg->kernel
                    : opt == OPT_INITRD      ? cfg->initrd
                    : opt == OPT_CONFIG_FILE ? cfg->config_file
                    : opt == OPT_PID_FILE    ? cfg->pid_file
                    : opt == OPT_EXIT_FILE   ? cfg->exit_file
                    : opt == OPT_CHROOT      ? cfg->chroot_dir
                    : opt == OPT_NETNS       ? cfg->netns
                    : opt == OPT_CGROUP      ? cfg->cgroup
                                             : cfg->seccomp_filter;
        if (config_copy(dst, CONFIG_PATH_MAX, arg))
            return config_fail(err, errlen, "--%s: path is empty or too long", name);
        seen->kernel |= opt == OPT_KERNEL;
        seen->initrd_or_cmdline |= opt == OPT_INITRD;
        seen->seccomp_filter |= opt == OPT_SECCOMP_FILTER;
        break;
    }
    case OPT_CMDLINE:
        if (strlen(arg) >= sizeof(cfg->cmdline))
            return config_fail(err, errlen, "--cmdline longer than %zu bytes",
                               sizeof(cfg->cmdline) - 1);
        strcpy(cfg->cmdline, arg);
        cfg->cmdline_set = true;
        seen->initrd_or_cmdline = true;
        break;
    case OPT_VCPUS:
        if (config_parse_u64(arg, CONFIG_MAX_VCPUS, &n) || n < 1)
            return config_fail(err, errlen, "--vcpus '%s': want a number 1..%d", arg,
                               CONFIG_MAX_VCPUS);
        cfg->vcpus = (unsigned)n;
        break;
    case OPT_MEM_MIB:
        if (config_parse_u64(arg, CONFIG_MAX_MEM_MIB, &n) || n < CONFIG_MIN_MEM_MIB)
            return config_fail(err, errlen, "--mem-mib '%s': want a number %d..%llu", arg,
                               CONFIG_MIN_MEM_MIB, CONFIG_MAX_MEM_MIB);
        cfg->mem_mib = n;
        break;
    case OPT_CONSOLE:
        if (!strcmp(arg, "stdio")) {
            cfg->console = CONSOLE_STDIO;
        } else if (!strcmp(arg, "none")) {
            cfg->console = CONSOLE_NONE;
        } else {
            if (config_copy(cfg->console_path, sizeof(cfg->console_path), arg))
                return config_fail(err, errlen, "--console: want stdio, none or a file path");
            cfg->console = CONSOLE_FILE;
        }
        break;
    case OPT_CONSOLE_MAX_MIB:
        if (config_parse_u64(arg, CONFIG_MAX_CONSOLE_MIB, &n) || n < 1)
            return config_fail(err, errlen, "--console-max-mib '%s': want a number 1..%llu", arg,
                               CONFIG_MAX_CONSOLE_MIB);
        cfg->console_max_mib = n;
        break;
    case OPT_ID:
        if (!config_id_valid(arg))
            return config_fail(err, errlen, "--id '%s' must match [A-Za-z0-9_-]{1,64}", arg);
        strcpy(cfg->id, arg);
        break;
    case OPT_ON_REBOOT:
        if (!strcmp(arg, "exit"))
            cfg->on_reboot = ON_REBOOT_EXIT;
        else if (!strcmp(arg, "restart"))
            cfg->on_reboot = ON_REBOOT_RESTART;
        else
            return config_fail(err, errlen, "--on-reboot '%s': want exit or restart", arg);
        break;
    case OPT_MMIO_CMDLINE:
        cfg->mmio_cmdline = true;
        break;
    case OPT_DRIVE:
        if ((rc = parse_drive(cfg, arg, err, errlen)))
            return rc;
        break;
    case OPT_NET:
        if ((rc = parse_net(cfg, arg, err, errlen)))
            return rc;
        break;
    case OPT_VSOCK:
        if ((rc = parse_vsock(cfg, arg, err, errlen)))
            return rc;
        break;
    case OPT_ENTROPY:
    case OPT_NO_ENTROPY:
        cfg->entropy = opt == OPT_ENTROPY;
        break;
    case OPT_API_SOCK:
        if (config_copy(cfg->api_sock, sizeof(cfg->api_sock), arg))
            return config_fail(err, errlen, "--api-sock: path is empty or longer than %zu",
                               sizeof(cfg->api_sock) - 1);
        break;
    case OPT_NO_API:
        cfg->no_api = true;
        break;
    case OPT_SECCOMP:
        if (!strcmp(arg, "on"))
            cfg->seccomp = true;
        else if (!strcmp(arg, "off"))
            cfg->seccomp = false;
        else
            return config_fail(err, errlen, "--seccomp '%s': want on or off", arg);
        break;
    case OPT_NO_SECCOMP:
        cfg->seccomp = false;
        break;
    case OPT_BOOT_TIMER:
        cfg->boot_timer = true;
        break;
    case OPT_UID:
    case OPT_GID:
        if (config_parse_u64(arg, UINT32_MAX - 1, &n))
            return config_fail(err, errlen, "--%s '%s': want a number 0..%u", name, arg,
                               UINT32_MAX - 1);
        *(opt == OPT_UID ? &cfg->uid : &cfg->gid) = (uint32_t)n;
        seen->uid |= opt == OPT_UID;
        seen->gid |= opt == OPT_GID;
        break;
    case OPT_NEW_MOUNT_NS:
        cfg->new_mount_ns = true;
        break;
    case OPT_NEW_PID_NS:
        cfg->new_pid_ns = true;
        break;
    case OPT_RLIMIT_NOFILE:
        if (config_parse_u64(arg, 1 << 20, &n) || n < 64)
            return config_fail(err, errlen, "--rlimit-nofile '%s': want a number 64..%d", arg,
                               1 << 20);
        cfg->rlimit_nofile = n;
        break;
    case OPT_RLIMIT_FSIZE:
        if (config_parse_u64(arg, UINT64_MAX - 1, &n) || n < 1)
            return config_fail(err, errlen, "--rlimit-fsize '%s': want a number of bytes >= 1",
                               arg);
        cfg->rlimit_fsize_bytes = n;
        break;
    }
    switch (opt) {
    case OPT_KERNEL:
    case OPT_INITRD:
    case OPT_CMDLINE:
    case OPT_VCPUS:
    case OPT_MEM_MIB:
    case OPT_DRIVE:
    case OPT_NET:
    case OPT_VSOCK:
    case OPT_ENTROPY:
        if (!seen->boot_flag)
            seen->boot_flag = name;
        break;
    }
    return 0;
}

/* How the flags combine, once all are read. */
static int check_combination(const struct vm_config *cfg, const struct seen *seen, char *err,
                             size_t errlen)
{
    if (cfg->no_api && !cfg->config_file[0])
        return config_fail(err, errlen, "--no-api is only valid with --config-file");
    if (cfg->no_api && cfg->api_sock[0])
        return config_fail(err, errlen, "--no-api conflicts with --api-sock");
    if (cfg->config_file[0] && seen->boot_flag)
        return config_fail(err, errlen,
                           "--%s conflicts with --config-file (the file describes the VM)",
                           seen->boot_flag);
    if (!cfg->kernel[0] && !cfg->api_sock[0] && !cfg->config_file[0])
        return config_fail(err, errlen, "--kernel is required (or --api-sock or --config-file)");
    if (seen->initrd_or_cmdline && !cfg->kernel[0])
        return config_fail(err, errlen, "--initrd and --cmdline need --kernel");
    if (cfg->seccomp_filter[0] && !cfg->seccomp)
        return config_fail(err, errlen, "--seccomp-filter conflicts with seccomp off");
    if (seen->uid != seen->gid)
        return config_fail(err, errlen, "--uid and --gid go together");
    if (cfg->chroot_dir[0] && cfg->chroot_dir[0] != '/')
        return config_fail(err, errlen, "--chroot wants an absolute path");
    if (cfg->on_reboot == ON_REBOOT_RESTART && (cfg->chroot_dir[0] || seen->uid || cfg->new_pid_ns))
        return config_fail(err, errlen,
                           "--on-reboot restart cannot re-execute amber inside --chroot, "
                           "--uid or --new-pid-ns; use --on-reboot exit");
    return 0;
}

int config_parse_args(struct vm_config *cfg, int argc, char **argv, char *err, size_t errlen)
{
    struct seen seen = {0};
    int opt, idx;

    if (err && errlen)
        err[0] = '\0';
    /* getopt keeps its state in libc globals: 0 makes glibc start over for each call. */
    optind = 0;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "+:h", long_opts, &idx)) != -1) {
        const char *arg = optarg;
        switch (opt) {
        case 'h':
            config_usage(stdout);
            return CONFIG_PARSE_EXIT;
        case OPT_VERSION:
            printf("amber v%s\n", AMBER_VERSION);
            return CONFIG_PARSE_EXIT;
        case ':':
            return config_fail(err, errlen, "option '%s' needs a value", argv[optind - 1]);
        case '?':
            if (strncmp(argv[optind - 1], "--", 2) != 0)
                return config_fail(err, errlen, "unknown option '%s' (see --help)",
                                   argv[optind - 1]);
            return config_fail(err, errlen, "unknown or malformed option '%s' (see --help)",
                               argv[optind - 1]);
        default:
            /* "--kernel --vcpus 2" would take "--vcpus" as a path: refuse such values. */
            if (opt != OPT_CMDLINE && arg && !strncmp(arg, "--", 2))
                return config_fail(err, errlen, "option '--%s' needs a value, got '%s'",
                                   long_opts[idx].name, arg);
            int rc = apply_opt(cfg, &seen, opt, long_opts[idx].name, arg, err, errlen);
            if (rc)
                return rc;
            break;
        }
    }
    if (optind < argc)
        return config_fail(err, errlen, "unexpected argument '%s' (see --help)", argv[optind]);
    cfg->has_ids = seen.uid && seen.gid;
    return check_combination(cfg, &seen, err, errlen);
}
