/*
 * vmaugment virtio device
 *
 * Guest software asks the host, through this device, to load extension
 * modules that run in sandboxed helper processes on the host.  The device
 * itself only validates requests, answers VERSION, PING and SUBSCRIBE, and
 * relays everything else to the vmaugment host helper over a chardev; it
 * never runs module code.  docs/protocol.rst is the normative description.
 *
 * This file holds the virtqueues, the requests in flight and their
 * migration, and wires the other files together: the helper link
 * (vmaugment-link.c) reports here through VMAugmentLinkOps, and what it
 * reports goes on to the guest (vmaugment-events.c), the host owner
 * (vmaugment-qmp.c) and the lifecycle (vmaugment-lifecycle.c).
 *
 * Everything the guest writes and everything the helper sends is treated
 * as hostile: sizes are checked before anything is copied, a malformed
 * request gets an error status, and only ring-protocol violations mark the
 * device broken.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qemu/bitmap.h"
#include "qemu/cutils.h"
#include "qemu/error-report.h"
#include "qemu/iov.h"
#include "qemu/log.h"
#include "qemu/module.h"
#include "hw/qdev-properties.h"
#include "hw/qdev-properties-system.h"
#include "hw/vmaugment/vmaugment.h"
#include "standard-headers/vmaugment/protocol-rules.h"
#include "migration/qemu-file-types.h"
#include "migration/vmstate.h"
#include "system/dma.h"
#include "qapi/qapi-events-vmaugment.h"
#include "trace.h"

#define VMAUGMENT_DEVICE_NAME "vmaugment 0.1"

/* Events a guest gets before it subscribes: all of them. */
#define VMAUGMENT_DEFAULT_EVENT_MASK \
    (((1ULL << (VMAUG_EVENT_MAX + 1)) - 1) & ~1ULL)

typedef struct VMAugmentLocalOp VMAugmentLocalOp;

/* Answer a request in the device; returns the response payload length. */
typedef uint16_t VMAugmentLocalFn(VirtIOVMAugment *s, const uint8_t *payload,
                                  uint32_t len, uint8_t *out,
                                  uint32_t *out_len);

/* The opcodes the device answers itself; the rest go to the helper. */
struct VMAugmentLocalOp {
    uint16_t opcode;
    VMAugmentLocalFn *fn;
};

/* ---- Completing requests ---- */

/*
 * Write the response header and payload into the element's device-writable
 * buffers and hand it back to the guest.  The caller made sure there is
 * room for the header.
 */
static void vmaugment_complete(VirtIOVMAugment *s, VirtQueueElement *elem,
                               uint64_t id, uint16_t opcode, uint16_t status,
                               const void *data, uint32_t len)
{
    VirtIODevice *vdev = VIRTIO_DEVICE(s);
    struct virtio_vmaugment_resp resp;
    size_t space = iov_size(elem->in_sg, elem->in_num) - sizeof(resp);
    size_t written;

    if (status == VMAUG_S_OK && len > space) {
        /* Tell the guest how much room the answer needs. */
        status = VMAUG_S_NO_SPACE;
        data = NULL;
    } else if (len > space) {
        /* An error message is only informative: cut it. */
        len = space;
    }

    resp.id = cpu_to_le64(id);
    resp.opcode = cpu_to_le16(opcode);
    resp.status = cpu_to_le16(status);
    resp.len = cpu_to_le32(len);
    written = iov_from_buf(elem->in_sg, elem->in_num, 0, &resp, sizeof(resp));
    if (data && len) {
        written += iov_from_buf(elem->in_sg, elem->in_num, sizeof(resp),
                                data, len);
    }
    trace_vmaugment_response(s, id, opcode, status, len);

    virtqueue_push(s->req_vq, elem, written);
    virtio_notify(vdev, s->req_vq);
    g_free(elem);
}

static void vmaugment_fail(VirtIOVMAugment *s, VirtQueueElement *elem,
                           uint64_t id, uint16_t opcode, uint16_t status,
                           const char *msg)
{
    trace_vmaugment_bad_request(s, msg);
    vmaugment_complete(s, elem, id, opcode, status, msg, strlen(msg));
}

/* ---- Requests the device answers itself ---- */

static void vmaugment_fill_config(VirtIOVMAugment *s,
                                  struct virtio_vmaugment_config *cfg)
{
    cfg->proto_version = cpu_to_le32(VMAUG_PROTO_VERSION);
    cfg->helper_state = cpu_to_le32(s->helper_ready ?
                                    VMAUG_HELPER_CONNECTED :
                                    VMAUG_HELPER_DISCONNECTED);
    cfg->max_req_payload = cpu_to_le32(VMAUG_MAX_REQ_PAYLOAD);
    cfg->max_resp_payload = cpu_to_le32(VMAUG_MAX_RESP_PAYLOAD);
}

/* VERSION's answer starts with the configuration space's fields. */
QEMU_BUILD_BUG_ON(offsetof(struct vmaug_version_info, device) !=
                  sizeof(struct virtio_vmaugment_config));

static uint16_t vmaugment_op_version(VirtIOVMAugment *s,
                                     const uint8_t *payload, uint32_t len,
                                     uint8_t *out, uint32_t *out_len)
{
    struct vmaug_version_info info = {};
    struct virtio_vmaugment_config cfg;

    vmaugment_fill_config(s, &cfg);
    memcpy(&info, &cfg, sizeof(cfg));
    pstrcpy((char *)info.device, sizeof(info.device), VMAUGMENT_DEVICE_NAME);
    memcpy(out, &info, sizeof(info));
    *out_len = sizeof(info);
    return VMAUG_S_OK;
}

static uint16_t vmaugment_op_ping(VirtIOVMAugment *s, const uint8_t *payload,
                                  uint32_t len, uint8_t *out,
                                  uint32_t *out_len)
{
    memcpy(out, payload, len);
    *out_len = len;
    return VMAUG_S_OK;
}

static uint16_t vmaugment_op_subscribe(VirtIOVMAugment *s,
                                       const uint8_t *payload, uint32_t len,
                                       uint8_t *out, uint32_t *out_len)
{
    struct vmaug_subscribe sub;

    memcpy(&sub, payload, sizeof(sub));
    if (sub.reserved) {
        return VMAUG_S_INVALID;
    }
    s->event_mask = le32_to_cpu(sub.mask) & VMAUGMENT_DEFAULT_EVENT_MASK;
    sub.mask = cpu_to_le32(s->event_mask);
    memcpy(out, &sub, sizeof(sub));
    *out_len = sizeof(sub);
    return VMAUG_S_OK;
}

/*
 * The payload rules of every opcode are the protocol's table
 * (protocol-rules.h), which the helper checks again; these are the
 * device's own answers.
 */
static const VMAugmentLocalOp vmaugment_local_ops[] = {
    { VMAUG_OP_VERSION, vmaugment_op_version },
    { VMAUG_OP_PING, vmaugment_op_ping },
    { VMAUG_OP_SUBSCRIBE, vmaugment_op_subscribe },
};

static VMAugmentLocalFn *vmaugment_find_local(uint16_t opcode)
{
    size_t i;

    for (i = 0; i < ARRAY_SIZE(vmaugment_local_ops); i++) {
        if (vmaugment_local_ops[i].opcode == opcode) {
            return vmaugment_local_ops[i].fn;
        }
    }
    return NULL;
}

/*
 * Sandbox details and the host's UI are the host owner's business (QMP);
 * the helper refuses them to guests as well.
 */
static bool vmaugment_host_only(uint16_t opcode, const uint8_t *payload)
{
    struct vmaug_list_req req;
    uint32_t what;

    if (opcode != VMAUG_OP_LIST) {
        return false;
    }
    memcpy(&req, payload, sizeof(req));
    what = le32_to_cpu(req.what);
    return what == VMAUG_LIST_SANDBOXES || what == VMAUG_LIST_UI;
}

/* ---- Relayed requests ---- */

static VMAugmentRequest *vmaugment_find_inflight(VirtIOVMAugment *s,
                                                 bool by_tag, uint64_t key)
{
    VMAugmentRequest *req;

    QTAILQ_FOREACH(req, &s->inflight, next) {
        if ((by_tag ? req->tag : req->id) == key) {
            return req;
        }
    }
    return NULL;
}

static void vmaugment_arm_timeout(VirtIOVMAugment *s)
{
    VMAugmentRequest *first = QTAILQ_FIRST(&s->inflight);

    if (first) {
        timer_mod(s->timeout_timer, first->deadline_ns);
    } else {
        timer_del(s->timeout_timer);
    }
}

static void vmaugment_take_inflight(VirtIOVMAugment *s, VMAugmentRequest *req)
{
    QTAILQ_REMOVE(&s->inflight, req, next);
    if (--s->n_inflight == 0) {
        vmaugment_link_watch(s, false);
    }
}

static void vmaugment_free_request(VMAugmentRequest *req)
{
    g_free(req->answer);
    g_free(req->elem);
    g_free(req);
}

/*
 * Drop a request without answering it.  Its element goes back to the
 * virtqueue unused, which unmaps its buffers: a buffer outside RAM holds
 * one of QEMU's few bounce buffers until then.
 */
static void vmaugment_discard(VirtIOVMAugment *s, VMAugmentRequest *req)
{
    virtqueue_detach_element(s->req_vq, req->elem, 0);
    vmaugment_free_request(req);
}

/* Answer a request taken off the in-flight list, and free it. */
static void vmaugment_finish(VirtIOVMAugment *s, VMAugmentRequest *req,
                             uint16_t status, const void *data, uint32_t len)
{
    vmaugment_complete(s, req->elem, req->id, req->opcode, status, data, len);
    req->elem = NULL;
    vmaugment_free_request(req);
}

/*
 * Answer a request taken off the in-flight list now, or keep the answer
 * until the VM runs again.
 */
static void vmaugment_answer(VirtIOVMAugment *s, VMAugmentRequest *req,
                             uint16_t status, const void *data, uint32_t len)
{
    if (vmaugment_can_complete(s)) {
        vmaugment_finish(s, req, status, data, len);
        return;
    }
    req->status = status;
    req->answer = g_memdup2(data, len);
    req->answer_len = len;
    QTAILQ_INSERT_TAIL(&s->answered, req, next);
}

static void vmaugment_interrupt(VirtIOVMAugment *s, VMAugmentRequest *req)
{
    static const char msg[] = "interrupted: host helper lost or VM restored";

    vmaugment_answer(s, req, VMAUG_S_INTERRUPTED, msg, strlen(msg));
}

static void vmaugment_timeout(void *opaque)
{
    VirtIOVMAugment *s = opaque;
    int64_t now = qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL);
    VMAugmentRequest *req, *next;

    QTAILQ_FOREACH_SAFE(req, &s->inflight, next, next) {
        if (req->deadline_ns > now) {
            break;
        }
        vmaugment_take_inflight(s, req);
        vmaugment_helper_send(s, VMAUG_HOST_CANCEL, req->tag, NULL, 0,
                              NULL, 0);
        vmaugment_finish(s, req, VMAUG_S_TIMEOUT,
                         "host helper did not answer in time",
                         strlen("host helper did not answer in time"));
    }
    vmaugment_arm_timeout(s);
}

/* @slot: the upload area's slot that holds the payload's data, or -1. */
static void vmaugment_relay(VirtIOVMAugment *s, VirtQueueElement *elem,
                            const struct virtio_vmaugment_req *hdr,
                            const uint8_t *payload, uint32_t len, int slot)
{
    uint64_t id = le64_to_cpu(hdr->id);
    uint16_t opcode = le16_to_cpu(hdr->opcode);
    VMAugmentRequest *req;

    if (!s->helper_ready) {
        vmaugment_fail(s, elem, id, opcode, VMAUG_S_UNAVAILABLE,
                       "host helper not connected");
        return;
    }
    /* The id is how the guest matches answers: two in flight is a bug. */
    if (vmaugment_find_inflight(s, false, id)) {
        vmaugment_fail(s, elem, id, opcode, VMAUG_S_BUSY,
                       "request id already in flight");
        return;
    }

    req = g_new0(VMAugmentRequest, 1);
    req->elem = elem;
    req->id = id;
    req->opcode = opcode;
    req->tag = s->next_tag++;
    req->deadline_ns = qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL) +
                       (int64_t)s->conf.request_timeout_ms * SCALE_MS;
    req->relayed_ns = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    QTAILQ_INSERT_TAIL(&s->inflight, req, next);
    s->n_inflight++;
    if (s->n_inflight == 1) {
        vmaugment_arm_timeout(s);
    }

    trace_vmaugment_relay(s, req->tag, id, opcode);
    if (slot >= 0) {
        /* The socket carries its header only. */
        req->in_area = true;
        s->kick_area = true;
        s->kick_bytes += sizeof(struct vmaug_upload_chunk);
        vmaugment_link_send_area(s, req->tag, slot, hdr, payload);
        return;
    }
    s->kick_bytes += len;
    vmaugment_helper_send(s, VMAUG_HOST_REQUEST, req->tag, hdr, sizeof(*hdr),
                          payload, len);
}

/* ---- Guest requests ---- */

static void vmaugment_process(VirtIOVMAugment *s, VirtQueueElement *elem)
{
    VirtIODevice *vdev = VIRTIO_DEVICE(s);
    struct virtio_vmaugment_req hdr;
    size_t in_size = iov_size(elem->in_sg, elem->in_num);
    size_t out_size = iov_size(elem->out_sg, elem->out_num);
    const struct vmaug_proto_op *op;
    VMAugmentLocalFn *local;
    const uint8_t *payload = s->req_buf + sizeof(hdr);
    g_autofree uint8_t *answer = NULL;
    uint32_t len, answer_len = 0;
    const char *why = NULL;
    uint16_t opcode, status;
    uint8_t *slot_data = NULL;
    size_t head;
    int slot = -1;
    uint64_t id;

    if (in_size < sizeof(struct virtio_vmaugment_resp)) {
        /* Nowhere to put a status: the guest broke the ring protocol. */
        virtio_error(vdev, "vmaugment: request without a response buffer "
                     "(%zu writable bytes)", in_size);
        virtqueue_detach_element(s->req_vq, elem, 0);
        g_free(elem);
        return;
    }
    if (out_size < sizeof(hdr)) {
        vmaugment_fail(s, elem, 0, 0, VMAUG_S_INVALID,
                       "request shorter than its header");
        return;
    }
    if (out_size - sizeof(hdr) > VMAUG_MAX_REQ_PAYLOAD) {
        /* Checked before copying: the guest picks the size. */
        iov_to_buf(elem->out_sg, elem->out_num, 0, &hdr, sizeof(hdr));
        vmaugment_fail(s, elem, le64_to_cpu(hdr.id),
                       le16_to_cpu(hdr.opcode), VMAUG_S_TOO_BIG,
                       "request larger than the device accepts");
        return;
    }

    /*
     * Copy first, then look: the guest may change its buffers meanwhile.
     * An upload chunk's data, which the device never looks at, goes
     * straight into a slot of the helper's upload area when one is free.
     */
    head = MIN(out_size, sizeof(hdr) + sizeof(struct vmaug_upload_chunk));
    iov_to_buf(elem->out_sg, elem->out_num, 0, s->req_buf, head);
    memcpy(&hdr, s->req_buf, sizeof(hdr));
    id = le64_to_cpu(hdr.id);
    opcode = le16_to_cpu(hdr.opcode);
    len = le32_to_cpu(hdr.len);
    if (opcode == VMAUG_OP_UPLOAD_CHUNK && out_size > head &&
        out_size - head <= VMAUG_CHUNK_MAX_DATA) {
        slot = vmaugment_link_area_slot(s, &slot_data);
    }
    iov_to_buf(elem->out_sg, elem->out_num, head,
               slot >= 0 ? slot_data : s->req_buf + head, out_size - head);
    trace_vmaugment_request(s, id, opcode, len);

    if (len != out_size - sizeof(hdr)) {
        vmaugment_fail(s, elem, id, opcode, VMAUG_S_INVALID,
                       "header length differs from the buffer size");
        return;
    }
    if (hdr.flags) {
        vmaugment_fail(s, elem, id, opcode, VMAUG_S_INVALID,
                       "reserved flags set");
        return;
    }
    op = vmaug_proto_op(opcode);
    if (!op) {
        vmaugment_fail(s, elem, id, opcode, VMAUG_S_UNSUPPORTED,
                       "unknown opcode");
        return;
    }
    status = vmaug_proto_op_check(op, payload, len, &why);
    if (status == VMAUG_S_OK && vmaugment_host_only(opcode, payload)) {
        status = VMAUG_S_DENIED;
        why = "listing for the host owner only";
    }
    if (status != VMAUG_S_OK) {
        vmaugment_fail(s, elem, id, opcode, status, why);
        return;
    }
    local = vmaugment_find_local(opcode);
    if (!local) {
        vmaugment_relay(s, elem, &hdr, payload, len, slot);
        return;
    }

    answer = g_malloc(MAX(len, sizeof(struct vmaug_version_info)));
    status = local(s, payload, len, answer, &answer_len);
    vmaugment_complete(s, elem, id, opcode, status, answer, answer_len);
}

static void vmaugment_take_requests(VirtIOVMAugment *s, VirtQueue *vq)
{
    VirtQueueElement *elem;

    while (vmaugment_can_complete(s)) {
        if (vmaugment_link_backlog(s) > VMAUGMENT_OUT_HIGH_WATER) {
            /* The helper is slow; the write watch calls us again. */
            trace_vmaugment_relay_throttle(s, vmaugment_link_backlog(s));
            return;
        }
        elem = virtqueue_pop(vq, sizeof(VirtQueueElement));
        if (!elem) {
            return;
        }
        vmaugment_process(s, elem);
    }
}

/*
 * Wait for the answers to the requests just relayed (tags from
 * @first_tag on), on this thread, a bounded time, and complete them
 * here: for a guest's kick under TCG this is the vCPU thread, and an
 * answer taken here reaches the guest without QEMU's main loop waking
 * and without the vCPU halting for the interrupt (docs/performance.md,
 * "Relayed requests").  The BQL is held meanwhile, as vhost-user holds
 * it waiting for its backend's replies; hence the bound (relay-wait-us),
 * and no waiting once a wait was in vain, until an answer comes within
 * the bound again.  A kick that relayed an upload chunk in the upload
 * area waits up to its own bound (chunk-wait-us), as the helper answers
 * it once it has written the chunk before it.  What is not answered in
 * time, the main loop reads.
 */
static void vmaugment_await(VirtIOVMAugment *s, uint64_t first_tag)
{
    VMAugmentRequest *oldest = QTAILQ_FIRST(&s->inflight);
    int64_t *wait = s->kick_area ? &s->chunk_wait_ns : &s->relay_wait_ns;
    int64_t deadline;

    if (!oldest) {
        return;
    }
    if (oldest->tag >= first_tag && *wait > 0 &&
        s->kick_bytes <= VMAUGMENT_RELAY_WAIT_MAX_BYTES &&
        vmaugment_link_has_channel(s) && !vmaugment_link_backlog(s) &&
        vmaugment_can_complete(s)) {
        deadline = qemu_clock_get_ns(QEMU_CLOCK_REALTIME) + *wait;
        while (s->n_inflight && vmaugment_link_wait(s, deadline)) {
            continue;
        }
        if (s->n_inflight) {
            *wait = 0;
        }
        trace_vmaugment_relay_wait(s, s->n_inflight, *wait);
    }
    if (s->n_inflight) {
        vmaugment_link_watch(s, true);
    }
}

static void vmaugment_handle_request(VirtIODevice *vdev, VirtQueue *vq)
{
    VirtIOVMAugment *s = VMAUGMENT(vdev);
    uint64_t first_tag = s->next_tag;

    s->kick_bytes = 0;
    s->kick_area = false;
    vmaugment_take_requests(s, vq);
    vmaugment_await(s, first_tag);
}

/* Fail every relayed request: the helper that would answer is gone. */
static void vmaugment_interrupt_inflight(VirtIOVMAugment *s)
{
    VMAugmentRequest *req;

    while ((req = QTAILQ_FIRST(&s->inflight))) {
        vmaugment_take_inflight(s, req);
        vmaugment_interrupt(s, req);
    }
    timer_del(s->timeout_timer);
}

static void vmaugment_complete_answered(VirtIOVMAugment *s)
{
    VMAugmentRequest *req;

    if (!vmaugment_can_complete(s)) {
        return;
    }
    while ((req = QTAILQ_FIRST(&s->answered))) {
        QTAILQ_REMOVE(&s->answered, req, next);
        vmaugment_finish(s, req, req->status, req->answer, req->answer_len);
    }
}

/* ---- What the helper says (vmaugment-link.c) ---- */

static void vmaugment_set_helper_ready(VirtIOVMAugment *s, bool ready)
{
    VirtIODevice *vdev = VIRTIO_DEVICE(s);
    g_autofree char *path = NULL;

    if (s->helper_ready == ready) {
        return;
    }
    s->helper_ready = ready;
    trace_vmaugment_helper_state(s, ready);
    path = vmaugment_path(s);
    qapi_event_send_vmaugment_helper(path, ready);
    if (vdev->status & VIRTIO_CONFIG_S_DRIVER_OK) {
        virtio_notify_config(vdev);
    }
    vmaugment_post_event(s, ready ? VMAUG_EVENT_HELPER_CONNECTED :
                                    VMAUG_EVENT_HELPER_LOST, NULL, 0);
}

static void vmaugment_link_ready(VirtIOVMAugment *s, bool ready)
{
    vmaugment_set_helper_ready(s, ready);
    if (ready) {
        vmaugment_lifecycle_helper_ready(s);
    } else {
        vmaugment_interrupt_inflight(s);
    }
}

static void vmaugment_link_response(VirtIOVMAugment *s, uint64_t tag,
                                    uint16_t status, const uint8_t *data,
                                    uint32_t len)
{
    VMAugmentRequest *req = vmaugment_find_inflight(s, true, tag);
    int64_t bound, *wait;

    if (!req) {
        /* Answer to a request that timed out or was cancelled by reset. */
        trace_vmaugment_helper_bad_message(s, "response for unknown tag");
        return;
    }
    vmaugment_take_inflight(s, req);
    bound = (int64_t)(req->in_area ? s->conf.chunk_wait_us
                                   : s->conf.relay_wait_us) * SCALE_US;
    wait = req->in_area ? &s->chunk_wait_ns : &s->relay_wait_ns;
    if (!*wait &&
        qemu_clock_get_ns(QEMU_CLOCK_REALTIME) - req->relayed_ns <= bound) {
        /* Answered within the bound: worth waiting for again. */
        *wait = bound;
    }
    vmaugment_answer(s, req, status, data, len);
    vmaugment_arm_timeout(s);
}

static void vmaugment_link_event(VirtIOVMAugment *s, uint32_t type,
                                 const uint8_t *data, uint32_t len)
{
    vmaugment_qmp_helper_event(s, type, data, len);
    if (type == VMAUG_EVENT_RESTART_REQUESTED) {
        vmaugment_lifecycle_restart(s, data, len);
    }
    vmaugment_post_event(s, type, data, len);
}

static void vmaugment_link_drained(VirtIOVMAugment *s)
{
    vmaugment_handle_request(VIRTIO_DEVICE(s), s->req_vq);
}

static const VMAugmentLinkOps vmaugment_link_ops = {
    .ready = vmaugment_link_ready,
    .response = vmaugment_link_response,
    .event = vmaugment_link_event,
    .lifecycle_done = vmaugment_lifecycle_done,
    .image_access = vmaugment_lifecycle_image_access,
    .drained = vmaugment_link_drained,
};

/* ---- Lifecycle ---- */

/* Drop every request without answering: the guest's rings are gone. */
static void vmaugment_drop_requests(VirtIOVMAugment *s)
{
    VMAugmentRequest *req;

    while ((req = QTAILQ_FIRST(&s->inflight))) {
        vmaugment_take_inflight(s, req);
        vmaugment_helper_send(s, VMAUG_HOST_CANCEL, req->tag, NULL, 0,
                              NULL, 0);
        vmaugment_discard(s, req);
    }
    timer_del(s->timeout_timer);
    while ((req = QTAILQ_FIRST(&s->answered))) {
        QTAILQ_REMOVE(&s->answered, req, next);
        vmaugment_discard(s, req);
    }
}

/* Catch up on what waited while the VM was stopped. */
static void vmaugment_resume_bh(void *opaque)
{
    VirtIOVMAugment *s = opaque;

    if (!s->vm_running) {
        return;
    }
    vmaugment_complete_answered(s);
    vmaugment_events_flush(s);
    vmaugment_handle_request(VIRTIO_DEVICE(s), s->req_vq);
    vmaugment_link_resume(s);
}

static void vmaugment_vm_state_change(void *opaque, bool running,
                                      RunState state)
{
    VirtIOVMAugment *s = opaque;

    s->vm_running = running;
    vmaugment_lifecycle_vm_state(s, running, state);
    if (running) {
        /*
         * Not from here: the vCPUs and the rest of the machine are not
         * running yet.
         */
        qemu_bh_schedule(s->resume_bh);
    }
}

static void vmaugment_reset(VirtIODevice *vdev)
{
    VirtIOVMAugment *s = VMAUGMENT(vdev);

    trace_vmaugment_reset(s, s->n_inflight);
    vmaugment_drop_requests(s);
    vmaugment_events_drop(s);
    s->event_mask = VMAUGMENT_DEFAULT_EVENT_MASK;
    s->event_lost = false;
}

static void vmaugment_set_status(VirtIODevice *vdev, uint8_t status)
{
    if (status & VIRTIO_CONFIG_S_DRIVER_OK) {
        vmaugment_events_flush(VMAUGMENT(vdev));
    }
}

static uint64_t vmaugment_get_features(VirtIODevice *vdev, uint64_t features,
                                       Error **errp)
{
    virtio_add_feature(&features, VIRTIO_VMAUGMENT_F_EVENTS);
    return features;
}

static void vmaugment_get_config(VirtIODevice *vdev, uint8_t *data)
{
    struct virtio_vmaugment_config cfg;

    vmaugment_fill_config(VMAUGMENT(vdev), &cfg);
    memcpy(data, &cfg, sizeof(cfg));
}

static void vmaugment_handle_event(VirtIODevice *vdev, VirtQueue *vq)
{
    vmaugment_events_flush(VMAUGMENT(vdev));
}

static void vmaugment_realize(DeviceState *dev, Error **errp)
{
    VirtIODevice *vdev = VIRTIO_DEVICE(dev);
    VirtIOVMAugment *s = VMAUGMENT(dev);

    if (s->conf.request_timeout_ms == 0 ||
        s->conf.request_timeout_ms > VMAUG_MAX_TIMEOUT_MS) {
        error_setg(errp, "'request-timeout-ms' must be between 1 and %u",
                   VMAUG_MAX_TIMEOUT_MS);
        return;
    }
    if (s->conf.relay_wait_us > VMAUGMENT_MAX_RELAY_WAIT_US ||
        s->conf.chunk_wait_us > VMAUGMENT_MAX_RELAY_WAIT_US) {
        /* The BQL is held meanwhile: a wait stays far below a tick. */
        error_setg(errp, "'relay-wait-us' and 'chunk-wait-us' must be at "
                   "most %u", VMAUGMENT_MAX_RELAY_WAIT_US);
        return;
    }
    s->relay_wait_ns = (int64_t)s->conf.relay_wait_us * SCALE_US;
    s->chunk_wait_ns = (int64_t)s->conf.chunk_wait_us * SCALE_US;
    if (s->conf.store) {
        if (!g_path_is_absolute(s->conf.store) ||
            strlen(s->conf.store) > VMAUG_HOST_PATH_MAX) {
            error_setg(errp, "'store' must be an absolute path of at most "
                       "%u bytes", VMAUG_HOST_PATH_MAX);
            return;
        }
        if (!g_file_test(s->conf.store, G_FILE_TEST_IS_DIR)) {
            error_setg(errp, "'store' %s is not a directory", s->conf.store);
            return;
        }
    }
    if (!vmaugment_lifecycle_realize(s, errp)) {
        return;
    }

    virtio_init(vdev, VIRTIO_ID_VMAUGMENT,
                sizeof(struct virtio_vmaugment_config));
    s->req_vq = virtio_add_queue(vdev, VMAUG_REQUEST_QUEUE_SIZE,
                                 vmaugment_handle_request);
    s->event_vq = virtio_add_queue(vdev, VMAUG_EVENT_QUEUE_SIZE,
                                   vmaugment_handle_event);

    s->req_buf = g_malloc(sizeof(struct virtio_vmaugment_req) +
                          VMAUG_MAX_REQ_PAYLOAD);
    QTAILQ_INIT(&s->inflight);
    QTAILQ_INIT(&s->answered);
    QSIMPLEQ_INIT(&s->events);
    s->event_mask = VMAUGMENT_DEFAULT_EVENT_MASK;
    s->timeout_timer = timer_new_ns(QEMU_CLOCK_VIRTUAL, vmaugment_timeout, s);
    s->vm_running = runstate_is_running();
    s->resume_bh = virtio_bh_new_guarded(dev, vmaugment_resume_bh, s);
    s->vmstate_change = qemu_add_vm_change_state_handler(
        vmaugment_vm_state_change, s);
    vmaugment_link_init(s, &vmaugment_link_ops);
}

static void vmaugment_unrealize(DeviceState *dev)
{
    VirtIODevice *vdev = VIRTIO_DEVICE(dev);
    VirtIOVMAugment *s = VMAUGMENT(dev);

    vmaugment_link_cleanup(s);
    vmaugment_lifecycle_unrealize(s);
    vmaugment_drop_requests(s);
    vmaugment_events_drop(s);
    qemu_del_vm_change_state_handler(s->vmstate_change);
    qemu_bh_delete(s->resume_bh);
    timer_free(s->timeout_timer);
    g_free(s->req_buf);
    virtio_delete_queue(s->req_vq);
    virtio_delete_queue(s->event_vq);
    virtio_cleanup(vdev);
}

/*
 * ---- Migration ----
 *
 * Requests the helper has not answered travel with the device state; the
 * destination fails them with VMAUG_S_INTERRUPTED as soon as it runs,
 * because its helper connection never saw them.  Pending events do not
 * travel: the next one delivered carries VMAUG_EVENT_F_LOST instead.
 *
 * A request travels as what its answer needs: id, opcode, the chain's
 * head and descriptor count, and the guest address and size of each
 * device-writable buffer.  The stream is untrusted, so the destination
 * checks all of it against the ring and maps the buffers itself, where
 * qemu_get_virtqueue_element() would assert on a bad count and exit on a
 * buffer it cannot map.
 */

static void vmaugment_put_one(VirtIOVMAugment *s, QEMUFile *f,
                              VMAugmentRequest *req)
{
    VirtQueueElement *elem = req->elem;
    unsigned int i;

    qemu_put_be64(f, req->id);
    qemu_put_be16(f, req->opcode);
    qemu_put_be32(f, elem->index);
    qemu_put_be32(f, elem->ndescs);
    qemu_put_be32(f, elem->in_num);
    for (i = 0; i < elem->in_num; i++) {
        qemu_put_be64(f, elem->in_addr[i]);
        /* At most a descriptor's length, which is 32 bits. */
        qemu_put_be32(f, elem->in_sg[i].iov_len);
    }
}

static int vmaugment_put_requests(QEMUFile *f, void *pv, size_t size,
                                  const VMStateField *field,
                                  JSONWriter *vmdesc)
{
    VirtIOVMAugment *s = container_of(pv, VirtIOVMAugment, inflight);
    VMAugmentRequest *req;
    uint32_t count = s->n_inflight;

    QTAILQ_FOREACH(req, &s->answered, next) {
        count++;
    }
    qemu_put_be32(f, count);
    QTAILQ_FOREACH(req, &s->inflight, next) {
        vmaugment_put_one(s, f, req);
    }
    /* Their answers stay behind: the destination interrupts them too. */
    QTAILQ_FOREACH(req, &s->answered, next) {
        vmaugment_put_one(s, f, req);
    }
    return 0;
}

/* An element with @in_num device-writable buffers and no others. */
static VirtQueueElement *vmaugment_elem_new(unsigned int in_num)
{
    size_t addr_ofs = QEMU_ALIGN_UP(sizeof(VirtQueueElement),
                                    __alignof__(hwaddr));
    size_t sg_ofs = QEMU_ALIGN_UP(addr_ofs + in_num * sizeof(hwaddr),
                                  __alignof__(struct iovec));
    VirtQueueElement *elem = g_malloc0(sg_ofs +
                                       in_num * sizeof(struct iovec));

    /* One block, as virtqueue_pop() makes them: g_free() frees it all. */
    elem->in_num = in_num;
    elem->in_addr = (void *)elem + addr_ofs;
    elem->in_sg = (void *)elem + sg_ofs;
    return elem;
}

static void vmaugment_elem_unmap(VirtIODevice *vdev, VirtQueueElement *elem,
                                 unsigned int mapped)
{
    unsigned int i;

    for (i = 0; i < mapped; i++) {
        dma_memory_unmap(vdev->dma_as, elem->in_sg[i].iov_base,
                         elem->in_sg[i].iov_len, DMA_DIRECTION_FROM_DEVICE,
                         0);
    }
}

/*
 * Read a request's chain, check it against the request ring of @num
 * entries (@heads marks the chain heads already restored), and map its
 * buffers.
 */
static VirtQueueElement *vmaugment_load_elem(VirtIOVMAugment *s, QEMUFile *f,
                                             unsigned int num,
                                             unsigned long *heads,
                                             Error **errp)
{
    VirtIODevice *vdev = VIRTIO_DEVICE(s);
    bool packed = virtio_host_has_feature(vdev, VIRTIO_F_RING_PACKED);
    uint32_t index = qemu_get_be32(f);
    uint32_t ndescs = qemu_get_be32(f);
    uint32_t in_num = qemu_get_be32(f);
    VirtQueueElement *elem;
    uint64_t total = 0;
    uint32_t i;

    if (index >= num) {
        error_setg(errp, "chain head %u outside a %u-entry ring", index, num);
        return NULL;
    }
    if (test_and_set_bit(index, heads)) {
        error_setg(errp, "chain head %u restored twice", index);
        return NULL;
    }
    /* A split ring's chain counts as one, whatever its length. */
    if (ndescs == 0 || ndescs > num || (!packed && ndescs != 1)) {
        error_setg(errp, "chain of %u descriptors on a %u-entry ring",
                   ndescs, num);
        return NULL;
    }
    if (in_num == 0 || in_num > VIRTQUEUE_MAX_SIZE) {
        error_setg(errp, "%u response buffers (1 to %u allowed)", in_num,
                   VIRTQUEUE_MAX_SIZE);
        return NULL;
    }

    elem = vmaugment_elem_new(in_num);
    elem->index = index;
    elem->ndescs = ndescs;
    for (i = 0; i < in_num; i++) {
        elem->in_addr[i] = qemu_get_be64(f);
        elem->in_sg[i].iov_len = qemu_get_be32(f);
        if (!elem->in_sg[i].iov_len) {
            error_setg(errp, "an empty response buffer");
            goto fail;
        }
        total += elem->in_sg[i].iov_len;
    }
    if (total < sizeof(struct virtio_vmaugment_resp)) {
        error_setg(errp, "%" PRIu64 " bytes of response buffers, too small "
                   "for a response header", total);
        goto fail;
    }
    for (i = 0; i < in_num; i++) {
        dma_addr_t len = elem->in_sg[i].iov_len;

        elem->in_sg[i].iov_base = dma_memory_map(vdev->dma_as,
                                                 elem->in_addr[i], &len,
                                                 DMA_DIRECTION_FROM_DEVICE,
                                                 MEMTXATTRS_UNSPECIFIED);
        if (!elem->in_sg[i].iov_base || len != elem->in_sg[i].iov_len) {
            /* Not RAM, or more than one piece of it, or no bounce buffer. */
            if (elem->in_sg[i].iov_base) {
                dma_memory_unmap(vdev->dma_as, elem->in_sg[i].iov_base, len,
                                 DMA_DIRECTION_FROM_DEVICE, 0);
            }
            error_setg(errp, "cannot map %zu bytes at 0x%" HWADDR_PRIx,
                       elem->in_sg[i].iov_len, elem->in_addr[i]);
            vmaugment_elem_unmap(vdev, elem, i);
            goto fail;
        }
    }
    return elem;

fail:
    g_free(elem);
    return NULL;
}

static int vmaugment_get_requests(QEMUFile *f, void *pv, size_t size,
                                  const VMStateField *field)
{
    VirtIOVMAugment *s = container_of(pv, VirtIOVMAugment, inflight);
    VirtIODevice *vdev = VIRTIO_DEVICE(s);
    unsigned int num = virtio_queue_get_num(vdev, VMAUG_VQ_REQUEST);
    DECLARE_BITMAP(heads, VIRTQUEUE_MAX_SIZE) = { 0 };
    uint32_t i, count = qemu_get_be32(f);
    VMAugmentRequest *req;
    Error *err = NULL;

    /* The ring's size came in the stream too. */
    if (num > VIRTQUEUE_MAX_SIZE || count > num) {
        error_setg(&err, "%u requests in flight on a %u-entry ring", count,
                   num);
        goto fail;
    }
    for (i = 0; i < count; i++) {
        req = g_new0(VMAugmentRequest, 1);
        req->id = qemu_get_be64(f);
        req->opcode = qemu_get_be16(f);
        req->elem = vmaugment_load_elem(s, f, num, heads, &err);
        if (!req->elem) {
            g_free(req);
            error_prepend(&err, "request %u: ", i);
            goto fail;
        }
        vmaugment_interrupt(s, req);
    }
    return 0;

fail:
    error_reportf_err(err, "vmaugment: refusing the migration stream: ");
    /*
     * Unmap what was restored so far.  Not through the virtqueue: its
     * state from this stream is not loaded yet, nor to be trusted.
     */
    while ((req = QTAILQ_FIRST(&s->answered))) {
        QTAILQ_REMOVE(&s->answered, req, next);
        vmaugment_elem_unmap(vdev, req->elem, req->elem->in_num);
        vmaugment_free_request(req);
    }
    return -EINVAL;
}

static const VMStateInfo vmaugment_requests_info = {
    .name = "vmaugment-requests",
    .get = vmaugment_get_requests,
    .put = vmaugment_put_requests,
};

static int vmaugment_pre_save(void *opaque)
{
    VirtIOVMAugment *s = opaque;

    if (s->n_events) {
        s->event_lost = true;
    }
    return 0;
}

static int vmaugment_pre_load(void *opaque)
{
    VirtIOVMAugment *s = opaque;

    /* loadvm into a running device: what it had in flight is void. */
    vmaugment_drop_requests(s);
    vmaugment_events_drop(s);
    return 0;
}

/*
 * Version 2: requests carry their own chain format (vmaugment_put_one()).
 * The virtio core loads this with the outer section's version.
 */
static const VMStateDescription vmstate_vmaugment_device = {
    .name = "vmaugment-device",
    .version_id = 2,
    .minimum_version_id = 2,
    .pre_save = vmaugment_pre_save,
    .pre_load = vmaugment_pre_load,
    .fields = (const VMStateField[]) {
        VMSTATE_UINT32(event_mask, VirtIOVMAugment),
        VMSTATE_UINT64(event_seq, VirtIOVMAugment),
        VMSTATE_BOOL(event_lost, VirtIOVMAugment),
        {
            .name = "requests",
            .info = &vmaugment_requests_info,
            .flags = VMS_SINGLE,
            .size = sizeof(((VirtIOVMAugment *)0)->inflight),
            .offset = offsetof(VirtIOVMAugment, inflight),
        },
        VMSTATE_END_OF_LIST()
    },
};

static const VMStateDescription vmstate_vmaugment = {
    .name = "vmaugment",
    .version_id = 2,
    .minimum_version_id = 2,
    .fields = (const VMStateField[]) {
        VMSTATE_VIRTIO_DEVICE,
        VMSTATE_END_OF_LIST()
    },
};

static const Property vmaugment_properties[] = {
    DEFINE_PROP_CHR("chardev", VirtIOVMAugment, conf.chr),
    DEFINE_PROP_STRING("store", VirtIOVMAugment, conf.store),
    DEFINE_PROP_STRING("image", VirtIOVMAugment, conf.image),
    DEFINE_PROP_UINT32("request-timeout-ms", VirtIOVMAugment,
                       conf.request_timeout_ms, VMAUG_DEFAULT_TIMEOUT_MS * 2),
    DEFINE_PROP_UINT32("start-timeout-ms", VirtIOVMAugment,
                       conf.start_timeout_ms, VMAUG_DEFAULT_TIMEOUT_MS * 2),
    DEFINE_PROP_BOOL("allow-restart", VirtIOVMAugment, conf.allow_restart,
                     true),
    DEFINE_PROP_UINT32("relay-wait-us", VirtIOVMAugment, conf.relay_wait_us,
                       VMAUGMENT_DEFAULT_RELAY_WAIT_US),
    DEFINE_PROP_UINT32("chunk-wait-us", VirtIOVMAugment, conf.chunk_wait_us,
                       VMAUGMENT_DEFAULT_CHUNK_WAIT_US),
    DEFINE_PROP_BOOL("upload-area", VirtIOVMAugment, conf.upload_area, true),
};

static void vmaugment_class_init(ObjectClass *klass, void *data)
{
    DeviceClass *dc = DEVICE_CLASS(klass);
    VirtioDeviceClass *vdc = VIRTIO_DEVICE_CLASS(klass);

    device_class_set_props(dc, vmaugment_properties);
    dc->vmsd = &vmstate_vmaugment;
    dc->desc = "vmaugment host extension channel";
    set_bit(DEVICE_CATEGORY_MISC, dc->categories);
    vdc->realize = vmaugment_realize;
    vdc->unrealize = vmaugment_unrealize;
    vdc->get_features = vmaugment_get_features;
    vdc->get_config = vmaugment_get_config;
    vdc->set_status = vmaugment_set_status;
    vdc->reset = vmaugment_reset;
    vdc->vmsd = &vmstate_vmaugment_device;
}

static const TypeInfo vmaugment_info = {
    .name = TYPE_VMAUGMENT,
    .parent = TYPE_VIRTIO_DEVICE,
    .instance_size = sizeof(VirtIOVMAugment),
    .class_init = vmaugment_class_init,
};

static void vmaugment_register_types(void)
{
    type_register_static(&vmaugment_info);
}

type_init(vmaugment_register_types)
