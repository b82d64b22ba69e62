/* Snapshot and restore of a whole VM: gathers every section, and checks all before loading. */
#include "board/snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "board/board.h"
#include "config/json.h"
#include "devices/i8042.h"
#include "devices/serial.h"
#include "devices/vmgenid.h"
#include "devices/virtio/virtio_snap.h"
#include "vmm/clock.h"
#include "vmm/log.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"

/* The configuration as JSON, without the logger and metrics (the new process has its own). */
static char *config_text(const struct vm_config *cfg)
{
    struct json_object *o = config_json_export(cfg);
    json_object_object_del(o, "logger");
    json_object_object_del(o, "metrics");
    const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
    char *copy = s ? strdup(s) : NULL;
    json_object_put(o);
    return copy;
}

static int gather_state(struct board *b, struct snap_writer *w, char *err, size_t errlen)
{
    struct vm *vm = b->vm;
    char *cfg = config_text(vm->cfg);
    if (!cfg)
        return -ENOMEM;
    snapw_begin(w, SNAP_SEC_META, 0);
    snapw_record(w, META_CONFIG_JSON, cfg, (uint32_t)strlen(cfg));
    snapw_u64(w, META_MEM_BYTES, vm->mem.size);
    snapw_u32(w, META_NVCPUS, vm->nvcpus);
    snapw_u32(w, META_NVIRTIO, b->nvirtio);
    snapw_end(w);
    free(cfg);

    int ret = vm_state_save(vm->vm_fd, w, err, errlen);
    for (unsigned i = 0; i < vm->nvcpus && !ret; i++)
        ret = cpu_state_save(vm->kvm_fd, vm->vcpus[i].fd, i, w, err, errlen);
    if (ret)
        return ret;

    struct serial_state ss;
    struct i8042_state ks;
    serial_save(b->serial, &ss);
    i8042_save(b->i8042, &ks);
    snapw_begin(w, SNAP_SEC_LEGACY, 0);
    snapw_record(w, LEGACY_SERIAL, &ss, sizeof(ss));
    snapw_record(w, LEGACY_I8042, &ks, sizeof(ks));
    snapw_record(w, LEGACY_PM, NULL, 0);
    if (b->vmgenid) {
        struct vmgenid_state gs;
        vmgenid_save(b->vmgenid, &gs);
        snapw_record(w, LEGACY_VMGENID, &gs, sizeof(gs));
    }
    snapw_end(w);

    for (unsigned i = 0; i < b->nvirtio; i++)
        virtio_snap_save(b->virtio[i], i, w);
    return 0;
}

static int create_file(const char *path, const char *what, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        int ret = -errno;
        snprintf(err, errlen, "cannot create %s '%s': %s", what, path, strerror(errno));
        return ret;
    }
    return fd;
}

int snapshot_create(struct board *b, const struct snapshot_create_params *p,
                    struct snapshot_stats *st, char *err, size_t errlen)
{
    struct vm *vm = b->vm;
    memset(st, 0, sizeof(*st));
    uint64_t t0 = clock_now_ns();
    if (!vm->paused) {
        snprintf(err, errlen, "the VM must be paused to take a snapshot");
        return -EBUSY;
    }
    struct snap_writer w;
    snapw_init(&w);
    uint8_t *state = NULL;
    size_t state_len = 0;
    int mem_fd = -1, state_fd = -1;
    int ret = gather_state(b, &w, err, errlen);
    if (!ret && (ret = snapw_finish(&w, AMBER_VERSION, &state, &state_len)) != 0)
        snprintf(err, errlen, "cannot encode the snapshot: %s", strerror(-ret));
    snapw_free(&w);
    if (ret)
        goto out;

    mem_fd = ret = create_file(p->mem_file_path, "memory file", err, errlen);
    if (ret < 0)
        goto out;
    ret = snapshot_write_mem(&vm->mem, mem_fd, &st->mem_bytes_written);
    if (!ret && p->fsync && fsync(mem_fd) < 0)
        ret = -errno;
    if (ret) {
        snprintf(err, errlen, "cannot write memory file '%s': %s", p->mem_file_path,
                 strerror(-ret));
        goto out;
    }
    /* The state file last: a state file that exists and checks out has its memory file. */
    state_fd = ret = create_file(p->snapshot_path, "snapshot file", err, errlen);
    if (ret < 0)
        goto out;
    ret = 0;
    for (size_t off = 0; off < state_len && !ret;) {
        ssize_t n = write(state_fd, state + off, state_len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            ret = n < 0 ? -errno : -EIO;
        else
            off += (size_t)n;
    }
    if (!ret && p->fsync && fsync(state_fd) < 0)
        ret = -errno;
    if (ret) {
        snprintf(err, errlen, "cannot write snapshot file '%s': %s", p->snapshot_path,
                 strerror(-ret));
        /* A short state file must not pass for a snapshot: its size check would catch it,
         * but leave none behind. */
        if (ftruncate(state_fd, 0) < 0)
            log_warn("cannot truncate the broken snapshot file: %s", strerror(errno));
        goto out;
    }
    st->state_bytes = state_len;
    st->mem_bytes = vm->mem.size;
    st->total_ns = clock_now_ns() - t0;
    log_info("snapshot: %zu state bytes, %llu of %llu MiB of RAM written, %llu ms", state_len,
             (unsigned long long)(st->mem_bytes_written >> 20),
             (unsigned long long)(st->mem_bytes >> 20),
             (unsigned long long)(st->total_ns / 1000000));
out:
    if (mem_fd >= 0)
        close(mem_fd);
    if (state_fd >= 0)
        close(state_fd);
    free(state);
    return ret < 0 ? ret : 0;
}

int snapshot_load_config(const struct snap_reader *r, struct vm_config *cfg, uint64_t *mem_bytes,
                         char *err, size_t errlen)
{
    const struct snap_entry *meta = snapr_find(r, SNAP_SEC_META, 0);
    const void *text;
    uint32_t len, nvcpus;
    if (!meta || snapr_record(r, meta, META_CONFIG_JSON, &text, &len) ||
        snapr_u64(r, meta, META_MEM_BYTES, mem_bytes) || snapr_u32(r, meta, META_NVCPUS, &nvcpus)) {
        snprintf(err, errlen, "snapshot file: no machine description (META section)");
        return -EBADMSG;
    }
    char why[512] = "";
    if (config_json_load(cfg, text, len, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "snapshot file: configuration: %s", why);
        return -EBADMSG;
    }
    if (cfg->vcpus != nvcpus || nvcpus == 0 || nvcpus > CONFIG_MAX_VCPUS) {
        snprintf(err, errlen, "snapshot file: %u vCPUs in the header, %u in the configuration",
                 nvcpus, cfg->vcpus);
        return -EBADMSG;
    }
    for (unsigned i = 0; i < nvcpus; i++) {
        if (!snapr_find(r, SNAP_SEC_VCPU, i)) {
            snprintf(err, errlen, "snapshot file: %u vCPUs, but no state for vcpu%u", nvcpus, i);
            return -EBADMSG;
        }
    }
    if (snapr_count(r, SNAP_SEC_VCPU) != nvcpus) {
        snprintf(err, errlen, "snapshot file: %u vCPU sections for %u vCPUs",
                 snapr_count(r, SNAP_SEC_VCPU), nvcpus);
        return -EBADMSG;
    }
    if (*mem_bytes != cfg->mem_mib << 20) {
        snprintf(err, errlen, "snapshot file: %llu bytes of RAM, the configuration says %llu MiB",
                 (unsigned long long)*mem_bytes, (unsigned long long)cfg->mem_mib);
        return -EBADMSG;
    }
    return 0;
}

/*
 * The VM generation ID record: *present is false for a file from an amber without the device
 * (its guest's tables have no VGEN device, so nothing is announced to it).
 */
static int check_vmgenid(struct board *b, const struct snap_reader *r, const struct snap_entry *leg,
                         struct vmgenid_state *gs, bool *present, char *err, size_t errlen)
{
    const void *data;
    uint32_t len;
    *present = snapr_record(r, leg, LEGACY_VMGENID, &data, &len) == 0;
    if (!*present)
        return 0;
    if (len != sizeof(*gs)) {
        snprintf(err, errlen, "snapshot file: VM generation ID state of %u bytes, expected %zu",
                 len, sizeof(*gs));
        return -EBADMSG;
    }
    if (!b->vmgenid) {
        snprintf(err, errlen, "the snapshot has a VM generation ID, this VM has no such device");
        return -EINVAL;
    }
    memcpy(gs, data, sizeof(*gs));
    return vmgenid_check(b->vmgenid, gs, err, errlen);
}

static int check_all(struct board *b, const struct snap_reader *r, struct vmgenid_state *gs,
                     bool *gs_present, char *err, size_t errlen)
{
    struct vm *vm = b->vm;
    int ret = vm_state_check(r, snapr_find(r, SNAP_SEC_VM, 0), err, errlen);
    for (unsigned i = 0; i < vm->nvcpus && !ret; i++)
        ret = cpu_state_check(r, snapr_find(r, SNAP_SEC_VCPU, i), err, errlen);
    if (ret)
        return ret;
    const struct snap_entry *leg = snapr_find(r, SNAP_SEC_LEGACY, 0);
    struct serial_state ss;
    struct i8042_state ks;
    if (!leg || snapr_get(r, leg, LEGACY_SERIAL, &ss, sizeof(ss)) ||
        snapr_get(r, leg, LEGACY_I8042, &ks, sizeof(ks))) {
        snprintf(err, errlen, "snapshot file: legacy device state missing or of the wrong size");
        return -EBADMSG;
    }
    ret = check_vmgenid(b, r, leg, gs, gs_present, err, errlen);
    if (ret)
        return ret;
    if (snapr_count(r, SNAP_SEC_VIRTIO) != b->nvirtio) {
        snprintf(err, errlen, "snapshot file: %u virtio devices, the configuration makes %u",
                 snapr_count(r, SNAP_SEC_VIRTIO), b->nvirtio);
        return -EBADMSG;
    }
    for (unsigned i = 0; i < b->nvirtio && !ret; i++) {
        const struct snap_entry *s = snapr_find(r, SNAP_SEC_VIRTIO, i);
        if (!s) {
            snprintf(err, errlen, "snapshot file: no state for virtio slot %u", i);
            return -EBADMSG;
        }
        ret = virtio_snap_check(r, s, b->virtio[i], err, errlen);
    }
    if (ret)
        return ret;
    /* The device models check their fields as they load them; no vCPU runs yet, and the
     * interrupt line they report is overwritten by the irqchip state loaded next. */
    if (serial_load(b->serial, &ss) || i8042_load(b->i8042, &ks)) {
        snprintf(err, errlen, "snapshot file: serial or i8042 state out of range");
        return -EBADMSG;
    }
    return 0;
}

int snapshot_restore(struct board *b, const struct snap_reader *r, enum clock_mode mode,
                     bool *clock_native, char *err, size_t errlen)
{
    struct vm *vm = b->vm;
    *clock_native = false;
    struct vmgenid_state gs;
    bool gs_present = false;
    int ret = check_all(b, r, &gs, &gs_present, err, errlen);
    if (ret)
        return ret;
    /* Every section checked: from here on only KVM or a back-end can refuse. */
    const struct snap_entry *vms = snapr_find(r, SNAP_SEC_VM, 0);
    ret = vm_state_restore(vm->vm_fd, r, vms, err, errlen);
    for (unsigned i = 0; i < vm->nvcpus && !ret; i++)
        ret = cpu_state_restore(vm->vcpus[i].fd, r, snapr_find(r, SNAP_SEC_VCPU, i), err, errlen);
    if (ret)
        return ret;
    for (unsigned i = 0; i < b->nvirtio && !ret; i++)
        ret = virtio_snap_load(b->virtio[i], r, snapr_find(r, SNAP_SEC_VIRTIO, i), err, errlen);
    if (ret)
        return ret;
    /* The guest's TSC moves on with its clock (a guest may keep time by the TSC). */
    if (mode != KVMCLOCK_KEEP) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
        uint64_t saved = vm_state_saved_realtime(r, vms);
        uint64_t delta = now > saved ? now - saved : 0;
        for (unsigned i = 0; i < vm->nvcpus && !ret; i++)
            ret = cpu_state_advance_tsc(vm->vcpus[i].fd, r, snapr_find(r, SNAP_SEC_VCPU, i), delta,
                                        err, errlen);
    }
    if (ret)
        return ret;
    /* kvmclock last, as close to the first guest instruction as it can be. */
    ret = vm_state_restore_clock(vm->vm_fd, r, vms, mode, clock_native, err, errlen);
    /* Tell the guest's watchdogs that the gap was a pause (as after resume). A guest without
     * kvmclock answers EINVAL: harmless. */
    for (unsigned i = 0; i < vm->nvcpus && !ret; i++)
        ioctl(vm->vcpus[i].fd, KVM_KVMCLOCK_CTRL, 0);
    /* A restored guest is a new machine: a new generation ID, announced after the irqchips
     * were loaded (they would drop the edge) and before any vCPU runs. */
    if (!ret && gs_present && (ret = vmgenid_restore(b->vmgenid, &gs)) != 0)
        snprintf(err, errlen, "cannot renew the VM generation ID: %s", strerror(-ret));
    else if (!ret && !gs_present)
        log_info("restore: the snapshot has no VM generation ID (an older amber): the guest's "
                 "RNG is not told about the restore");
    return ret;
}
