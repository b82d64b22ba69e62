/* amber's entry point: process hygiene, configuration, the event loop and the exit line. */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "vmm/log.h"
#include "vmm/loop.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"
#include "board/process.h"

/* Exit statuses: 0 guest power-off/reboot/signal, 1 VMM failure, 2 bad input. */
#define EXIT_BAD_INPUT 2

/* Enough for 1024 vsock connections, 64 API clients and the devices, with room to spare. */
#define NOFILE_WANTED 4096

/* Reopen any closed fd 0-2 on /dev/null so that /dev/kvm can never become "stdin". */
static void sanitize_std_fds(void)
{
    for (int fd = 0; fd < 3; fd++) {
        if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
            continue;
        int nfd = open("/dev/null", O_RDWR);
        if (nfd >= 0 && nfd != fd) {
            dup2(nfd, fd);
            close(nfd);
        }
    }
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    rlim_t want = NOFILE_WANTED;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want)
        want = rl.rlim_max;
    if (rl.rlim_cur < want) {
        rl.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            log_warn("cannot raise RLIMIT_NOFILE to %llu: %s", (unsigned long long)want,
                     strerror(errno));
    }
}

/*
 * Keep the heap small for the life of a sandbox. Fixed thresholds stop glibc from raising the
 * mmap threshold after the kernel image buffer is freed, so large device structures (mostly
 * untouched request slots) and file buffers stay in their own mappings: untouched pages are
 * never resident, and freed ones go back at once. One arena: vCPU threads do not allocate.
 */
static void tune_malloc(void)
{
    mallopt(M_MMAP_THRESHOLD, 64 * 1024);
    mallopt(M_TRIM_THRESHOLD, 128 * 1024);
    mallopt(M_ARENA_MAX, 1);
}

int main(int argc, char **argv)
{
    tune_malloc();
    sanitize_std_fds();
    signal(SIGPIPE, SIG_IGN);

    static struct vm_config cfg;
    char err[1024] = "";
    config_defaults(&cfg);
    int ret = config_parse_args(&cfg, argc, argv, err, sizeof(err));
    if (ret == CONFIG_PARSE_EXIT)
        return 0;
    if (ret < 0) {
        fprintf(stderr, "amber: %s\n", err);
        return EXIT_BAD_INPUT;
    }
    log_set_id(cfg.id);
    raise_nofile();

    return vmm_main(&cfg, argv);
}
