/* The VM configuration: what the flags, --config-file and the API fill in before boot. */
#ifndef AMBER_VMM_CONFIG_H
#define AMBER_VMM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONFIG_MAX_VCPUS   32
#define CONFIG_MAX_DRIVES  16
#define CONFIG_MAX_NETS    8
#define CONFIG_ID_MAX      64
#define CONFIG_PATH_MAX    4096
#define CONFIG_CMDLINE_MAX 4096

enum console_mode { CONSOLE_STDIO, CONSOLE_NONE, CONSOLE_FILE };
enum on_reboot { ON_REBOOT_EXIT, ON_REBOOT_RESTART };

struct drive_config {
    char id[CONFIG_ID_MAX + 1];
    char path[CONFIG_PATH_MAX];
    bool read_only;
    bool root;
    bool direct; /* O_DIRECT, falling back to page cache where refused */
};

struct net_config {
    char id[CONFIG_ID_MAX + 1];
    char tap[16]; /* IFNAMSIZ */
    uint8_t mac[6];
    bool has_mac;
};

struct vsock_config {
    bool enabled;
    uint32_t cid; /* >= 3 */
    char uds_path[108]; /* sun_path */
};

struct vm_config {
    char id[CONFIG_ID_MAX + 1];
    char kernel[CONFIG_PATH_MAX];
    char initrd[CONFIG_PATH_MAX]; /* "" = none */
    char cmdline[CONFIG_CMDLINE_MAX];
    bool cmdline_set;
    unsigned vcpus;
    uint64_t mem_mib;
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

    /* API and process options. */
    char api_sock[108];
    char config_file[CONFIG_PATH_MAX];
    bool no_api;
    bool seccomp; /* default on */
    char seccomp_filter[CONFIG_PATH_MAX];
    bool boot_timer;
};

/* Fill cfg with defaults: 1 vCPU, 256 MiB, console on stdio, seccomp on, no devices. */
void config_defaults(struct vm_config *cfg);

#endif
