/*
 * vmaugment device: events for the guest
 *
 * Events come from the device itself, the lifecycle and the host helper;
 * they wait here, bounded, until the guest posts an event buffer, and
 * are written only while the VM runs.  The guest's buffers are checked
 * before anything is written to them (a wrong one is a ring-protocol
 * violation).  docs/protocol.rst ("Events") is normative.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/iov.h"
#include "hw/vmaugment/vmaugment.h"
#include "trace.h"

void vmaugment_post_event(VirtIOVMAugment *s, uint32_t type,
                          const void *data, uint32_t len)
{
    VMAugmentEvent *ev;

    assert(len <= VMAUG_MAX_EVENT_PAYLOAD);
    if (type == 0 || type > VMAUG_EVENT_MAX ||
        !(s->event_mask & VMAUG_EVENT_MASK(type))) {
        return;
    }
    if (s->n_events >= VMAUGMENT_EVENTS_PENDING) {
        trace_vmaugment_event_lost(s, type);
        s->event_lost = true;
        return;
    }
    ev = g_malloc(sizeof(*ev) + len);
    ev->type = type;
    ev->len = len;
    if (len) {
        memcpy(ev->data, data, len);
    }
    QSIMPLEQ_INSERT_TAIL(&s->events, ev, next);
    s->n_events++;
    vmaugment_events_flush(s);
}

void vmaugment_events_flush(VirtIOVMAugment *s)
{
    VirtIODevice *vdev = VIRTIO_DEVICE(s);
    VMAugmentEvent *ev;
    VirtQueueElement *elem;
    bool notify = false;

    if (!vmaugment_can_complete(s) ||
        !(vdev->status & VIRTIO_CONFIG_S_DRIVER_OK) ||
        !virtio_vdev_has_feature(vdev, VIRTIO_VMAUGMENT_F_EVENTS)) {
        return;
    }
    while ((ev = QSIMPLEQ_FIRST(&s->events))) {
        struct virtio_vmaugment_event hdr = {
            .seq = cpu_to_le64(s->event_seq),
            .type = cpu_to_le32(ev->type),
            .flags = cpu_to_le32(s->event_lost ? VMAUG_EVENT_F_LOST : 0),
            .len = cpu_to_le32(ev->len),
        };
        size_t size;

        elem = virtqueue_pop(s->event_vq, sizeof(VirtQueueElement));
        if (!elem) {
            break;
        }
        if (elem->out_num ||
            iov_size(elem->in_sg, elem->in_num) <
            sizeof(hdr) + VMAUG_MAX_EVENT_PAYLOAD) {
            virtio_error(vdev, "vmaugment: event buffer is not a writable "
                         "buffer of at least %zu bytes",
                         sizeof(hdr) + VMAUG_MAX_EVENT_PAYLOAD);
            virtqueue_detach_element(s->event_vq, elem, 0);
            g_free(elem);
            return;
        }
        size = iov_from_buf(elem->in_sg, elem->in_num, 0, &hdr, sizeof(hdr));
        size += iov_from_buf(elem->in_sg, elem->in_num, sizeof(hdr),
                             ev->data, ev->len);
        trace_vmaugment_event(s, s->event_seq, ev->type, ev->len);
        virtqueue_push(s->event_vq, elem, size);
        g_free(elem);
        notify = true;

        s->event_seq++;
        s->event_lost = false;
        QSIMPLEQ_REMOVE_HEAD(&s->events, next);
        s->n_events--;
        g_free(ev);
    }
    if (notify) {
        virtio_notify(vdev, s->event_vq);
    }
}

void vmaugment_events_drop(VirtIOVMAugment *s)
{
    VMAugmentEvent *ev;

    while ((ev = QSIMPLEQ_FIRST(&s->events))) {
        QSIMPLEQ_REMOVE_HEAD(&s->events, next);
        g_free(ev);
    }
    s->n_events = 0;
}
