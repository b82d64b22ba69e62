/* The command line: getopt_long options, usage, and each flag checked and applied. */
#include "config/config.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    OPT_RESTORE,
    OPT_MEM_FILE,
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
    {"restore", required_argument, NULL, OPT_RESTORE},
    {"mem-file", required_argument, NULL, OPT_MEM_FILE},
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
          "  --restore PATH           restore the VM from this snapshot file (with --mem-file)\n"
          "  --mem-file PATH          the snapshot's memory file, mapped copy-on-write\n"
          "  -h, --help               print this help and exit\n"
          "  --version                print the version and exit\n"
          "\n"
          "Flags take their value as \"--flag value\" or \"--flag=value\".\n",
          out);
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
    case OPT_RESTORE:
    case OPT_MEM_FILE:
        if (config_copy(opt == OPT_RESTORE ? cfg->restore_path : cfg->restore_mem_path,
                        CONFIG_PATH_MAX, arg))
            return config_fail(err, errlen, "--%s: path is empty or too long", name);
        return 0;
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
        if ((rc = config_parse_drive(cfg, arg, err, errlen)))
            return rc;
        break;
    case OPT_NET:
        if ((rc = config_parse_net(cfg, arg, err, errlen)))
            return rc;
        break;
    case OPT_VSOCK:
        if ((rc = config_parse_vsock(cfg, arg, err, errlen)))
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
    if (!cfg->restore_path[0] != !cfg->restore_mem_path[0])
        return config_fail(err, errlen, "--restore and --mem-file go together");
    if (cfg->restore_path[0] && (seen->boot_flag || cfg->config_file[0]))
        return config_fail(err, errlen,
                           "--%s conflicts with --restore (the snapshot describes the VM)",
                           seen->boot_flag ? seen->boot_flag : "config-file");
    if (cfg->no_api && !cfg->config_file[0] && !cfg->restore_path[0])
        return config_fail(err, errlen, "--no-api is only valid with --config-file or --restore");
    if (cfg->no_api && cfg->api_sock[0])
        return config_fail(err, errlen, "--no-api conflicts with --api-sock");
    if (cfg->config_file[0] && seen->boot_flag)
        return config_fail(err, errlen,
                           "--%s conflicts with --config-file (the file describes the VM)",
                           seen->boot_flag);
    if (!cfg->kernel[0] && !cfg->api_sock[0] && !cfg->config_file[0] && !cfg->restore_path[0])
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
