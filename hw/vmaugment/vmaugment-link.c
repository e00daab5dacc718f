/*
 * vmaugment device: the link to the host helper
 *
 * Framing ("Host helper link" in the protocol header), the queue of bytes
 * for the helper, the HELLO exchange, the request channel the helper
 * passes with its HELLO, the upload area it may share after it, tag
 * routing and the host owner's own requests
 * (QMP).  The helper is no more trusted than a guest: every
 * header is checked before its body is buffered, and a protocol error
 * ends the connection, never QEMU.  What the helper says reaches the rest
 * of the device through VMAugmentLinkOps; this file calls nothing above
 * it.  docs/protocol.rst is normative.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <sched.h>
#include <sys/mman.h>
#include "qapi/error.h"
#include "qemu/cutils.h"
#include "qemu/error-report.h"
#include "qemu/main-loop.h"
#include "qemu/sockets.h"
#include "hw/vmaugment/vmaugment.h"
#include "trace.h"

/* What one read of the request channel takes: many answers at once. */
#define VMAUGMENT_CHAN_READ         (64 * 1024)
#define VMAUGMENT_AREA_SIZE \
    ((size_t)VMAUG_HOST_AREA_SLOTS * VMAUG_CHUNK_MAX_DATA)
#define VMAUGMENT_AREA_SEALS        (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

static void vmaugment_link_closed(VirtIOVMAugment *s);
static void vmaugment_admin_interrupt(VirtIOVMAugment *s);
static void vmaugment_chan_update(VirtIOVMAugment *s);

static size_t vmaugment_chan_backlog(VirtIOVMAugment *s)
{
    return s->chan_fd >= 0 ? s->chan_out->len - s->chan_out_done : 0;
}

size_t vmaugment_link_backlog(VirtIOVMAugment *s)
{
    return s->out->len - s->out_done + vmaugment_chan_backlog(s);
}

/* A helper's text is shown to the host owner: printable ASCII only. */
char *vmaugment_helper_text(const void *text, size_t len)
{
    char *out = g_strndup(text, len);
    char *p;

    for (p = out; *p; p++) {
        if (*p < 0x20 || *p > 0x7e) {
            *p = '?';
        }
    }
    return out;
}

/* ---- Writing ---- */

static gboolean vmaugment_helper_writable(void *do_not_use, GIOCondition cond,
                                          void *opaque);

static void vmaugment_helper_flush(VirtIOVMAugment *s)
{
    while (vmaugment_link_backlog(s)) {
        int chunk = MIN(vmaugment_link_backlog(s), INT_MAX);
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
    bool was_throttled = vmaugment_link_backlog(s) > VMAUGMENT_OUT_HIGH_WATER;

    s->out_watch = 0;
    vmaugment_helper_flush(s);
    if (was_throttled &&
        vmaugment_link_backlog(s) <= VMAUGMENT_OUT_HIGH_WATER) {
        /* Take the requests the guest queued while we waited. */
        s->link_ops->drained(s);
    }
    return G_SOURCE_REMOVE;
}

/* What travels on the request channel when there is one. */
static bool vmaugment_chan_carries(uint16_t type, uint64_t tag)
{
    return (type == VMAUG_HOST_REQUEST || type == VMAUG_HOST_CANCEL ||
            type == VMAUG_HOST_AREA_REQUEST) &&
           !(tag & VMAUGMENT_ADMIN_TAG);
}

/* Write what the channel did not take yet, as far as it takes it now. */
static void vmaugment_chan_flush(VirtIOVMAugment *s)
{
    while (vmaugment_chan_backlog(s)) {
        ssize_t n = send(s->chan_fd, s->chan_out->data + s->chan_out_done,
                         vmaugment_chan_backlog(s),
                         MSG_DONTWAIT | MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            /*
             * The helper's end is gone.  Not closed from here (a sender may
             * be walking the requests in flight): the main loop reads the
             * channel, finds its end and closes the link.
             */
            g_byte_array_set_size(s->chan_out, 0);
            s->chan_out_done = 0;
            s->chan_watched = true;
            break;
        }
        if (n < 0) {
            break;
        }
        s->chan_out_done += n;
    }
    if (!vmaugment_chan_backlog(s)) {
        g_byte_array_set_size(s->chan_out, 0);
        s->chan_out_done = 0;
    }
    vmaugment_chan_update(s);
}

/*
 * A message on the request channel: written at once when nothing waits
 * before it, by the thread that relays it (the vCPU's for a guest's
 * kick), so that it reaches the helper without a main loop iteration.
 */
static void vmaugment_chan_send(VirtIOVMAugment *s,
                                const struct vmaug_host_msg *msg,
                                const void *a, size_t alen,
                                const void *b, size_t blen)
{
    struct iovec iov[3] = {
        { (void *)msg, sizeof(*msg) }, { (void *)a, alen }, { (void *)b, blen },
    };
    size_t skip = 0;

    if (!vmaugment_chan_backlog(s)) {
        struct msghdr mh = { .msg_iov = iov, .msg_iovlen = ARRAY_SIZE(iov) };
        ssize_t n;

        do {
            n = sendmsg(s->chan_fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
        } while (n < 0 && errno == EINTR);
        if (n >= 0 && (size_t)n == sizeof(*msg) + alen + blen) {
            return;
        }
        skip = n > 0 ? n : 0;
    }
    /* The rest, in order, for the main loop to write. */
    for (size_t i = 0; i < ARRAY_SIZE(iov); i++) {
        size_t from = MIN(skip, iov[i].iov_len);

        g_byte_array_append(s->chan_out, (guint8 *)iov[i].iov_base + from,
                            iov[i].iov_len - from);
        skip -= from;
    }
    vmaugment_chan_flush(s);
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
    if (s->chan_fd >= 0 && vmaugment_chan_carries(type, tag)) {
        vmaugment_chan_send(s, &msg, a, alen, b, blen);
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
    while (s->helper_open && vmaugment_link_backlog(s)) {
        int ret = qemu_chr_fe_write(&s->conf.chr, s->out->data + s->out_done,
                                    MIN(vmaugment_link_backlog(s), INT_MAX));

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

    /* The helper passes the channel with its HELLO: a unix socket only. */
    s->chan_asked = qemu_chr_has_feature(qemu_chr_fe_get_driver(&s->conf.chr),
                                         QEMU_CHAR_FEATURE_FD_PASS);
    s->area_asked = s->chan_asked && s->conf.upload_area;
    hello.flags = cpu_to_le32((s->chan_asked ? VMAUG_HOST_HELLO_F_CHANNEL
                                             : 0) |
                              (s->area_asked ? VMAUG_HOST_HELLO_F_UPLOAD_AREA
                                             : 0));
    pstrcpy((char *)hello.name, sizeof(hello.name), id);
    vmaugment_helper_send(s, VMAUG_HOST_HELLO, 0, &hello, sizeof(hello),
                          paths, strlen(paths));
}

/* ---- The upload area ---- */

int vmaugment_link_area_slot(VirtIOVMAugment *s, uint8_t **data)
{
    int i;

    if (!s->area) {
        return -1;     /* none, or closed with the channel */
    }
    for (i = 0; i < VMAUG_HOST_AREA_SLOTS; i++) {
        if (!s->area_busy[i]) {
            *data = s->area + (size_t)i * VMAUG_CHUNK_MAX_DATA;
            return i;
        }
    }
    return -1;
}

void vmaugment_link_send_area(VirtIOVMAugment *s, uint64_t tag, int slot,
                              const struct virtio_vmaugment_req *hdr,
                              const void *chunk)
{
    struct vmaug_host_area_request ar = { .slot = cpu_to_le32(slot) };
    uint8_t head[sizeof(ar) + sizeof(*hdr)];

    memcpy(head, &ar, sizeof(ar));
    memcpy(head + sizeof(ar), hdr, sizeof(*hdr));
    s->area_busy[slot] = true;
    trace_vmaugment_area_request(s, tag, slot);
    vmaugment_helper_send(s, VMAUG_HOST_AREA_REQUEST, tag, head, sizeof(head),
                          chunk, sizeof(struct vmaug_upload_chunk));
}

/* AREA_RELEASE: the helper is done with a slot, which we may write. */
static bool vmaugment_area_release(VirtIOVMAugment *s, bool chan,
                                   const uint8_t *data, uint32_t len,
                                   const char **why)
{
    struct vmaug_host_area_release rel;
    uint32_t slot;

    if (!chan || len != sizeof(rel)) {
        *why = "AREA_RELEASE off the request channel or of the wrong size";
        return false;
    }
    memcpy(&rel, data, sizeof(rel));
    slot = le32_to_cpu(rel.slot);
    if (slot >= VMAUG_HOST_AREA_SLOTS || !s->area_busy[slot] ||
        rel.reserved) {
        *why = "AREA_RELEASE of a slot not in use";
        return false;
    }
    s->area_busy[slot] = false;
    return true;
}

static void vmaugment_area_close(VirtIOVMAugment *s)
{
    if (s->area) {
        munmap(s->area, VMAUGMENT_AREA_SIZE);
        s->area = NULL;
    }
    memset(s->area_busy, 0, sizeof(s->area_busy));
}

/*
 * The helper's UPLOAD_AREA.  Its descriptor is checked before it is
 * mapped: the size we were told, sealed against shrinking, so that no
 * access of ours beyond the helper's file can fault.  An area that cannot
 * be mapped leaves uploads on the channel.
 */
static bool vmaugment_area_open(VirtIOVMAugment *s, const uint8_t *data,
                                uint32_t len, const char **why)
{
    struct vmaug_host_upload_area ua;
    int fd = qemu_chr_fe_get_msgfd(&s->conf.chr);
    struct stat st;
    void *map;
    int seals;

    if (!s->area_asked || s->chan_fd < 0 || s->area || len != sizeof(ua) ||
        fd < 0) {
        *why = "unexpected UPLOAD_AREA";
        goto fail;
    }
    memcpy(&ua, data, sizeof(ua));
    if (le32_to_cpu(ua.slots) != VMAUG_HOST_AREA_SLOTS ||
        le32_to_cpu(ua.slot_size) != VMAUG_CHUNK_MAX_DATA ||
        fstat(fd, &st) < 0 || st.st_size != VMAUGMENT_AREA_SIZE) {
        *why = "upload area of another size";
        goto fail;
    }
    /* A file that takes no seals (not a memfd) says -1: every bit. */
    seals = fcntl(fd, F_GET_SEALS);
    if (seals < 0 || (seals & VMAUGMENT_AREA_SEALS) != VMAUGMENT_AREA_SEALS) {
        *why = "upload area not sealed";
        goto fail;
    }
    map = mmap(NULL, VMAUGMENT_AREA_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED,
               fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        warn_report("vmaugment: cannot map the upload area: %s; uploads "
                    "take the request channel", strerror(errno));
        return true;
    }
    s->area = map;
    memset(s->area_busy, 0, sizeof(s->area_busy));
    trace_vmaugment_area_open(s);
    return true;

fail:
    if (fd >= 0) {
        close(fd);
    }
    return false;
}

/* ---- Requests of the host owner (QMP) ---- */

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

/* ---- Reading ---- */

static bool vmaugment_helper_response(VirtIOVMAugment *s, bool chan,
                                      uint64_t tag, const uint8_t *data,
                                      uint32_t len, const char **why)
{
    struct virtio_vmaugment_resp resp;
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
    /* Each answer on the side its request took. */
    if (chan != (s->chan_fd >= 0 &&
                 vmaugment_chan_carries(VMAUG_HOST_REQUEST, tag))) {
        *why = chan ? "an answer to the host owner on the request channel"
                    : "an answer to the guest beside the request channel";
        return false;
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

    s->link_ops->response(s, tag, status, data + sizeof(resp), rlen);
    return true;
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
    s->link_ops->event(s, type, data + sizeof(ev), elen);
    return true;
}

/* The channel that came with the helper's HELLO, for guest requests. */
static void vmaugment_chan_open(VirtIOVMAugment *s, int fd)
{
    qemu_socket_set_nonblock(fd);
    s->chan_fd = fd;
    s->chan_in_len = 0;
    s->chan_watched = false;
    trace_vmaugment_chan_open(s, fd);
}

static bool vmaugment_helper_hello_msg(VirtIOVMAugment *s, const uint8_t *data,
                                       uint32_t len, const char **why)
{
    struct vmaug_host_hello hello;
    uint32_t flags;
    int fd = qemu_chr_fe_get_msgfd(&s->conf.chr);

    if (s->helper_ready || len < sizeof(hello)) {
        *why = "unexpected or short HELLO";
        goto fail;
    }
    memcpy(&hello, data, sizeof(hello));
    if (le32_to_cpu(hello.proto_version) != VMAUG_PROTO_VERSION) {
        *why = "helper speaks another protocol version";
        goto fail;
    }
    if (le16_to_cpu(hello.store_len) || le16_to_cpu(hello.image_len) ||
        len != sizeof(hello)) {
        *why = "helper HELLO with paths";
        goto fail;
    }
    flags = le32_to_cpu(hello.flags);
    if ((flags & ~VMAUG_HOST_HELLO_F_CHANNEL) || hello.reserved) {
        *why = "helper HELLO with unknown flags";
        goto fail;
    }
    /* Without our flag the helper keeps to the link, channel or not. */
    if ((flags & VMAUG_HOST_HELLO_F_CHANNEL) && s->chan_asked) {
        if (fd < 0) {
            *why = "helper HELLO without its request channel";
            return false;
        }
        vmaugment_chan_open(s, fd);
        fd = -1;
    }
    if (fd >= 0) {
        close(fd);
    }
    s->link_ops->ready(s, true);
    return true;

fail:
    if (fd >= 0) {
        close(fd);
    }
    return false;
}

static bool vmaugment_helper_message(VirtIOVMAugment *s, bool chan,
                                     const struct vmaug_host_msg *msg,
                                     const uint8_t *data, const char **why)
{
    uint16_t type = le16_to_cpu(msg->type);
    uint32_t len = le32_to_cpu(msg->len);

    if (chan && type != VMAUG_HOST_RESPONSE &&
        type != VMAUG_HOST_AREA_RELEASE) {
        *why = "not an answer on the request channel";
        return false;
    }
    if (type == VMAUG_HOST_HELLO) {
        return vmaugment_helper_hello_msg(s, data, len, why);
    }
    if (!s->helper_ready) {
        *why = "message before HELLO";
        return false;
    }
    switch (type) {
    case VMAUG_HOST_RESPONSE:
        return vmaugment_helper_response(s, chan, le64_to_cpu(msg->tag), data,
                                         len, why);
    case VMAUG_HOST_EVENT:
        return vmaugment_helper_event(s, data, len, why);
    case VMAUG_HOST_LIFECYCLE_DONE:
        return s->link_ops->lifecycle_done(s, le64_to_cpu(msg->tag), data,
                                           len, why);
    case VMAUG_HOST_IMAGE_ACCESS:
        return s->link_ops->image_access(s, le64_to_cpu(msg->tag), data,
                                         len, why);
    case VMAUG_HOST_UPLOAD_AREA:
        return vmaugment_area_open(s, data, len, why);
    case VMAUG_HOST_AREA_RELEASE:
        return vmaugment_area_release(s, chan, data, len, why);
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
    vmaugment_link_closed(s);
    qemu_chr_fe_disconnect(&s->conf.chr);
}

/* Bytes still missing from the message being received into @buf. */
static size_t vmaugment_want(const uint8_t *buf, size_t have)
{
    const struct vmaug_host_msg *msg = (const void *)buf;

    if (have < sizeof(*msg)) {
        return sizeof(*msg) - have;
    }
    return sizeof(*msg) + le32_to_cpu(msg->len) - have;
}

static size_t vmaugment_helper_want(VirtIOVMAugment *s)
{
    return vmaugment_want(s->in_buf, s->in_len);
}

static int vmaugment_helper_can_read(void *opaque)
{
    VirtIOVMAugment *s = opaque;

    if (!s->helper_open) {
        return 0;
    }
    /*
     * More than the message being received: the chardev then hands over
     * a whole small message, or several, per main loop iteration instead
     * of the header in one and the body in the next.  The reader takes
     * bytes message by message, so in_buf never holds more than one.
     */
    return MAX(vmaugment_helper_want(s), CHR_READ_BUF_LEN);
}

/*
 * Bytes from the helper, on the link or (@chan) the request channel, taken
 * message by message.  Stops when the link closed meanwhile.
 */
static void vmaugment_link_take(VirtIOVMAugment *s, bool chan,
                                const uint8_t *buf, size_t size)
{
    uint8_t *in = chan ? s->chan_in_buf : s->in_buf;
    size_t *in_len = chan ? &s->chan_in_len : &s->in_len;
    const struct vmaug_host_msg *msg = (const void *)in;
    const char *why = NULL;

    while (size > 0 && s->helper_open && (!chan || s->chan_fd >= 0)) {
        size_t n = MIN(size, vmaugment_want(in, *in_len));

        memcpy(in + *in_len, buf, n);
        *in_len += n;
        buf += n;
        size -= n;

        if (*in_len == sizeof(*msg) &&
            (le32_to_cpu(msg->magic) != VMAUG_HOST_MAGIC ||
             le32_to_cpu(msg->len) > VMAUG_HOST_MAX_MSG)) {
            /* Checked before buffering the body: the length is hostile. */
            vmaugment_helper_protocol_error(s, "bad message header");
            return;
        }
        if (*in_len >= sizeof(*msg) && vmaugment_want(in, *in_len) == 0) {
            *in_len = 0;
            if (!vmaugment_helper_message(s, chan, msg, in + sizeof(*msg),
                                          &why)) {
                vmaugment_helper_protocol_error(s, why);
                return;
            }
        }
    }
}

static void vmaugment_helper_read(void *opaque, const uint8_t *buf, int size)
{
    vmaugment_link_take(opaque, false, buf, size);
}

/* ---- The request channel's reading ---- */

/* Take what the channel holds now; at its end, the link closes too. */
static void vmaugment_chan_read(VirtIOVMAugment *s)
{
    while (s->chan_fd >= 0) {
        ssize_t n = recv(s->chan_fd, s->chan_rbuf, VMAUGMENT_CHAN_READ,
                         MSG_DONTWAIT);

        if (n > 0) {
            vmaugment_link_take(s, true, s->chan_rbuf, n);
            if (n < VMAUGMENT_CHAN_READ) {
                return;         /* most likely all there was */
            }
            continue;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        }
        /* The helper went away, or closed its end: both are its. */
        trace_vmaugment_chan_closed(s, n < 0 ? errno : 0);
        vmaugment_link_closed(s);
        qemu_chr_fe_disconnect(&s->conf.chr);
        return;
    }
}

static void vmaugment_chan_readable(void *opaque)
{
    vmaugment_chan_read(opaque);
}

static void vmaugment_chan_writable(void *opaque)
{
    VirtIOVMAugment *s = opaque;
    bool was_throttled = vmaugment_link_backlog(s) > VMAUGMENT_OUT_HIGH_WATER;

    vmaugment_chan_flush(s);
    if (was_throttled &&
        vmaugment_link_backlog(s) <= VMAUGMENT_OUT_HIGH_WATER) {
        s->link_ops->drained(s);
    }
}

/*
 * The main loop's handlers, changed only when what they should be
 * changes: each change wakes the main loop.
 */
static void vmaugment_chan_update(VirtIOVMAugment *s)
{
    bool read_on = s->chan_fd >= 0 && s->chan_watched;
    bool write_on = vmaugment_chan_backlog(s) > 0;

    if (s->chan_fd < 0 ||
        (read_on == s->chan_read_on && write_on == s->chan_write_on)) {
        return;
    }
    s->chan_read_on = read_on;
    s->chan_write_on = write_on;
    qemu_set_fd_handler(s->chan_fd, read_on ? vmaugment_chan_readable : NULL,
                        write_on ? vmaugment_chan_writable : NULL, s);
}

static void vmaugment_chan_close(VirtIOVMAugment *s)
{
    if (s->chan_fd < 0) {
        return;
    }
    if (s->chan_read_on || s->chan_write_on) {
        qemu_set_fd_handler(s->chan_fd, NULL, NULL, NULL);
    }
    close(s->chan_fd);
    s->chan_fd = -1;
    s->chan_read_on = s->chan_write_on = s->chan_watched = false;
    g_byte_array_set_size(s->chan_out, 0);
    s->chan_out_done = 0;
    s->chan_in_len = 0;
    /* The area came for the channel's uploads, and goes with it. */
    vmaugment_area_close(s);
}

bool vmaugment_link_has_channel(VirtIOVMAugment *s)
{
    return s->chan_fd >= 0;
}

bool vmaugment_link_wait(VirtIOVMAugment *s, int64_t deadline_ns)
{
    GPollFD pfd = { .events = G_IO_IN | G_IO_HUP | G_IO_ERR };
    int64_t now = qemu_clock_get_ns(QEMU_CLOCK_REALTIME);
    int64_t spin_end = MIN(deadline_ns, now + VMAUGMENT_RELAY_SPIN_NS);
    int n;

    if (s->chan_fd < 0 || now >= deadline_ns) {
        return false;
    }
    pfd.fd = s->chan_fd;
    /*
     * Polled first, as an IOThread's poll mode does: a thread put to
     * sleep is woken by the other CPU, which in a VM host costs an
     * interrupt; a relayed QUERY is answered within this.  Then asleep.
     * The CPU is yielded meanwhile: the helper or the module's process
     * that answers may be waiting for this very CPU, and would otherwise
     * wait out the poll.
     */
    while ((n = qemu_poll_ns(&pfd, 1, 0)) == 0 &&
           qemu_clock_get_ns(QEMU_CLOCK_REALTIME) < spin_end) {
        sched_yield();
    }
    if (n == 0) {
        /* Not negative: that would be no bound at all, with the BQL held. */
        int64_t left = deadline_ns - qemu_clock_get_ns(QEMU_CLOCK_REALTIME);

        n = left > 0 ? qemu_poll_ns(&pfd, 1, left) : 0;
    }
    if (n <= 0) {
        return false;
    }
    vmaugment_chan_read(s);
    return s->chan_fd >= 0;
}

void vmaugment_link_watch(VirtIOVMAugment *s, bool on)
{
    if (s->chan_fd >= 0 && s->chan_watched != on) {
        s->chan_watched = on;
        vmaugment_chan_update(s);
    }
}

static void vmaugment_link_closed(VirtIOVMAugment *s)
{
    if (s->out_watch) {
        g_source_remove(s->out_watch);
        s->out_watch = 0;
    }
    g_byte_array_set_size(s->out, 0);
    s->out_done = 0;
    s->in_len = 0;
    vmaugment_chan_close(s);
    s->helper_open = false;
    /* What waits for the helper fails: it cannot answer any more. */
    s->link_ops->ready(s, false);
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
            vmaugment_link_closed(s);
        }
        break;
    default:
        break;
    }
}

/* ---- Setting up ---- */

void vmaugment_link_init(VirtIOVMAugment *s, const VMAugmentLinkOps *ops)
{
    s->link_ops = ops;
    s->in_buf = g_malloc(sizeof(struct vmaug_host_msg) + VMAUG_HOST_MAX_MSG);
    s->out = g_byte_array_new();
    s->chan_fd = -1;
    s->chan_in_buf = g_malloc(sizeof(struct vmaug_host_msg) +
                              VMAUG_HOST_MAX_MSG);
    s->chan_rbuf = g_malloc(VMAUGMENT_CHAN_READ);
    s->chan_out = g_byte_array_new();
    QTAILQ_INIT(&s->admin);
    if (qemu_chr_fe_backend_connected(&s->conf.chr)) {
        qemu_chr_fe_set_handlers(&s->conf.chr, vmaugment_helper_can_read,
                                 vmaugment_helper_read,
                                 vmaugment_helper_event_cb, NULL, s, NULL,
                                 true);
    }
}

void vmaugment_link_resume(VirtIOVMAugment *s)
{
    if (s->helper_open) {
        /* Reading stopped while the VM was; a response may be waiting. */
        qemu_chr_fe_accept_input(&s->conf.chr);
    }
}

void vmaugment_link_cleanup(VirtIOVMAugment *s)
{
    qemu_chr_fe_deinit(&s->conf.chr, false);
    if (s->out_watch) {
        g_source_remove(s->out_watch);
        s->out_watch = 0;
    }
    vmaugment_chan_close(s);
    s->helper_open = false;
    vmaugment_admin_interrupt(s);
    g_byte_array_free(s->out, true);
    s->out = NULL;
    g_free(s->in_buf);
    s->in_buf = NULL;
    g_byte_array_free(s->chan_out, true);
    s->chan_out = NULL;
    g_free(s->chan_in_buf);
    s->chan_in_buf = NULL;
    g_free(s->chan_rbuf);
    s->chan_rbuf = NULL;
}
