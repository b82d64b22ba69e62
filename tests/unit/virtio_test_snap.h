/* Test helper: one virtio device's snapshot section, saved as a whole snapshot file and opened. */
#ifndef AMBER_TESTS_UNIT_VIRTIO_TEST_SNAP_H
#define AMBER_TESTS_UNIT_VIRTIO_TEST_SNAP_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "devices/virtio/virtio_snap.h"

/* Finishes w as a snapshot file and opens r over it; the caller frees the returned buffer after
 * r's last use. Fails the test if either step fails. */
static inline uint8_t *virtio_test_snap_open(struct snap_writer *w, struct snap_reader *r)
{
    uint8_t *buf;
    size_t len;
    assert_int_equal(snapw_finish(w, "x", &buf, &len), 0);
    snapw_free(w);
    char err[256];
    assert_int_equal(snapr_open(r, buf, len, err, sizeof(err)), 0);
    return buf;
}

/* Saves d as instance 0 into a snapshot file and opens r over it, as virtio_test_snap_open. */
static inline uint8_t *virtio_test_snap(struct virtio_dev *d, struct snap_reader *r)
{
    struct snap_writer w;
    snapw_init(&w);
    virtio_snap_save(d, 0, &w);
    return virtio_test_snap_open(&w, r);
}

#endif
