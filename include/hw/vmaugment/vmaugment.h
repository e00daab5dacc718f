/*
 * vmaugment virtio device: lets guest software ask the host to load,
 * upload and call sandboxed extension modules.
 *
 * The device answers VERSION, PING and SUBSCRIBE itself and relays every
 * other request to the vmaugment host helper over a chardev.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef QEMU_VMAUGMENT_H
#define QEMU_VMAUGMENT_H

#include "hw/virtio/virtio.h"
#include "chardev/char-fe.h"
#include "qemu/queue.h"
#include "qemu/timer.h"
#include "system/runstate.h"
#include "standard-headers/linux/virtio_vmaugment.h"

#define TYPE_VMAUGMENT "vmaugment-device"
OBJECT_DECLARE_SIMPLE_TYPE(VirtIOVMAugment, VMAUGMENT)

/* Stop taking guest requests while this much is queued for the helper. */
#define VMAUGMENT_OUT_HIGH_WATER    (4 * 1024 * 1024)
/* Events kept for the guest while it has no event buffer posted. */
#define VMAUGMENT_EVENTS_PENDING    64

typedef struct VMAugmentConf {
    CharBackend chr;
    char *store;
    uint32_t request_timeout_ms;
} VMAugmentConf;

/* A guest request relayed to the helper and not yet answered. */
typedef struct VMAugmentRequest {
    VirtQueueElement *elem;
    uint64_t tag;
    uint64_t id;
    uint16_t opcode;
    int64_t deadline_ns;
    QTAILQ_ENTRY(VMAugmentRequest) next;
} VMAugmentRequest;

typedef struct VMAugmentEvent {
    uint32_t type;
    uint32_t len;
    QSIMPLEQ_ENTRY(VMAugmentEvent) next;
    uint8_t data[];
} VMAugmentEvent;

struct VirtIOVMAugment {
    VirtIODevice parent_obj;

    VMAugmentConf conf;
    VirtQueue *req_vq;
    VirtQueue *event_vq;
    VMChangeStateEntry *vmstate_change;
    QEMUBH *resume_bh;
    bool vm_running;

    /* Guest request being validated; large enough for the biggest one. */
    uint8_t *req_buf;

    /* The link to the host helper. */
    bool helper_open;           /* socket connected */
    bool helper_ready;          /* and the helper's HELLO arrived */
    GByteArray *out;            /* bytes queued for the helper */
    size_t out_done;            /* bytes of @out already written */
    guint out_watch;
    uint8_t *in_buf;            /* message being received */
    size_t in_len;

    QTAILQ_HEAD(, VMAugmentRequest) inflight;
    uint32_t n_inflight;
    uint64_t next_tag;
    QEMUTimer *timeout_timer;
    /*
     * Requests to fail with VMAUG_S_INTERRUPTED once the VM runs: those
     * the helper lost while the VM was stopped, and those that arrived
     * with an incoming migration.
     */
    QTAILQ_HEAD(, VMAugmentRequest) interrupted;

    uint32_t event_mask;
    uint64_t event_seq;
    bool event_lost;
    QSIMPLEQ_HEAD(, VMAugmentEvent) events;
    uint32_t n_events;
};

/*
 * Queue an event for the guest.  Dropped, and flagged as lost, when the
 * guest did not subscribe to @type or too many events are pending.
 */
void vmaugment_post_event(VirtIOVMAugment *s, uint32_t type,
                          const void *data, uint32_t len);

#endif
