/* libFuzzer target: the input is a snapshot state file; open it and check every section. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "devices/virtio/virtio_snap.h"
#include "vmm/log.h"
#include "vmm/mem.h"
#include "vmm/snapshot_fmt.h"
#include "vmm/x86/cpu_state.h"
#include "vmm/x86/vm_state.h"

/*
 * What restore does with an untrusted file before anything reaches KVM: snapr_open (framing,
 * bounds, checksums), then the per-section checks against a small guest (1 MiB of RAM and an
 * rng-shaped virtio device with one rate limiter, whose saved levels are checked too). Every
 * record of every section is also read out, so ASan sees any read past the buffer. The
 * checksums make random mutations fail early; the seed corpus holds valid files, and the
 * fuzzer's CMP tracing gets it past the CRCs.
 */

static void noop_notify(struct virtio_dev *d, unsigned q)
{
    (void)d;
    (void)q;
}

/* One limiter as a configuration would set it up (rl_snap_check compares against it): 1 MiB
 * per 100 ms with a 4 KiB burst, 100 ops per second. */
static struct rate_limiter limiter;

static unsigned fuzz_rate_limiters(const struct virtio_dev *d, struct rate_limiter **rl)
{
    (void)d;
    rl[0] = &limiter;
    return 1;
}

static const struct virtio_dev_ops ops = {.name = "fuzz",
                                          .device_id = 4,
                                          .num_queues = 1,
                                          .queue_max = 256,
                                          .queue_notify = noop_notify,
                                          .rate_limiters = fuzz_rate_limiters};

static struct guest_mem mem;
static struct virtio_dev dev;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!mem.map) {
        log_set_level(LOG_ERROR);
        if (mem_init(&mem, 1 << 20))
            abort();
        dev.ops = &ops;
        dev.mem = &mem;
        dev.host_features = (1ULL << 32) | (1ULL << 28) | (1ULL << 29);
        const struct rl_config cfg = {
            .bandwidth = {.size = 1 << 20, .one_time_burst = 4096, .refill_time_ms = 100},
            .ops = {.size = 100, .refill_time_ms = 1000}};
        rl_set(&limiter, &cfg, ~0u, 0);
    }
    /* A private copy of exactly size bytes: reads past the end are caught. */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    struct snap_reader r;
    char err[256];
    if (snapr_open(&r, buf, size, err, sizeof(err)) == 0) {
        volatile uint8_t sink = 0;
        for (unsigned i = 0; i < r.n; i++) {
            const struct snap_entry *s = &r.table[i];
            for (uint32_t tag = 0; tag < 16; tag++) {
                const void *d;
                uint32_t len;
                if (snapr_record(&r, s, tag, &d, &len) == 0 && len)
                    sink ^= ((const uint8_t *)d)[len - 1];
            }
            if (s->type == SNAP_SEC_VCPU)
                cpu_state_check(&r, s, err, sizeof(err));
            else if (s->type == SNAP_SEC_VM)
                vm_state_check(&r, s, err, sizeof(err));
            else if (s->type == SNAP_SEC_VIRTIO)
                virtio_snap_check(&r, s, &dev, err, sizeof(err));
        }
        (void)sink;
    }
    free(buf);
    return 0;
}
