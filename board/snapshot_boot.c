/* Booting from a snapshot: read and check the files, apply overrides, rebuild and start. */
#include "board/snapshot_boot.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "devices/virtio/virtio.h"
#include "vmm/clock.h"
#include "board/devices.h"
#include "vmm/log.h"
#include "vmm/pause.h"
#include "board/snapshot.h"
#include "vmm/vm.h"

static int apply_overrides(struct vm_config *cfg, const struct api_snapshot_load *p, char *err,
                           size_t errlen)
{
    for (unsigned i = 0; i < p->nnet_overrides; i++) {
        unsigned j = 0;
        while (j < cfg->nnets && strcmp(cfg->net[j].id, p->net_overrides[i].iface_id))
            j++;
        if (j == cfg->nnets) {
            snprintf(err, errlen, "network_overrides: the snapshot has no interface '%s'",
                     p->net_overrides[i].iface_id);
            return -EINVAL;
        }
        snprintf(cfg->net[j].tap, sizeof(cfg->net[j].tap), "%s", p->net_overrides[i].host_dev_name);
    }
    if (p->vsock_uds_path[0]) {
        if (!cfg->vsock.enabled) {
            snprintf(err, errlen, "vsock_override: the snapshot has no vsock device");
            return -EINVAL;
        }
        snprintf(cfg->vsock.uds_path, sizeof(cfg->vsock.uds_path), "%s", p->vsock_uds_path);
    }
    if (p->vsock_guest_cid) {
        if (!cfg->vsock.enabled) {
            snprintf(err, errlen, "vsock_override: the snapshot has no vsock device");
            return -EINVAL;
        }
        /* The guest reads the new CID when it handles the transport reset sent after restore;
         * until then the device also takes packets from the old one (vsock_mux_tx). */
        if (cfg->vsock.cid != p->vsock_guest_cid)
            cfg->vsock.prev_cid = cfg->vsock.cid;
        cfg->vsock.cid = p->vsock_guest_cid;
    }
    for (unsigned i = 0; i < p->ndrive_overrides; i++) {
        unsigned j = 0;
        while (j < cfg->ndrives && strcmp(cfg->drive[j].id, p->drive_overrides[i].drive_id))
            j++;
        if (j == cfg->ndrives) {
            snprintf(err, errlen, "drive_overrides: the snapshot has no drive '%s'",
                     p->drive_overrides[i].drive_id);
            return -EINVAL;
        }
        snprintf(cfg->drive[j].path, sizeof(cfg->drive[j].path), "%s",
                 p->drive_overrides[i].path_on_host);
    }
    return 0;
}

/* Park the vCPUs before they first run: they check in at their first checkpoint. */
static void start_paused(struct vm *vm)
{
    pthread_mutex_lock(&vm->barrier.lock);
    vm->barrier.requested = true;
    pthread_mutex_unlock(&vm->barrier.lock);
}

enum clock_mode snapshot_clock_mode(bool clock_realtime)
{
    if (!clock_realtime)
        return KVMCLOCK_KEEP;
    /* Test switch: take amber's own path even where KVM offers KVM_CLOCK_REALTIME. */
    const char *sw = getenv("AMBER_SNAPSHOT_CLOCK_SW");
    return sw && sw[0] == '1' ? KVMCLOCK_MOVE_SW : KVMCLOCK_MOVE;
}

int snapshot_boot(struct board *b, struct vm *vm, struct vm_config *cfg, struct loop *loop,
                  int vsock_fd, const struct api_snapshot_load *p, char *err, size_t errlen)
{
    uint64_t t0 = clock_now_ns();
    uint64_t step_ns[5] = {0}; /* read and check, VM and memory, devices, state, vCPUs */
    struct snapshot_file f;
    /* A failed restore leaves the process as fresh as it was: cfg goes back to this copy. */
    struct vm_config *saved_cfg = malloc(sizeof(*saved_cfg));
    int ret = saved_cfg ? snapshot_file_read(&f, p->snapshot_path, err, errlen) : -ENOMEM;
    if (ret) {
        if (vsock_fd >= 0)
            close(vsock_fd);
        free(saved_cfg);
        return ret;
    }
    *saved_cfg = *cfg;
    uint64_t mem_bytes = 0;
    int mem_fd = -1;
    ret = snapshot_load_config(&f.r, cfg, &mem_bytes, err, errlen);
    if (!ret)
        ret = apply_overrides(cfg, p, err, errlen);
    /* The load request decides, not the saved VM (as in Firecracker). */
    cfg->track_dirty_pages = p->track_dirty_pages;
    if (!ret) {
        mem_fd = open(p->mem_file_path, O_RDONLY | O_CLOEXEC);
        if (mem_fd < 0) {
            ret = -errno;
            snprintf(err, errlen, "cannot open memory file '%s': %s", p->mem_file_path,
                     strerror(errno));
        }
    }
    if (!ret)
        ret = snapshot_check_mem_file(mem_fd, mem_bytes, err, errlen);
    if (ret) {
        if (vsock_fd >= 0)
            close(vsock_fd);
        goto out;
    }
    step_ns[0] = clock_now_ns();
    ret = vm_create_restored(vm, cfg, loop, mem_fd, err, errlen);
    step_ns[1] = clock_now_ns();
    if (ret) {
        if (vsock_fd >= 0)
            close(vsock_fd);
        goto out;
    }
    ret = devices_create(b, vm, vsock_fd, err, errlen); /* takes vsock_fd */
    step_ns[2] = clock_now_ns();
    if (ret) {
        vm_destroy(vm);
        goto out;
    }
    bool native = false;
    ret = snapshot_restore(b, &f.r, snapshot_clock_mode(p->clock_realtime), &native, err, errlen);
    step_ns[3] = clock_now_ns();
    if (!ret && !p->resume_vm)
        start_paused(vm);
    if (!ret)
        ret = vm_start(vm, err, errlen);
    step_ns[4] = clock_now_ns();
    if (ret) {
        vm_destroy(vm);
        goto out;
    }
    if (!p->resume_vm) {
        /* The board's own quiesce hook: nothing is in flight before the first instruction. */
        vm->hooks->quiesce(vm->hooks_opaque, PAUSE_TIMEOUT_MS);
        vm->paused = true;
    }
    log_info("restore: %u vCPUs, %llu MiB from '%s' in %llu us (clock: %s), %s", vm->nvcpus,
             (unsigned long long)(mem_bytes >> 20), p->snapshot_path,
             (unsigned long long)((clock_now_ns() - t0) / 1000),
             !p->clock_realtime ? "kept"
             : native           ? "KVM_CLOCK_REALTIME"
                                : "moved on by amber",
             p->resume_vm ? "running" : "paused");
    /* Where the time went, for bench/restore_trace.py (docs/snapshot.md, Measured). */
    log_info("restore steps: read and check %llu us, VM and memory map %llu us, devices %llu us, "
             "vCPU and device state %llu us, vCPUs started %llu us",
             (unsigned long long)((step_ns[0] - t0) / 1000),
             (unsigned long long)((step_ns[1] - step_ns[0]) / 1000),
             (unsigned long long)((step_ns[2] - step_ns[1]) / 1000),
             (unsigned long long)((step_ns[3] - step_ns[2]) / 1000),
             (unsigned long long)((step_ns[4] - step_ns[3]) / 1000));
out:
    if (mem_fd >= 0)
        close(mem_fd); /* the mapping keeps the file */
    snapshot_file_free(&f);
    if (ret)
        *cfg = *saved_cfg;
    free(saved_cfg);
    return ret;
}
