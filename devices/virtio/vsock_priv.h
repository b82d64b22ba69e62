/* virtio-vsock internals shared by vsock.c (the device) and vsock_host.c (its host sockets). */
#ifndef AMBER_DEVICES_VIRTIO_VSOCK_PRIV_H
#define AMBER_DEVICES_VIRTIO_VSOCK_PRIV_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/un.h>

#include "devices/virtio/vsock.h"
#include "devices/virtio/vsock_mux.h"
#include "vmm/clock.h"

#define VSOCK_QUEUE_SIZE           256
#define VSOCK_EVENT_RESET          0    /* TRANSPORT_RESET event id (virtio 1.2, 5.10.6) */
#define VSOCK_HANDSHAKE_TIMEOUT_MS 5000 /* a client must send its CONNECT line within this */
#define VSOCK_MAX_HANDSHAKES       64
#define VSOCK_ACCEPT_BATCH         32
/* After a restore, the longest the rx queue waits for the driver to handle the transport reset. */
#define VSOCK_RESET_ACK_MAX_MS 3000

enum { VSOCK_RXQ, VSOCK_TXQ, VSOCK_EVQ, VSOCK_NUM_QUEUES };

struct vsock_dev;

/*
 * What the host side (vsock_host.c) asks of the device side (vsock.c), which fills these in at
 * create: vsock.c calls vsock_host.c's functions, and vsock_host.c reaches the device only
 * through these, so the calls between the two files point one way. Each runs with d->lock held
 * on the loop thread.
 */
struct vsock_dev_ops {
    /* Hand the guest every packet the engine has while rx buffers last. */
    void (*process_rx)(struct vsock_dev *dev);
    /* Finish a reset the driver started on a vCPU thread (close every host end). Every loop
     * entry point calls this first. Returns true if it tore the connections down just now. */
    bool (*finish_reset)(struct vsock_dev *dev);
    /* Re-arm the timer for the next engine or handshake deadline (disarmed while quiesced). */
    void (*arm_timer)(struct vsock_dev *dev);
};

/* A host client that has connected but not yet sent its CONNECT line. */
struct vsock_client {
    struct vsock_dev *dev;
    int fd;
    bool watched;
    size_t len;
    char line[VSOCK_CONNECT_MAX];
    uint64_t deadline_ms;
    struct vsock_client *prev, *next;
};

struct vsock_dev {
    struct virtio_dev *vdev;
    const struct vsock_dev_ops *ops;
    struct vsock_mux mux;
    struct loop *loop;
    uint64_t guest_cid;
    char uds_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    int listen_fd;
    bool listen_watched;
    int timer_fd;
    bool quiesced;
    uint64_t quiesced_at_ms;
    bool reset_pending; /* the driver reset the device (vCPU thread); the loop finishes it */
    struct vsock_client *clients;
    unsigned nclients;
    bool rx_held; /* rx_chain was popped but not yet filled */
    /* After a restore, nothing goes to the guest's rx queue (a host connection's request
     * waits) until the driver has handled the transport reset: it refills the event buffer,
     * moving the event queue's avail index past reset_avail_idx. Linux resets every connected
     * socket when it handles the event, so a connection it accepted before would be reset
     * too. reset_ack_deadline_ms bounds the wait for a driver that never refills. */
    bool reset_unacked;
    uint16_t reset_avail_idx;
    uint64_t reset_sent_ms, reset_ack_deadline_ms;
    struct virtq_chain rx_chain, tx_chain;
    uint8_t pkt[VSOCK_HDR_SIZE + VSOCK_MAX_PKT_BYTES];
};

/* ---- vsock_host.c: Unix sockets, called by vsock.c ---- */

/* The engine's host I/O: AF_UNIX sockets "<uds_path>_<port>", watched on the loop. */
extern const struct vsock_io vsock_unix_io;
/* Loop callback for the listening socket: accept clients into the CONNECT handshake. */
void vsock_listen_event(void *opaque, uint32_t events);
/* Close handshake clients whose deadline passed (at now). */
void vsock_clients_expire(struct vsock_dev *dev, uint64_t now);
/* The earliest handshake deadline, or 0 if no client is in a handshake. */
uint64_t vsock_clients_next_deadline(const struct vsock_dev *dev);
/* Stop watching every host fd (listener, handshakes, connections): nothing is read, written or
 * dropped until vsock_host_resume. */
void vsock_host_quiesce(struct vsock_dev *dev);
/* Watch them again, moving handshake deadlines paused_ms later. */
void vsock_host_resume(struct vsock_dev *dev, uint64_t paused_ms);
/* Close every handshake client and the listener (device teardown). */
void vsock_host_close(struct vsock_dev *dev);

#endif
