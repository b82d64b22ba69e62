/* The VM configuration: what the flags, --config-file and the API fill in before boot. */
#ifndef AMBER_CONFIG_CONFIG_H
#define AMBER_CONFIG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CONFIG_MAX_VCPUS   32
#define CONFIG_MAX_DRIVES  16
#define CONFIG_MAX_NETS    8
#define CONFIG_ID_MAX      64
#define CONFIG_PATH_MAX    4096
#define CONFIG_CMDLINE_MAX 4096

#define AMBER_VERSION "1.0.0"

#define CONFIG_MIN_MEM_MIB         16
#define CONFIG_MAX_MEM_MIB         (1024ULL * 1024) /* 1 TiB */
#define CONFIG_MAX_CONSOLE_MIB     (1024ULL * 1024)
#define CONFIG_DEFAULT_CONSOLE_MIB 64

/* config_parse_args() printed --help or --version: exit 0 without starting. */
#define CONFIG_PARSE_EXIT 1

enum console_mode { CONSOLE_STDIO, CONSOLE_NONE, CONSOLE_FILE };

/* Bounds on a token bucket's fields (Firecracker's TokenBucket; docs/rate-limiter.md). */
#define CONFIG_RL_SIZE_MAX   (1ULL << 40) /* tokens: 1 TiB of bytes, or 2^40 operations */
#define CONFIG_RL_REFILL_MAX 3600000ULL   /* refill_time: one hour, in ms */

/*
 * One token bucket of a rate limiter: size tokens refill evenly over refill_time_ms, and
 * one_time_burst extra tokens are there once at the start. size or refill_time_ms 0: no limit.
 */
struct tb_config {
    uint64_t size;
    uint64_t one_time_burst;
    uint64_t refill_time_ms;
};

/* A Firecracker RateLimiter: bytes (bandwidth) and operations (ops), each bucket optional. */
struct rl_config {
    struct tb_config bandwidth;
    struct tb_config ops;
};

/* Which buckets a rate_limiter object named (RL_SET_*): a PATCH changes only these. */
#define RL_SET_BANDWIDTH 1u
#define RL_SET_OPS       2u
enum on_reboot { ON_REBOOT_EXIT, ON_REBOOT_RESTART };

struct drive_config {
    char id[CONFIG_ID_MAX + 1];
    char path[CONFIG_PATH_MAX];
    bool read_only;
    bool root;
    bool direct; /* O_DIRECT, falling back to page cache where refused */
    /* From the API / --config-file (Firecracker's Drive fields). */
    char partuuid[CONFIG_ID_MAX + 1]; /* "" = none; root=PARTUUID=... when root */
    bool cache_writeback;             /* cache_type "Writeback" (honour flush); else "Unsafe" */
    bool io_async;                    /* io_engine "Async"; else "Sync" */
    struct rl_config rl;              /* rate_limiter; zero = none */
};

struct net_config {
    char id[CONFIG_ID_MAX + 1];
    char tap[16]; /* IFNAMSIZ */
    uint8_t mac[6];
    bool has_mac;
    struct rl_config rx_rl, tx_rl; /* rx_rate_limiter, tx_rate_limiter; zero = none */
};

struct vsock_config {
    bool enabled;
    uint32_t cid;                     /* >= 3 */
    uint32_t prev_cid;                /* restored with a new cid: the saved one (else 0) */
    char uds_path[108];               /* sun_path */
    char vsock_id[CONFIG_ID_MAX + 1]; /* accepted and echoed; "" = none */
};

struct vm_config {
    char id[CONFIG_ID_MAX + 1];
    char kernel[CONFIG_PATH_MAX];
    char initrd[CONFIG_PATH_MAX]; /* "" = none */
    char cmdline[CONFIG_CMDLINE_MAX];
    bool cmdline_set;
    unsigned vcpus;
    uint64_t mem_mib;
    bool track_dirty_pages; /* KVM dirty log on guest RAM: makes Diff snapshots possible */
    enum console_mode console;
    char console_path[CONFIG_PATH_MAX];
    uint64_t console_max_mib;
    enum on_reboot on_reboot;
    bool mmio_cmdline; /* also add virtio_mmio.device= entries */

    struct drive_config drive[CONFIG_MAX_DRIVES];
    unsigned ndrives;
    struct net_config net[CONFIG_MAX_NETS];
    unsigned nnets;
    struct vsock_config vsock;
    bool entropy;
    struct rl_config entropy_rl; /* PUT /entropy's rate_limiter; zero = none */

    /* PUT /logger and PUT /metrics (or the config file's "logger"/"metrics"). */
    char log_path[CONFIG_PATH_MAX]; /* "" = none */
    char log_level[8];              /* "Error".."Off" as given; "" = default */
    bool log_show_level;
    bool log_show_origin;
    char metrics_path[CONFIG_PATH_MAX]; /* "" = none */
    bool metrics_emit_id;

    /* API and process options. */
    char api_sock[108];
    char config_file[CONFIG_PATH_MAX];
    bool no_api;
    bool seccomp; /* default on */
    char seccomp_filter[CONFIG_PATH_MAX];
    bool boot_timer;
    char pid_file[CONFIG_PATH_MAX];  /* written and flock'ed while amber lives; "" = none */
    char exit_file[CONFIG_PATH_MAX]; /* {"reason","status"} written at exit; "" = none */

    /* Confinement (vmm/jail.c), applied at start before any VM file is opened. */
    char chroot_dir[CONFIG_PATH_MAX]; /* "" = none; later paths resolve inside it */
    bool has_ids;                     /* --uid and --gid (always given together) */
    uint32_t uid, gid;
    bool new_mount_ns;
    bool new_pid_ns;
    char netns[CONFIG_PATH_MAX];  /* network namespace to join (setns); "" = none */
    char cgroup[CONFIG_PATH_MAX]; /* cgroup v2 directory to join; "" = none */
    uint64_t rlimit_nofile;       /* 0 = leave as is */
    uint64_t rlimit_fsize_bytes;  /* 0 = leave as is */
    /* --restore / --mem-file (board/snapshot.h): boot from a snapshot instead. */
    char restore_path[CONFIG_PATH_MAX];
    char restore_mem_path[CONFIG_PATH_MAX];
};

/* Fill cfg with defaults: 1 vCPU, 256 MiB, console on stdio, seccomp on, no devices. */
void config_defaults(struct vm_config *cfg);

/*
 * Parse the command line (argv[0] is the program name) into cfg, which the caller filled with
 * config_defaults(). Both "--flag value" and "--flag=value" work. Returns 0; CONFIG_PARSE_EXIT
 * after printing --help or --version to stdout; or -EINVAL with a one-line reason in err (the
 * caller prints it and exits 2). Checks the flags' syntax and how they combine, but touches no
 * files: call config_validate() before booting. Not thread-safe (getopt state).
 */
int config_parse_args(struct vm_config *cfg, int argc, char **argv, char *err, size_t errlen);

/*
 * Check that cfg can boot now: a kernel is set, the numbers are in range, drive ids are unique
 * with at most one root, and the kernel, initrd, drive and seccomp filter files exist and are
 * readable (drives also writable unless read-only). Used after the command line and by the
 * API at InstanceStart. Returns 0, or a negative errno with a one-line reason in err.
 */
int config_validate(const struct vm_config *cfg, char *err, size_t errlen);

/* Print --help: one line per flag. */
void config_usage(FILE *out);

/* Format a one-line error into err (control characters become '?': messages quote user
 * input) and return -EINVAL. */
__attribute__((format(printf, 3, 4))) int config_fail(char *err, size_t errlen, const char *fmt,
                                                      ...);

/* Parse a decimal number 0..max with no sign, space or suffix. Returns 0, -EINVAL for bad
 * syntax or -ERANGE above max; *out is written only on success. */
int config_parse_u64(const char *s, uint64_t max, uint64_t *out);

/* Copy a non-empty string that fits dst with its NUL. Returns 0 or -EINVAL (dst untouched). */
int config_copy(char *dst, size_t dstlen, const char *src);

/* Parse one --drive / --net / --vsock value ("key=value,flag,...") into the next free slot of
 * cfg (the only slot for --vsock). Returns 0, or -EINVAL with one message in err (bad key,
 * value, duplicate id, too many devices); cfg is unchanged on failure. */
int config_parse_drive(struct vm_config *cfg, const char *arg, char *err, size_t errlen);
int config_parse_net(struct vm_config *cfg, const char *arg, char *err, size_t errlen);
int config_parse_vsock(struct vm_config *cfg, const char *arg, char *err, size_t errlen);

/* True if name can be a TAP interface name: 1..15 bytes, no '/', ':', space or control byte. */
bool config_ifname_valid(const char *name);

/* True if id matches [A-Za-z0-9_-]{1,64} (sandbox, drive and interface ids). */
bool config_id_valid(const char *id);

/*
 * Parse "xx:xx:xx:xx:xx:xx" (hex, either case) into mac. Returns 0, or -EINVAL for bad syntax
 * or a multicast or all-zero address.
 */
int config_mac_parse(const char *s, uint8_t mac[6]);

#endif
