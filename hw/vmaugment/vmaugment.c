/*
 * vmaugment virtio device
 *
 * Guest software asks the host, through this device, to load extension
 * modules that run in sandboxed helper processes on the host.  The device
 * itself only validates requests, answers VERSION, PING and SUBSCRIBE, and
 * relays everything else to the vmaugment host helper over a chardev; it
 * never runs module code.  docs/protocol.rst is the normative description.
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
#include "migration/qemu-file-types.h"
#include "migration/vmstate.h"
#include "system/dma.h"
#include "qapi/qapi-events-vmaugment.h"
#include "trace.h"

#define VMAUGMENT_DEVICE_NAME "vmaugment 0.1"

/* Events a guest gets before it subscribes: all of them. */
#define VMAUGMENT_DEFAULT_EVENT_MASK \
    (((1ULL << (VMAUG_EVENT_MAX + 1)) - 1) & ~1ULL)

typedef struct VMAugmentOp VMAugmentOp;

/* Answer a request in the device; returns the response payload length. */
typedef uint16_t VMAugmentLocalFn(VirtIOVMAugment *s, const uint8_t *payload,
                                  uint32_t len, uint8_t *out,
                                  uint32_t *out_len);

struct VMAugmentOp {
    uint16_t opcode;
    const char *name;
    uint32_t min_len;                   /* payload bounds */
    uint32_t max_len;
    VMAugmentLocalFn *local;            /* NULL: relay to the helper */
    /* offsets of NUL-terminated fixed string fields, and their sizes */
    struct {
        uint16_t offset;
        uint16_t size;
    } strings[2];
};

static void vmaugment_handle_request(VirtIODevice *vdev, VirtQueue *vq);
static void vmaugment_flush_events(VirtIOVMAugment *s);
static void vmaugment_helper_closed(VirtIOVMAugment *s);
static void vmaugment_admin_interrupt(VirtIOVMAugment *s);

static size_t vmaugment_out_pending(VirtIOVMAugment *s)
{
    return s->out->len - s->out_done;
}

static bool vmaugment_can_complete(VirtIOVMAugment *s)
{
    /*
     * While the VM is stopped its RAM may already have been migrated, so
     * nothing is written to it until it runs again.
     */
    return s->vm_running;
}

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

#define REF_STRINGS(base) \
    { { offsetof(base, name), VMAUG_NAME_MAX }, \
      { offsetof(base, version), VMAUG_VERSION_MAX } }

static const VMAugmentOp vmaugment_ops[] = {
    { VMAUG_OP_VERSION, "version", 0, 0, vmaugment_op_version },
    { VMAUG_OP_PING, "ping", 0, VMAUG_MAX_PING_PAYLOAD, vmaugment_op_ping },
    { VMAUG_OP_SUBSCRIBE, "subscribe",
      sizeof(struct vmaug_subscribe), sizeof(struct vmaug_subscribe),
      vmaugment_op_subscribe },
    { VMAUG_OP_QUERY, "query",
      sizeof(struct vmaug_module_ref), sizeof(struct vmaug_module_ref), NULL,
      REF_STRINGS(struct vmaug_module_ref) },
    { VMAUG_OP_LOAD, "load",
      sizeof(struct vmaug_module_ref), sizeof(struct vmaug_module_ref), NULL,
      REF_STRINGS(struct vmaug_module_ref) },
    { VMAUG_OP_UNLOAD, "unload",
      sizeof(struct vmaug_module_ref), sizeof(struct vmaug_module_ref), NULL,
      REF_STRINGS(struct vmaug_module_ref) },
    { VMAUG_OP_UPLOAD_BEGIN, "upload-begin",
      sizeof(struct vmaug_upload_begin), sizeof(struct vmaug_upload_begin),
      NULL,
      { { offsetof(struct vmaug_upload_begin, ref.name), VMAUG_NAME_MAX },
        { offsetof(struct vmaug_upload_begin, ref.version),
          VMAUG_VERSION_MAX } } },
    { VMAUG_OP_UPLOAD_CHUNK, "upload-chunk",
      sizeof(struct vmaug_upload_chunk) + 1,
      sizeof(struct vmaug_upload_chunk) + VMAUG_CHUNK_MAX_DATA, NULL },
    { VMAUG_OP_UPLOAD_COMMIT, "upload-commit",
      sizeof(struct vmaug_upload_ref), sizeof(struct vmaug_upload_ref),
      NULL },
    { VMAUG_OP_UPLOAD_ABORT, "upload-abort",
      sizeof(struct vmaug_upload_ref), sizeof(struct vmaug_upload_ref),
      NULL },
    { VMAUG_OP_INVOKE, "invoke", sizeof(struct vmaug_invoke),
      VMAUG_MAX_REQ_PAYLOAD, NULL,
      { { offsetof(struct vmaug_invoke, module), VMAUG_NAME_MAX },
        { offsetof(struct vmaug_invoke, function), VMAUG_FUNCTION_MAX } } },
    { VMAUG_OP_CONFIG_GET, "config-get",
      sizeof(struct vmaug_config_ref), sizeof(struct vmaug_config_ref), NULL,
      { { offsetof(struct vmaug_config_ref, module), VMAUG_NAME_MAX },
        { offsetof(struct vmaug_config_ref, key), VMAUG_CONFIG_KEY_MAX } } },
    { VMAUG_OP_CONFIG_SET, "config-set", sizeof(struct vmaug_config_ref),
      sizeof(struct vmaug_config_ref) + VMAUG_MAX_CONFIG_VALUE, NULL,
      { { offsetof(struct vmaug_config_ref, module), VMAUG_NAME_MAX },
        { offsetof(struct vmaug_config_ref, key), VMAUG_CONFIG_KEY_MAX } } },
    { VMAUG_OP_REGISTER, "register",
      sizeof(struct vmaug_registration), sizeof(struct vmaug_registration),
      NULL,
      { { offsetof(struct vmaug_registration, ref.name), VMAUG_NAME_MAX },
        { offsetof(struct vmaug_registration, ref.version),
          VMAUG_VERSION_MAX } } },
    { VMAUG_OP_UNREGISTER, "unregister",
      sizeof(struct vmaug_module_ref), sizeof(struct vmaug_module_ref), NULL,
      REF_STRINGS(struct vmaug_module_ref) },
    { VMAUG_OP_LIST, "list",
      sizeof(struct vmaug_list_req), sizeof(struct vmaug_list_req), NULL },
    { VMAUG_OP_SERVICING_REPORT, "servicing-report",
      sizeof(struct vmaug_servicing_report),
      sizeof(struct vmaug_servicing_report) + VMAUG_SERVICING_MESSAGE_MAX,
      NULL,
      { { offsetof(struct vmaug_servicing_report, bundle), VMAUG_NAME_MAX },
        { offsetof(struct vmaug_servicing_report, version),
          VMAUG_VERSION_MAX } } },
};

static const VMAugmentOp *vmaugment_find_op(uint16_t opcode)
{
    size_t i;

    for (i = 0; i < ARRAY_SIZE(vmaugment_ops); i++) {
        if (vmaugment_ops[i].opcode == opcode) {
            return &vmaugment_ops[i];
        }
    }
    return NULL;
}

/* Check a payload against its opcode's bounds and string fields. */
static uint16_t vmaugment_check_payload(const VMAugmentOp *op,
                                        const uint8_t *payload, uint32_t len,
                                        const char **why)
{
    size_t i;

    if (len > op->max_len && op->max_len > op->min_len) {
        *why = "payload larger than the opcode allows";
        return VMAUG_S_TOO_BIG;
    }
    if (len < op->min_len || len > op->max_len) {
        *why = "payload size does not match the opcode";
        return VMAUG_S_INVALID;
    }
    for (i = 0; i < ARRAY_SIZE(op->strings); i++) {
        if (op->strings[i].size &&
            !memchr(payload + op->strings[i].offset, 0,
                    op->strings[i].size)) {
            *why = "string field is not NUL-terminated";
            return VMAUG_S_INVALID;
        }
    }
    return VMAUG_S_OK;
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

/* ---- The link to the host helper ---- */

static gboolean vmaugment_helper_writable(void *do_not_use, GIOCondition cond,
                                          void *opaque);

static void vmaugment_helper_flush(VirtIOVMAugment *s)
{
    while (vmaugment_out_pending(s)) {
        int chunk = MIN(vmaugment_out_pending(s), INT_MAX);
        int ret = qemu_chr_fe_write(&s->conf.chr, s->out->data + s->out_done,
                                    chunk);

        if (ret <= 0) {
            if (ret < 0 && errno != EAGAIN) {
                /* The chardev reports the hang-up as CHR_EVENT_CLOSED. */
                return;
            }
            if (!s->out_watch) {
                s->out_watch = qemu_chr_fe_add_watch(&s->conf.chr,
                                                     G_IO_OUT | G_IO_HUP,
                                                     vmaugment_helper_writable,
                                                     s);
            }
            return;
        }
        s->out_done += ret;
    }
    g_byte_array_set_size(s->out, 0);
    s->out_done = 0;
}

static gboolean vmaugment_helper_writable(void *do_not_use, GIOCondition cond,
                                          void *opaque)
{
    VirtIOVMAugment *s = opaque;
    bool was_throttled = vmaugment_out_pending(s) > VMAUGMENT_OUT_HIGH_WATER;

    s->out_watch = 0;
    vmaugment_helper_flush(s);
    if (was_throttled &&
        vmaugment_out_pending(s) <= VMAUGMENT_OUT_HIGH_WATER) {
        /* Take the requests the guest queued while we waited. */
        vmaugment_handle_request(VIRTIO_DEVICE(s), s->req_vq);
    }
    return G_SOURCE_REMOVE;
}

void vmaugment_helper_send(VirtIOVMAugment *s, uint16_t type, uint64_t tag,
                           const void *a, size_t alen,
                           const void *b, size_t blen)
{
    struct vmaug_host_msg msg = {
        .magic = cpu_to_le32(VMAUG_HOST_MAGIC),
        .type = cpu_to_le16(type),
        .len = cpu_to_le32(alen + blen),
        .tag = cpu_to_le64(tag),
    };

    if (!s->helper_open) {
        return;
    }
    g_byte_array_append(s->out, (const guint8 *)&msg, sizeof(msg));
    if (alen) {
        g_byte_array_append(s->out, a, alen);
    }
    if (blen) {
        g_byte_array_append(s->out, b, blen);
    }
    /* A pending watch will resume the flush; writing now would reorder. */
    if (!s->out_watch) {
        vmaugment_helper_flush(s);
    }
}

/*
 * Write everything queued, now: for when the main loop will not run again
 * (QEMU is exiting).  Gives up after @timeout_ms on a helper that does
 * not read.
 */
void vmaugment_helper_flush_sync(VirtIOVMAugment *s, int64_t timeout_ms)
{
    int64_t deadline = qemu_clock_get_ms(QEMU_CLOCK_REALTIME) + timeout_ms;

    if (s->out_watch) {
        g_source_remove(s->out_watch);
        s->out_watch = 0;
    }
    while (s->helper_open && vmaugment_out_pending(s)) {
        int ret = qemu_chr_fe_write(&s->conf.chr, s->out->data + s->out_done,
                                    MIN(vmaugment_out_pending(s), INT_MAX));

        if (ret > 0) {
            s->out_done += ret;
            continue;
        }
        if ((ret < 0 && errno != EAGAIN) ||
            qemu_clock_get_ms(QEMU_CLOCK_REALTIME) >= deadline) {
            break;
        }
        g_usleep(1000);
    }
    g_byte_array_set_size(s->out, 0);
    s->out_done = 0;
}

uint64_t vmaugment_next_tag(VirtIOVMAugment *s)
{
    return s->next_tag++;
}

static void vmaugment_helper_hello(VirtIOVMAugment *s)
{
    const char *id = DEVICE(s)->id ? DEVICE(s)->id : "vmaugment";
    const char *store = s->conf.store ? s->conf.store : "";
    const char *image = s->conf.image ? s->conf.image : "";
    struct vmaug_host_hello hello = {
        .proto_version = cpu_to_le32(VMAUG_PROTO_VERSION),
        /* Both at most VMAUG_HOST_PATH_MAX: checked at realize. */
        .store_len = cpu_to_le16(strlen(store)),
        .image_len = cpu_to_le16(strlen(image)),
    };
    g_autofree char *paths = g_strconcat(store, image, NULL);

    pstrcpy((char *)hello.name, sizeof(hello.name), id);
    vmaugment_helper_send(s, VMAUG_HOST_HELLO, 0, &hello, sizeof(hello),
                          paths, strlen(paths));
}

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
    s->n_inflight--;
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

static void vmaugment_relay(VirtIOVMAugment *s, VirtQueueElement *elem,
                            const struct virtio_vmaugment_req *hdr,
                            const uint8_t *payload, uint32_t len)
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
    QTAILQ_INSERT_TAIL(&s->inflight, req, next);
    s->n_inflight++;
    if (s->n_inflight == 1) {
        vmaugment_arm_timeout(s);
    }

    trace_vmaugment_relay(s, req->tag, id, opcode);
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
    const VMAugmentOp *op;
    const uint8_t *payload = s->req_buf + sizeof(hdr);
    g_autofree uint8_t *answer = NULL;
    uint32_t len, answer_len = 0;
    const char *why = NULL;
    uint16_t opcode, status;
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

    /* Copy first, then look: the guest may change its buffers meanwhile. */
    iov_to_buf(elem->out_sg, elem->out_num, 0, s->req_buf, out_size);
    memcpy(&hdr, s->req_buf, sizeof(hdr));
    id = le64_to_cpu(hdr.id);
    opcode = le16_to_cpu(hdr.opcode);
    len = le32_to_cpu(hdr.len);
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
    op = vmaugment_find_op(opcode);
    if (!op) {
        vmaugment_fail(s, elem, id, opcode, VMAUG_S_UNSUPPORTED,
                       "unknown opcode");
        return;
    }
    status = vmaugment_check_payload(op, payload, len, &why);
    if (status == VMAUG_S_OK && vmaugment_host_only(opcode, payload)) {
        status = VMAUG_S_DENIED;
        why = "listing for the host owner only";
    }
    if (status != VMAUG_S_OK) {
        vmaugment_fail(s, elem, id, opcode, status, why);
        return;
    }
    if (!op->local) {
        vmaugment_relay(s, elem, &hdr, payload, len);
        return;
    }

    answer = g_malloc(MAX(len, sizeof(struct vmaug_version_info)));
    status = op->local(s, payload, len, answer, &answer_len);
    vmaugment_complete(s, elem, id, opcode, status, answer, answer_len);
}

static void vmaugment_handle_request(VirtIODevice *vdev, VirtQueue *vq)
{
    VirtIOVMAugment *s = VMAUGMENT(vdev);
    VirtQueueElement *elem;

    while (vmaugment_can_complete(s)) {
        if (vmaugment_out_pending(s) > VMAUGMENT_OUT_HIGH_WATER) {
            /* The helper is slow; the write watch calls us again. */
            trace_vmaugment_relay_throttle(s, vmaugment_out_pending(s));
            return;
        }
        elem = virtqueue_pop(vq, sizeof(VirtQueueElement));
        if (!elem) {
            return;
        }
        vmaugment_process(s, elem);
    }
}

/* ---- Events ---- */

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
    vmaugment_flush_events(s);
}

static void vmaugment_flush_events(VirtIOVMAugment *s)
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

static void vmaugment_handle_event(VirtIODevice *vdev, VirtQueue *vq)
{
    vmaugment_flush_events(VMAUGMENT(vdev));
}

static void vmaugment_drop_events(VirtIOVMAugment *s)
{
    VMAugmentEvent *ev;

    while ((ev = QSIMPLEQ_FIRST(&s->events))) {
        QSIMPLEQ_REMOVE_HEAD(&s->events, next);
        g_free(ev);
    }
    s->n_events = 0;
}

/* ---- Requests from the host (QMP) ---- */

static void vmaugment_admin_wake(VMAugmentAdminCall *call, uint16_t status,
                                 const void *data, uint32_t len)
{
    VirtIOVMAugment *s = call->dev;

    /* The caller may outlive the device: it never touches it again. */
    QTAILQ_REMOVE(&s->admin, call, next);
    timer_free(call->timer);
    call->timer = NULL;
    call->status = status;
    if (len) {
        g_byte_array_append(call->answer, data, len);
    }
    call->done = true;
    aio_co_schedule(qemu_get_aio_context(), call->co);
}

static void vmaugment_admin_timeout(void *opaque)
{
    VMAugmentAdminCall *call = opaque;

    vmaugment_helper_send(call->dev, VMAUG_HOST_CANCEL, call->tag, NULL, 0,
                          NULL, 0);
    vmaugment_admin_wake(call, VMAUG_S_TIMEOUT, NULL, 0);
}

static void vmaugment_admin_interrupt(VirtIOVMAugment *s)
{
    VMAugmentAdminCall *call;

    while ((call = QTAILQ_FIRST(&s->admin))) {
        vmaugment_admin_wake(call, VMAUG_S_INTERRUPTED, NULL, 0);
    }
}

int coroutine_fn vmaugment_admin_call(VirtIOVMAugment *s, uint16_t opcode,
                                      const void *payload, uint32_t len,
                                      GByteArray **answer, Error **errp)
{
    VMAugmentAdminCall call = {
        .dev = s,
        .co = qemu_coroutine_self(),
        .tag = VMAUGMENT_ADMIN_TAG | s->next_tag++,
        .answer = g_byte_array_new(),
    };
    struct virtio_vmaugment_req hdr = {
        .id = cpu_to_le64(call.tag),
        .opcode = cpu_to_le16(opcode),
        .len = cpu_to_le32(len),
    };

    if (!s->helper_ready) {
        error_setg(errp, "vmaugment: the host helper is not connected");
        g_byte_array_unref(call.answer);
        return -1;
    }
    QTAILQ_INSERT_TAIL(&s->admin, &call, next);
    call.timer = timer_new_ms(QEMU_CLOCK_REALTIME, vmaugment_admin_timeout,
                              &call);
    timer_mod(call.timer, qemu_clock_get_ms(QEMU_CLOCK_REALTIME) +
                          s->conf.request_timeout_ms);
    trace_vmaugment_relay(s, call.tag, call.tag, opcode);
    vmaugment_helper_send(s, VMAUG_HOST_REQUEST, call.tag, &hdr, sizeof(hdr),
                          payload, len);

    while (!call.done) {
        qemu_coroutine_yield();
    }
    if (call.status == VMAUG_S_TIMEOUT ||
        call.status == VMAUG_S_INTERRUPTED) {
        error_setg(errp, "vmaugment: the host helper %s",
                   call.status == VMAUG_S_TIMEOUT ? "did not answer in time" :
                   "went away");
        g_byte_array_unref(call.answer);
        return -1;
    }
    *answer = call.answer;
    return call.status;
}

/* ---- Messages from the helper ---- */

static bool vmaugment_helper_response(VirtIOVMAugment *s, uint64_t tag,
                                      const uint8_t *data, uint32_t len,
                                      const char **why)
{
    struct virtio_vmaugment_resp resp;
    VMAugmentRequest *req;
    uint32_t rlen;
    uint16_t status;

    if (len < sizeof(resp)) {
        *why = "response shorter than its header";
        return false;
    }
    memcpy(&resp, data, sizeof(resp));
    rlen = le32_to_cpu(resp.len);
    if (rlen != len - sizeof(resp) || rlen > VMAUG_MAX_RESP_PAYLOAD) {
        *why = "response length does not match the message";
        return false;
    }
    status = le16_to_cpu(resp.status);
    if (status > VMAUG_S_MAX) {
        status = VMAUG_S_INTERNAL;
    }

    if (tag & VMAUGMENT_ADMIN_TAG) {
        VMAugmentAdminCall *call;

        QTAILQ_FOREACH(call, &s->admin, next) {
            if (call->tag == tag) {
                vmaugment_admin_wake(call, status, data + sizeof(resp), rlen);
                return true;
            }
        }
        trace_vmaugment_helper_bad_message(s, "response for unknown tag");
        return true;
    }

    req = vmaugment_find_inflight(s, true, tag);
    if (!req) {
        /* Answer to a request that timed out or was cancelled by reset. */
        trace_vmaugment_helper_bad_message(s, "response for unknown tag");
        return true;
    }
    vmaugment_take_inflight(s, req);
    vmaugment_answer(s, req, status, data + sizeof(resp), rlen);
    vmaugment_arm_timeout(s);
    return true;
}

/* Tell the host owner (QMP) what happened to a module. */
static void vmaugment_module_change(VirtIOVMAugment *s, uint32_t type,
                                    const uint8_t *data, uint32_t len)
{
    static const struct {
        uint32_t type;
        VmaugmentModuleChange change;
    } changes[] = {
        { VMAUG_EVENT_MODULE_LOADED, VMAUGMENT_MODULE_CHANGE_LOADED },
        { VMAUG_EVENT_MODULE_UNLOADED, VMAUGMENT_MODULE_CHANGE_UNLOADED },
        { VMAUG_EVENT_MODULE_CRASHED, VMAUGMENT_MODULE_CHANGE_CRASHED },
        { VMAUG_EVENT_RESTART_REQUESTED,
          VMAUGMENT_MODULE_CHANGE_RESTART_REQUESTED },
        { VMAUG_EVENT_MODULE_REFUSED, VMAUGMENT_MODULE_CHANGE_REFUSED },
    };
    struct vmaug_module_ref ref;
    struct vmaug_restart restart;
    g_autofree char *path = NULL;
    g_autofree char *reason = NULL;
    bool has_restart = false;
    VmaugmentRestart scope = VMAUGMENT_RESTART_IMAGE;
    size_t i;

    for (i = 0; i < ARRAY_SIZE(changes); i++) {
        if (changes[i].type == type) {
            break;
        }
    }
    /* The helper's names must end inside their fields to be shown. */
    if (i == ARRAY_SIZE(changes) || len < sizeof(ref)) {
        return;
    }
    memcpy(&ref, data, sizeof(ref));
    if (!memchr(ref.name, 0, sizeof(ref.name)) ||
        !memchr(ref.version, 0, sizeof(ref.version))) {
        return;
    }
    if (type == VMAUG_EVENT_MODULE_REFUSED) {
        reason = g_strndup((const char *)data + sizeof(ref),
                           MIN(len - sizeof(ref), VMAUG_HOST_MESSAGE_MAX));
        g_strcanon(reason, "abcdefghijklmnopqrstuvwxyz"
                   "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                   "0123456789 .,:;_-+/()'@=<>[]", '?');
    }
    if (type == VMAUG_EVENT_RESTART_REQUESTED) {
        uint32_t what;

        if (len != sizeof(restart)) {
            return;
        }
        memcpy(&restart, data, sizeof(restart));
        what = le32_to_cpu(restart.what);
        if (what != VMAUG_RESTART_IMAGE && what != VMAUG_RESTART_HOST) {
            return;
        }
        has_restart = true;
        scope = what == VMAUG_RESTART_HOST ? VMAUGMENT_RESTART_HOST :
                                             VMAUGMENT_RESTART_IMAGE;
    }
    path = vmaugment_path(s);
    qapi_event_send_vmaugment_module(path, changes[i].change,
                                     (char *)ref.name, (char *)ref.version,
                                     reason, has_restart, scope);
    if (has_restart) {
        vmaugment_lifecycle_restart(s, le32_to_cpu(restart.what));
    }
}

/*
 * Tell the host owner (QMP) that the guest reported an offline update, as
 * the helper accepted and recorded it.
 */
static void vmaugment_servicing_event(VirtIOVMAugment *s,
                                      const uint8_t *data, uint32_t len)
{
    struct vmaug_servicing_report rep;
    g_autofree char *path = NULL;
    g_autofree char *message = NULL;
    uint32_t outcome;

    if (len < sizeof(rep) ||
        len > sizeof(rep) + VMAUG_SERVICING_MESSAGE_MAX) {
        return;
    }
    memcpy(&rep, data, sizeof(rep));
    outcome = le32_to_cpu(rep.outcome);
    /* The helper's strings must end inside their fields to be shown. */
    if (!memchr(rep.bundle, 0, sizeof(rep.bundle)) ||
        !memchr(rep.version, 0, sizeof(rep.version)) ||
        (outcome != VMAUG_SERVICING_CONFIRMED &&
         outcome != VMAUG_SERVICING_FAILED)) {
        return;
    }
    if (len > sizeof(rep)) {
        /* The guest wrote it: shown only in a harmless alphabet. */
        message = g_strndup((const char *)data + sizeof(rep),
                            len - sizeof(rep));
        g_strcanon(message,
                   "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                   "0123456789 .,:;_-+/()'@=<>[]", '?');
    }
    path = vmaugment_path(s);
    qapi_event_send_vmaugment_servicing(path, (char *)rep.bundle,
                                        (char *)rep.version,
                                        outcome == VMAUG_SERVICING_CONFIRMED,
                                        le32_to_cpu(rep.boot), message);
}

static bool vmaugment_helper_event(VirtIOVMAugment *s, const uint8_t *data,
                                   uint32_t len, const char **why)
{
    struct virtio_vmaugment_event ev;
    uint32_t type, elen;

    if (len < sizeof(ev)) {
        *why = "event shorter than its header";
        return false;
    }
    memcpy(&ev, data, sizeof(ev));
    type = le32_to_cpu(ev.type);
    elen = le32_to_cpu(ev.len);
    if (elen != len - sizeof(ev) || elen > VMAUG_MAX_EVENT_PAYLOAD) {
        *why = "event length does not match the message";
        return false;
    }
    if (type == 0 || type > VMAUG_EVENT_MAX) {
        *why = "unknown event type";
        return false;
    }
    vmaugment_module_change(s, type, data + sizeof(ev), elen);
    if (type == VMAUG_EVENT_SERVICING) {
        vmaugment_servicing_event(s, data + sizeof(ev), elen);
    }
    vmaugment_post_event(s, type, data + sizeof(ev), elen);
    return true;
}

static bool vmaugment_helper_message(VirtIOVMAugment *s,
                                     const struct vmaug_host_msg *msg,
                                     const uint8_t *data, const char **why)
{
    uint16_t type = le16_to_cpu(msg->type);
    uint32_t len = le32_to_cpu(msg->len);
    struct vmaug_host_hello hello;

    if (type == VMAUG_HOST_HELLO) {
        if (s->helper_ready || len < sizeof(hello)) {
            *why = "unexpected or short HELLO";
            return false;
        }
        memcpy(&hello, data, sizeof(hello));
        if (le32_to_cpu(hello.proto_version) != VMAUG_PROTO_VERSION) {
            *why = "helper speaks another protocol version";
            return false;
        }
        if (le16_to_cpu(hello.store_len) || le16_to_cpu(hello.image_len) ||
            len != sizeof(hello)) {
            *why = "helper HELLO with paths";
            return false;
        }
        vmaugment_set_helper_ready(s, true);
        vmaugment_lifecycle_helper_ready(s);
        return true;
    }
    if (!s->helper_ready) {
        *why = "message before HELLO";
        return false;
    }
    switch (type) {
    case VMAUG_HOST_RESPONSE:
        return vmaugment_helper_response(s, le64_to_cpu(msg->tag), data, len,
                                         why);
    case VMAUG_HOST_EVENT:
        return vmaugment_helper_event(s, data, len, why);
    case VMAUG_HOST_LIFECYCLE_DONE:
        return vmaugment_lifecycle_done(s, le64_to_cpu(msg->tag), data, len,
                                        why);
    default:
        *why = "unknown message type";
        return false;
    }
}

static void vmaugment_helper_protocol_error(VirtIOVMAugment *s,
                                            const char *why)
{
    trace_vmaugment_helper_bad_message(s, why);
    warn_report("vmaugment: host helper protocol error (%s); disconnecting",
                why);
    vmaugment_helper_closed(s);
    qemu_chr_fe_disconnect(&s->conf.chr);
}

/* Bytes still missing from the message being received. */
static size_t vmaugment_helper_want(VirtIOVMAugment *s)
{
    const struct vmaug_host_msg *msg = (const void *)s->in_buf;

    if (s->in_len < sizeof(*msg)) {
        return sizeof(*msg) - s->in_len;
    }
    return sizeof(*msg) + le32_to_cpu(msg->len) - s->in_len;
}

static int vmaugment_helper_can_read(void *opaque)
{
    VirtIOVMAugment *s = opaque;

    if (!s->helper_open) {
        return 0;
    }
    return vmaugment_helper_want(s);
}

static void vmaugment_helper_read(void *opaque, const uint8_t *buf, int size)
{
    VirtIOVMAugment *s = opaque;
    const struct vmaug_host_msg *msg = (const void *)s->in_buf;
    const char *why = NULL;

    while (size > 0 && s->helper_open) {
        size_t n = MIN((size_t)size, vmaugment_helper_want(s));

        memcpy(s->in_buf + s->in_len, buf, n);
        s->in_len += n;
        buf += n;
        size -= n;

        if (s->in_len == sizeof(*msg) &&
            (le32_to_cpu(msg->magic) != VMAUG_HOST_MAGIC ||
             le32_to_cpu(msg->len) > VMAUG_HOST_MAX_MSG)) {
            /* Checked before buffering the body: the length is hostile. */
            vmaugment_helper_protocol_error(s, "bad message header");
            return;
        }
        if (s->in_len >= sizeof(*msg) && vmaugment_helper_want(s) == 0) {
            s->in_len = 0;
            if (!vmaugment_helper_message(s, msg, s->in_buf + sizeof(*msg),
                                          &why)) {
                vmaugment_helper_protocol_error(s, why);
                return;
            }
        }
    }
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

static void vmaugment_helper_closed(VirtIOVMAugment *s)
{
    if (s->out_watch) {
        g_source_remove(s->out_watch);
        s->out_watch = 0;
    }
    g_byte_array_set_size(s->out, 0);
    s->out_done = 0;
    s->in_len = 0;
    s->helper_open = false;
    vmaugment_set_helper_ready(s, false);
    vmaugment_interrupt_inflight(s);
    vmaugment_admin_interrupt(s);
}

static void vmaugment_helper_event_cb(void *opaque, QEMUChrEvent event)
{
    VirtIOVMAugment *s = opaque;

    switch (event) {
    case CHR_EVENT_OPENED:
        if (!s->helper_open) {
            s->helper_open = true;
            s->in_len = 0;
            vmaugment_helper_hello(s);
        }
        break;
    case CHR_EVENT_CLOSED:
        if (s->helper_open) {
            vmaugment_helper_closed(s);
        }
        break;
    default:
        break;
    }
}

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
    vmaugment_flush_events(s);
    vmaugment_handle_request(VIRTIO_DEVICE(s), s->req_vq);
    if (s->helper_open) {
        /* Reading stopped while the VM was; a response may be waiting. */
        qemu_chr_fe_accept_input(&s->conf.chr);
    }
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
    vmaugment_drop_events(s);
    s->event_mask = VMAUGMENT_DEFAULT_EVENT_MASK;
    s->event_lost = false;
}

static void vmaugment_set_status(VirtIODevice *vdev, uint8_t status)
{
    if (status & VIRTIO_CONFIG_S_DRIVER_OK) {
        vmaugment_flush_events(VMAUGMENT(vdev));
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
    s->in_buf = g_malloc(sizeof(struct vmaug_host_msg) + VMAUG_HOST_MAX_MSG);
    s->out = g_byte_array_new();
    QTAILQ_INIT(&s->inflight);
    QTAILQ_INIT(&s->answered);
    QTAILQ_INIT(&s->admin);
    QSIMPLEQ_INIT(&s->events);
    s->event_mask = VMAUGMENT_DEFAULT_EVENT_MASK;
    s->timeout_timer = timer_new_ns(QEMU_CLOCK_VIRTUAL, vmaugment_timeout, s);
    s->vm_running = runstate_is_running();
    s->resume_bh = virtio_bh_new_guarded(dev, vmaugment_resume_bh, s);
    s->vmstate_change = qemu_add_vm_change_state_handler(
        vmaugment_vm_state_change, s);

    if (qemu_chr_fe_backend_connected(&s->conf.chr)) {
        qemu_chr_fe_set_handlers(&s->conf.chr, vmaugment_helper_can_read,
                                 vmaugment_helper_read,
                                 vmaugment_helper_event_cb, NULL, s, NULL,
                                 true);
    }
}

static void vmaugment_unrealize(DeviceState *dev)
{
    VirtIODevice *vdev = VIRTIO_DEVICE(dev);
    VirtIOVMAugment *s = VMAUGMENT(dev);

    qemu_chr_fe_deinit(&s->conf.chr, false);
    vmaugment_lifecycle_unrealize(s);
    if (s->out_watch) {
        g_source_remove(s->out_watch);
        s->out_watch = 0;
    }
    s->helper_open = false;
    vmaugment_drop_requests(s);
    vmaugment_admin_interrupt(s);
    vmaugment_drop_events(s);
    qemu_del_vm_change_state_handler(s->vmstate_change);
    qemu_bh_delete(s->resume_bh);
    timer_free(s->timeout_timer);
    g_byte_array_free(s->out, true);
    g_free(s->in_buf);
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
    vmaugment_drop_events(s);
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
