/*
 * QTest testcases for the vmaugment virtio device
 *
 * The tests drive the device as a guest driver would, and, where a host
 * helper is needed, play the helper's side of the socket protocol with
 * the helper double of libqos/vmaugment.c (qvmh_*).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <sys/socket.h>
#include <sys/un.h>
#include <poll.h>
#include "libqtest-single.h"
#include "qemu/bswap.h"
#include "qemu/module.h"
#include "standard-headers/linux/pci_regs.h"
#include "libqos/qgraph.h"
#include "libqos/pci.h"
#include "libqos/vmaugment.h"
#include "qobject/qdict.h"
#include "qobject/qlist.h"
#include "qobject/qstring.h"
#include "standard-headers/linux/virtio_config.h"
#include "standard-headers/linux/virtio_ring.h"
#include "standard-headers/linux/virtio_vmaugment.h"
#include "standard-headers/vmaugment/host-link.h"

#define VMAUG_TEST_TIMEOUT_US   (30 * 1000 * 1000)
#define VMAUG_TEST_RESP_MAX     8192


/* A request handed to the device and not yet collected. */
typedef struct Call {
    uint64_t out_addr;
    uint64_t in_addr;
    size_t in_size;
    uint32_t head;
} Call;

typedef struct Reply {
    struct virtio_vmaugment_resp hdr;
    uint8_t data[VMAUG_TEST_RESP_MAX];
    uint32_t used_len;
} Reply;

static Call submit_raw(QVMAugment *aug, const void *out, size_t out_size,
                       size_t in_size)
{
    QTestState *qts = global_qtest;
    Call c = { .in_size = in_size };

    c.out_addr = guest_alloc(aug->alloc, MAX(out_size, 1));
    c.in_addr = guest_alloc(aug->alloc, MAX(in_size, 1));
    qtest_memwrite(qts, c.out_addr, out, out_size);
    c.head = qvirtqueue_add(qts, aug->reqq, c.out_addr, out_size, false,
                            in_size != 0);
    if (in_size) {
        qvirtqueue_add(qts, aug->reqq, c.in_addr, in_size, true, false);
    }
    qvirtqueue_kick(qts, aug->vdev, aug->reqq, c.head);
    return c;
}

static Call submit(QVMAugment *aug, uint64_t id, uint16_t opcode,
                   const void *payload, uint32_t len, size_t in_size)
{
    g_autofree uint8_t *buf = g_malloc0(sizeof(struct virtio_vmaugment_req) +
                                        len);
    struct virtio_vmaugment_req hdr = {
        .id = cpu_to_le64(id),
        .opcode = cpu_to_le16(opcode),
        .len = cpu_to_le32(len),
    };

    memcpy(buf, &hdr, sizeof(hdr));
    if (len) {
        memcpy(buf + sizeof(hdr), payload, len);
    }
    return submit_raw(aug, buf, sizeof(hdr) + len, in_size);
}

static bool device_broken(QVMAugment *aug)
{
    return aug->vdev->bus->get_status(aug->vdev) &
           VIRTIO_CONFIG_S_NEEDS_RESET;
}

/* Wait for the answer to @c; an answered request never breaks the device. */
static void collect(QVMAugment *aug, Call *c, Reply *r)
{
    QTestState *qts = global_qtest;

    memset(r, 0, sizeof(*r));
    qvirtio_wait_used_elem(qts, aug->vdev, aug->reqq, c->head, &r->used_len,
                           VMAUG_TEST_TIMEOUT_US);
    g_assert_cmpuint(r->used_len, >=, sizeof(r->hdr));
    g_assert_cmpuint(r->used_len, <=, c->in_size);
    qtest_memread(qts, c->in_addr, &r->hdr, sizeof(r->hdr));
    g_assert_cmpuint(r->used_len - sizeof(r->hdr), <=, sizeof(r->data));
    qtest_memread(qts, c->in_addr + sizeof(r->hdr), r->data,
                  r->used_len - sizeof(r->hdr));
    guest_free(aug->alloc, c->out_addr);
    guest_free(aug->alloc, c->in_addr);
    g_assert(!device_broken(aug));
}

/* An error reply carries exactly @msg, and the used length covers it. */
static void assert_message(const Reply *r, const char *msg)
{
    size_t len = strlen(msg);

    g_assert_cmpuint(le32_to_cpu(r->hdr.len), ==, len);
    g_assert_cmpuint(r->used_len, ==, sizeof(r->hdr) + len);
    g_assert_cmpmem(r->data, len, msg, len);
}

/* A reply with @status and nothing after its header. */
static void assert_empty(const Reply *r, uint16_t status)
{
    g_assert_cmpuint(le16_to_cpu(r->hdr.status), ==, status);
    g_assert_cmpuint(le32_to_cpu(r->hdr.len), ==, 0);
    g_assert_cmpuint(r->used_len, ==, sizeof(r->hdr));
}

/* Send one request and return the response status. */
static uint16_t call(QVMAugment *aug, uint64_t id, uint16_t opcode,
                     const void *payload, uint32_t len, Reply *r)
{
    Call c = submit(aug, id, opcode, payload, len,
                    sizeof(r->hdr) + VMAUG_TEST_RESP_MAX);

    collect(aug, &c, r);
    g_assert_cmpuint(le64_to_cpu(r->hdr.id), ==, id);
    g_assert_cmpuint(le16_to_cpu(r->hdr.opcode), ==, opcode);
    return le16_to_cpu(r->hdr.status);
}

static uint16_t send_version(QVMAugment *aug, struct vmaug_version_info *info)
{
    Reply r;
    uint16_t status = call(aug, 1, VMAUG_OP_VERSION, NULL, 0, &r);

    if (status == VMAUG_S_OK) {
        g_assert_cmpuint(le32_to_cpu(r.hdr.len), ==, sizeof(*info));
        g_assert_cmpuint(r.used_len, ==, sizeof(r.hdr) + sizeof(*info));
        memcpy(info, r.data, sizeof(*info));
    }
    return status;
}

static uint16_t send_ping(QVMAugment *aug, uint64_t id, const void *data,
                          uint32_t len, Reply *r)
{
    return call(aug, id, VMAUG_OP_PING, data, len, r);
}

static uint16_t send_subscribe(QVMAugment *aug, uint32_t mask,
                               uint32_t reserved, uint32_t *new_mask)
{
    struct vmaug_subscribe sub = {
        .mask = cpu_to_le32(mask),
        .reserved = cpu_to_le32(reserved),
    };
    Reply r;
    uint16_t status = call(aug, 2, VMAUG_OP_SUBSCRIBE, &sub, sizeof(sub), &r);

    if (status == VMAUG_S_OK) {
        g_assert_cmpuint(le32_to_cpu(r.hdr.len), ==, sizeof(sub));
        g_assert_cmpuint(r.used_len, ==, sizeof(r.hdr) + sizeof(sub));
        memcpy(&sub, r.data, sizeof(sub));
        *new_mask = le32_to_cpu(sub.mask);
    } else {
        /* The device refuses a SUBSCRIBE without a message. */
        assert_empty(&r, status);
    }
    return status;
}

static struct vmaug_module_ref module_ref(const char *name,
                                          const char *version)
{
    struct vmaug_module_ref ref = {};

    g_strlcpy((char *)ref.name, name, sizeof(ref.name));
    g_strlcpy((char *)ref.version, version, sizeof(ref.version));
    return ref;
}

static Call submit_query(QVMAugment *aug, uint64_t id, const char *name)
{
    struct vmaug_module_ref ref = module_ref(name, "1.0");

    return submit(aug, id, VMAUG_OP_QUERY, &ref, sizeof(ref),
                  sizeof(struct virtio_vmaugment_resp) + VMAUG_TEST_RESP_MAX);
}

static uint16_t send_query(QVMAugment *aug, uint64_t id, const char *name,
                           Reply *r)
{
    Call c = submit_query(aug, id, name);

    collect(aug, &c, r);
    g_assert_cmpuint(le64_to_cpu(r->hdr.id), ==, id);
    return le16_to_cpu(r->hdr.status);
}

/* The device's messages for requests it fails on the helper's behalf. */
#define MSG_UNAVAILABLE     "host helper not connected"
#define MSG_INTERRUPTED     "interrupted: host helper lost or VM restored"

/* @resp is a GenericError saying exactly @desc; frees @resp. */
static void assert_qmp_error(QDict *resp, const char *desc)
{
    QDict *err = qdict_get_qdict(resp, "error");

    g_assert(err);
    g_assert_cmpstr(qdict_get_str(err, "class"), ==, "GenericError");
    g_assert_cmpstr(qdict_get_str(err, "desc"), ==, desc);
    qobject_unref(resp);
}

static void assert_qemu_alive(void)
{
    QDict *resp = qmp("{ 'execute': 'query-status' }");

    g_assert(qdict_haskey(resp, "return"));
    qobject_unref(resp);
}

/* ---- Identity, features, config ---- */

static void test_pci_ids(void *obj, void *data, QGuestAllocator *t_alloc)
{
    QVMAugment *aug = obj;
    QVirtioPCIDevice *vpci = container_of(aug->vdev, QVirtioPCIDevice, vdev);

    /*
     * Literals, not the shared header: what the virtio spec (modern PCI ID
     * 0x1040 + device ID 63, revision 1 or higher for a non-transitional
     * device) and Linux's virtio_pci_modern (0x1040 to 0x107f) expect.
     */
    g_assert_cmphex(qpci_config_readw(vpci->pdev, PCI_VENDOR_ID), ==, 0x1af4);
    g_assert_cmphex(qpci_config_readw(vpci->pdev, PCI_DEVICE_ID), ==, 0x107f);
    g_assert_cmphex(qpci_config_readb(vpci->pdev, PCI_REVISION_ID), ==, 1);
    g_assert_cmpint(aug->vdev->device_type, ==, 63);
}

static void test_features(void *obj, void *data, QGuestAllocator *t_alloc)
{
    QVMAugment *aug = obj;
    uint64_t features = qvirtio_get_features(aug->vdev);

    g_assert(features & (1ull << VIRTIO_VMAUGMENT_F_EVENTS));
    g_assert(features & (1ull << VIRTIO_F_VERSION_1));
    g_assert_cmphex(aug->vdev->features & (1ull << VIRTIO_VMAUGMENT_F_EVENTS),
                    !=, 0);
}

static void test_config(void *obj, void *data, QGuestAllocator *t_alloc)
{
    QVMAugment *aug = obj;
    QVirtioDevice *vdev = aug->vdev;

    g_assert_cmpuint(qvirtio_config_readl(vdev,
        offsetof(struct virtio_vmaugment_config, proto_version)), ==,
        VMAUG_PROTO_VERSION);
    g_assert_cmpuint(qvirtio_config_readl(vdev,
        offsetof(struct virtio_vmaugment_config, helper_state)), ==,
        VMAUG_HELPER_DISCONNECTED);
    g_assert_cmpuint(qvirtio_config_readl(vdev,
        offsetof(struct virtio_vmaugment_config, max_req_payload)), ==,
        VMAUG_MAX_REQ_PAYLOAD);
    g_assert_cmpuint(qvirtio_config_readl(vdev,
        offsetof(struct virtio_vmaugment_config, max_resp_payload)), ==,
        VMAUG_MAX_RESP_PAYLOAD);
}

/* ---- Requests the device answers ---- */

static void test_version(void *obj, void *data, QGuestAllocator *t_alloc)
{
    struct vmaug_version_info info;

    g_assert_cmpuint(send_version(obj, &info), ==, VMAUG_S_OK);
    g_assert_cmpuint(le32_to_cpu(info.proto_version), ==,
                     VMAUG_PROTO_VERSION);
    g_assert_cmpuint(le32_to_cpu(info.helper_state), ==,
                     VMAUG_HELPER_DISCONNECTED);
    g_assert(memchr(info.device, 0, sizeof(info.device)));
    g_assert(g_str_has_prefix((char *)info.device, "vmaugment"));
}

static void test_ping(void *obj, void *data, QGuestAllocator *t_alloc)
{
    static const uint32_t sizes[] = { 0, 1, 64, VMAUG_MAX_PING_PAYLOAD };
    g_autofree uint8_t *buf = g_malloc(VMAUG_MAX_PING_PAYLOAD + 1);
    Reply r;
    size_t i;

    for (i = 0; i < VMAUG_MAX_PING_PAYLOAD + 1; i++) {
        buf[i] = i * 7;
    }
    for (i = 0; i < ARRAY_SIZE(sizes); i++) {
        g_assert_cmpuint(send_ping(obj, 100 + i, buf, sizes[i], &r), ==,
                         VMAUG_S_OK);
        g_assert_cmpuint(le32_to_cpu(r.hdr.len), ==, sizes[i]);
        g_assert_cmpuint(r.used_len, ==, sizeof(r.hdr) + sizes[i]);
        g_assert(memcmp(r.data, buf, sizes[i]) == 0);
    }
    g_assert_cmpuint(send_ping(obj, 200, buf, VMAUG_MAX_PING_PAYLOAD + 1, &r),
                     ==, VMAUG_S_TOO_BIG);
    assert_message(&r, "payload larger than the opcode allows");
}

static void test_subscribe(void *obj, void *data, QGuestAllocator *t_alloc)
{
    uint32_t mask = 0;
    uint32_t want = VMAUG_EVENT_MASK(VMAUG_EVENT_IMAGE_STOP) |
                    VMAUG_EVENT_MASK(VMAUG_EVENT_MODULE_LOADED);

    g_assert_cmpuint(send_subscribe(obj, want, 0, &mask), ==, VMAUG_S_OK);
    g_assert_cmphex(mask, ==, want);
    /* Bit 0 is no event type. */
    g_assert_cmpuint(send_subscribe(obj, 1, 0, &mask), ==, VMAUG_S_OK);
    g_assert_cmphex(mask, ==, 0);
    g_assert_cmpuint(send_subscribe(obj, want, 1, &mask), ==,
                     VMAUG_S_INVALID);
}

static void test_no_space(void *obj, void *data, QGuestAllocator *t_alloc)
{
    QVMAugment *aug = obj;
    uint8_t payload[100] = { 1, 2, 3 };
    Call c = submit(aug, 5, VMAUG_OP_PING, payload, sizeof(payload),
                    sizeof(struct virtio_vmaugment_resp) + 10);
    Reply r;

    collect(aug, &c, &r);
    g_assert_cmpuint(le16_to_cpu(r.hdr.status), ==, VMAUG_S_NO_SPACE);
    g_assert_cmpuint(le32_to_cpu(r.hdr.len), ==, sizeof(payload));
    g_assert_cmpuint(r.used_len, ==, sizeof(r.hdr));
}

static void test_helper_unavailable(void *obj, void *data,
                                    QGuestAllocator *t_alloc)
{
    Reply r;

    g_assert_cmpuint(send_query(obj, 9, "printer", &r), ==,
                     VMAUG_S_UNAVAILABLE);
    g_assert_cmphex(le16_to_cpu(r.hdr.opcode), ==, VMAUG_OP_QUERY);
    assert_message(&r, MSG_UNAVAILABLE);
}

/* ---- Malformed requests get an error status ---- */

/*
 * Send raw bytes as a request; the reply must echo @id and @opcode and
 * refuse it with @status and exactly @msg.
 */
static void assert_raw_refused(QVMAugment *aug, const void *out,
                               size_t out_size, uint64_t id, uint16_t opcode,
                               uint16_t status, const char *msg)
{
    Call c = submit_raw(aug, out, out_size,
                        sizeof(struct virtio_vmaugment_resp) + 64);
    Reply r;

    collect(aug, &c, &r);
    g_assert_cmpuint(le64_to_cpu(r.hdr.id), ==, id);
    g_assert_cmphex(le16_to_cpu(r.hdr.opcode), ==, opcode);
    g_assert_cmpuint(le16_to_cpu(r.hdr.status), ==, status);
    assert_message(&r, msg);
}

static void test_short_header(void *obj, void *data, QGuestAllocator *t_alloc)
{
    uint8_t junk[sizeof(struct virtio_vmaugment_req) - 1] = { 0x02 };

    /* Nothing of the header is read: no id or opcode to echo. */
    assert_raw_refused(obj, junk, sizeof(junk), 0, 0, VMAUG_S_INVALID,
                       "request shorter than its header");
}

static void test_oversize(void *obj, void *data, QGuestAllocator *t_alloc)
{
    size_t size = sizeof(struct virtio_vmaugment_req) +
                  VMAUG_MAX_REQ_PAYLOAD + 1;
    g_autofree uint8_t *buf = g_malloc0(size);
    struct virtio_vmaugment_req hdr = {
        .id = cpu_to_le64(77),
        .opcode = cpu_to_le16(VMAUG_OP_INVOKE),
        .len = cpu_to_le32(VMAUG_MAX_REQ_PAYLOAD + 1),
    };

    memcpy(buf, &hdr, sizeof(hdr));
    assert_raw_refused(obj, buf, size, 77, VMAUG_OP_INVOKE, VMAUG_S_TOO_BIG,
                       "request larger than the device accepts");
}

static void test_length_mismatch(void *obj, void *data,
                                 QGuestAllocator *t_alloc)
{
    static const char why[] = "header length differs from the buffer size";
    uint8_t buf[sizeof(struct virtio_vmaugment_req) + 8] = {};
    struct virtio_vmaugment_req hdr = {
        .id = cpu_to_le64(13),
        .opcode = cpu_to_le16(VMAUG_OP_PING),
        .len = cpu_to_le32(9),
    };

    memcpy(buf, &hdr, sizeof(hdr));
    assert_raw_refused(obj, buf, sizeof(buf), 13, VMAUG_OP_PING,
                       VMAUG_S_INVALID, why);
    hdr.len = cpu_to_le32(0xffffffff);
    memcpy(buf, &hdr, sizeof(hdr));
    assert_raw_refused(obj, buf, sizeof(buf), 13, VMAUG_OP_PING,
                       VMAUG_S_INVALID, why);
}

static void test_bad_flags(void *obj, void *data, QGuestAllocator *t_alloc)
{
    struct virtio_vmaugment_req hdr = {
        .id = cpu_to_le64(14),
        .opcode = cpu_to_le16(VMAUG_OP_PING),
        .flags = cpu_to_le16(0x8000),
    };

    assert_raw_refused(obj, &hdr, sizeof(hdr), 14, VMAUG_OP_PING,
                       VMAUG_S_INVALID, "reserved flags set");
}

static void test_unknown_opcode(void *obj, void *data,
                                QGuestAllocator *t_alloc)
{
    Reply r;

    g_assert_cmpuint(call(obj, 3, 0x7777, NULL, 0, &r), ==,
                     VMAUG_S_UNSUPPORTED);
    assert_message(&r, "unknown opcode");
    g_assert_cmpuint(call(obj, 4, 0, NULL, 0, &r), ==, VMAUG_S_UNSUPPORTED);
    assert_message(&r, "unknown opcode");
}

static void test_bad_payload(void *obj, void *data, QGuestAllocator *t_alloc)
{
    struct vmaug_module_ref ref;
    Reply r;

    /* A fixed-size request one byte short. */
    ref = module_ref("printer", "1.0");
    g_assert_cmpuint(call(obj, 6, VMAUG_OP_QUERY, &ref, sizeof(ref) - 1, &r),
                     ==, VMAUG_S_INVALID);
    assert_message(&r, "payload size does not match the opcode");
    /* A name that does not end inside its field. */
    memset(ref.name, 'a', sizeof(ref.name));
    g_assert_cmpuint(call(obj, 7, VMAUG_OP_LOAD, &ref, sizeof(ref), &r), ==,
                     VMAUG_S_INVALID);
    assert_message(&r, "string field is not NUL-terminated");
    /* VERSION takes no payload. */
    g_assert_cmpuint(call(obj, 8, VMAUG_OP_VERSION, &ref, 4, &r), ==,
                     VMAUG_S_INVALID);
    assert_message(&r, "payload size does not match the opcode");
}

static void test_wrong_direction(void *obj, void *data,
                                 QGuestAllocator *t_alloc)
{
    static const char why[] = "request shorter than its header";
    QVMAugment *aug = obj;
    QTestState *qts = global_qtest;
    struct virtio_vmaugment_req hdr = {
        .id = cpu_to_le64(15),
        .opcode = cpu_to_le16(VMAUG_OP_PING),
    };
    uint64_t addr = guest_alloc(aug->alloc, 256);
    uint32_t head, len;
    struct virtio_vmaugment_resp resp;
    char msg[sizeof(why)];

    /*
     * The request sits in a buffer the device may only write: it has no
     * readable bytes, so it is refused as short, without id or opcode.
     */
    qtest_memwrite(qts, addr, &hdr, sizeof(hdr));
    head = qvirtqueue_add(qts, aug->reqq, addr, 256, true, false);
    qvirtqueue_kick(qts, aug->vdev, aug->reqq, head);
    qvirtio_wait_used_elem(qts, aug->vdev, aug->reqq, head, &len,
                           VMAUG_TEST_TIMEOUT_US);
    g_assert_cmpuint(len, ==, sizeof(resp) + strlen(why));
    qtest_memread(qts, addr, &resp, sizeof(resp));
    g_assert_cmpuint(le64_to_cpu(resp.id), ==, 0);
    g_assert_cmpuint(le16_to_cpu(resp.opcode), ==, 0);
    g_assert_cmpuint(le16_to_cpu(resp.status), ==, VMAUG_S_INVALID);
    g_assert_cmpuint(le32_to_cpu(resp.len), ==, strlen(why));
    qtest_memread(qts, addr + sizeof(resp), msg, strlen(why));
    g_assert_cmpmem(msg, strlen(why), why, strlen(why));
    g_assert(!device_broken(aug));
    guest_free(aug->alloc, addr);
}

/* ---- Ring-protocol violations break the device, never QEMU ---- */

static uint16_t used_idx(QVirtQueue *vq)
{
    return qtest_readw(global_qtest, vq->used + 2);
}

/*
 * Wait for the device to mark itself broken, and check that it handed
 * nothing back on @vq: the violating chain is detached, not answered.
 */
static void wait_broken(QVMAugment *aug, QVirtQueue *vq, uint16_t used)
{
    gint64 end = g_get_monotonic_time() + VMAUG_TEST_TIMEOUT_US;

    while (!device_broken(aug)) {
        g_assert(g_get_monotonic_time() < end);
        qtest_clock_step(global_qtest, 100);
    }
    g_assert_cmpuint(used_idx(vq), ==, used);
    assert_qemu_alive();
}

static void test_zero_length(void *obj, void *data, QGuestAllocator *t_alloc)
{
    /*
     * virtio core refuses zero-sized descriptors before the device sees
     * them; that is a ring violation and breaks the device.
     */
    QVMAugment *aug = obj;
    uint16_t used = used_idx(aug->reqq);

    submit_raw(aug, NULL, 0, sizeof(struct virtio_vmaugment_resp));
    wait_broken(aug, aug->reqq, used);
}

static void test_missing_response(void *obj, void *data,
                                  QGuestAllocator *t_alloc)
{
    QVMAugment *aug = obj;
    struct virtio_vmaugment_req hdr = { .opcode = cpu_to_le16(VMAUG_OP_PING) };
    uint16_t used = used_idx(aug->reqq);

    submit_raw(aug, &hdr, sizeof(hdr), 0);
    wait_broken(aug, aug->reqq, used);
}

static void test_short_response(void *obj, void *data,
                                QGuestAllocator *t_alloc)
{
    QVMAugment *aug = obj;
    struct virtio_vmaugment_req hdr = { .opcode = cpu_to_le16(VMAUG_OP_PING) };
    uint16_t used = used_idx(aug->reqq);

    submit_raw(aug, &hdr, sizeof(hdr),
               sizeof(struct virtio_vmaugment_resp) - 1);
    wait_broken(aug, aug->reqq, used);
}

static void test_looped_chain(void *obj, void *data, QGuestAllocator *t_alloc)
{
    QVMAugment *aug = obj;
    QTestState *qts = global_qtest;
    uint64_t addr = guest_alloc(aug->alloc, 64);
    uint16_t used = used_idx(aug->reqq);
    uint32_t head;
    uint64_t last;

    /*
     * Two descriptors whose second points back at the first: a chain
     * longer than any queue.
     */
    head = qvirtqueue_add(qts, aug->reqq, addr, 32, false, true);
    qvirtqueue_add(qts, aug->reqq, addr + 32, 32, true, false);
    last = aug->reqq->desc + 16 * ((head + 1) % aug->reqq->size);
    qtest_writew(qts, last + 12, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT);
    qtest_writew(qts, last + 14, head);
    qvirtqueue_kick(qts, aug->vdev, aug->reqq, head);
    wait_broken(aug, aug->reqq, used);
}

/* ---- Tests that play the host helper ---- */

static void *helper_before(GString *cmd_line, void *arg)
{
    QVMAugmentHelper *h = qvmh_new();

    g_string_append_printf(cmd_line, " -chardev socket,id=vmaug-helper,path=%s",
                           h->path);
    h->cmdline = g_strdup(cmd_line->str);
    g_test_queue_destroy(qvmh_free, h);
    return h;
}

/*
 * Wait until the device reports the helper as @state.  Reads config space
 * rather than sending VERSION: libqos never reuses descriptors, so a busy
 * loop of requests would run out of them.
 */
static void wait_helper_state(QVMAugment *aug, uint32_t state)
{
    gint64 end = g_get_monotonic_time() + VMAUG_TEST_TIMEOUT_US;
    struct vmaug_version_info info;

    while (qvirtio_config_readl(aug->vdev,
               offsetof(struct virtio_vmaugment_config, helper_state)) !=
           state) {
        g_assert(g_get_monotonic_time() < end);
        g_usleep(1000);
    }
    g_assert_cmpuint(send_version(aug, &info), ==, VMAUG_S_OK);
    g_assert_cmpuint(le32_to_cpu(info.helper_state), ==, state);
}

/* Connect as the helper of a VM that runs, and prepare its image. */
static void helper_connect(QVMAugmentHelper *h, QVMAugment *aug)
{
    g_autofree char *image = qvmh_hello(h);

    g_assert_cmpstr(image, ==, "");
    qvmh_start_done(h, VMAUG_S_OK, NULL);
    wait_helper_state(aug, VMAUG_HELPER_CONNECTED);
}

static void test_helper_relay(void *obj, void *data, QGuestAllocator *t_alloc)
{
    QVMAugment *aug = obj;
    QVMAugmentHelper *h = data;
    struct vmaug_module_info info = {
        .ref = module_ref("printer", "1.0"),
        .kind = cpu_to_le32(VMAUG_KIND_COMMUNICATION),
        .state = cpu_to_le32(VMAUG_MODULE_STORED),
    };
    Call c;
    Reply r;
    uint64_t tag;

    helper_connect(h, aug);
    c = submit_query(aug, 42, "printer");
    tag = qvmh_expect_query(h, 42, "printer");
    qvmh_respond(h, tag, VMAUG_S_OK, &info, sizeof(info));
    collect(aug, &c, &r);
    g_assert_cmpuint(le64_to_cpu(r.hdr.id), ==, 42);
    g_assert_cmpuint(le16_to_cpu(r.hdr.opcode), ==, VMAUG_OP_QUERY);
    g_assert_cmpuint(le16_to_cpu(r.hdr.status), ==, VMAUG_S_OK);
    g_assert_cmpuint(le32_to_cpu(r.hdr.len), ==, sizeof(info));
    g_assert_cmpuint(r.used_len, ==, sizeof(r.hdr) + sizeof(info));
    g_assert(memcmp(r.data, &info, sizeof(info)) == 0);

    /* A status the protocol does not know becomes an internal error. */
    c = submit_query(aug, 43, "scanner");
    tag = qvmh_expect_query(h, 43, "scanner");
    qvmh_respond(h, tag, 999, NULL, 0);
    collect(aug, &c, &r);
    g_assert_cmpuint(le64_to_cpu(r.hdr.id), ==, 43);
    assert_empty(&r, VMAUG_S_INTERNAL);
}

static void test_helper_id_reuse(void *obj, void *data,
                                 QGuestAllocator *t_alloc)
{
    QVMAugment *aug = obj;
    QVMAugmentHelper *h = data;
    Call first, second;
    Reply r;
    uint64_t tag;

    helper_connect(h, aug);
    first = submit_query(aug, 7, "printer");
    tag = qvmh_expect_query(h, 7, "printer");
    second = submit_query(aug, 7, "printer");
    collect(aug, &second, &r);
    g_assert_cmpuint(le64_to_cpu(r.hdr.id), ==, 7);
    g_assert_cmpuint(le16_to_cpu(r.hdr.status), ==, VMAUG_S_BUSY);
    assert_message(&r, "request id already in flight");

    qvmh_respond(h, tag, VMAUG_S_NOT_FOUND, NULL, 0);
    collect(aug, &first, &r);
    g_assert_cmpuint(le64_to_cpu(r.hdr.id), ==, 7);
    assert_empty(&r, VMAUG_S_NOT_FOUND);

    /* Once answered, the id may be used again. */
    first = submit_query(aug, 7, "printer");
    tag = qvmh_expect_query(h, 7, "printer");
    qvmh_respond(h, tag, VMAUG_S_OK, NULL, 0);
    collect(aug, &first, &r);
    g_assert_cmpuint(le64_to_cpu(r.hdr.id), ==, 7);
    assert_empty(&r, VMAUG_S_OK);
}

static void test_helper_timeout(void *obj, void *data,
                                QGuestAllocator *t_alloc)
{
    QVMAugment *aug = obj;
    QVMAugmentHelper *h = data;
    struct vmaug_host_msg msg;
    uint8_t buf[64];
    Call c;
    Reply r;
    uint64_t tag;

    helper_connect(h, aug);
    c = submit_query(aug, 11, "slow");
    tag = qvmh_expect_query(h, 11, "slow");
    qtest_clock_step(global_qtest, 1001 * 1000 * 1000);
    collect(aug, &c, &r);
    g_assert_cmpuint(le64_to_cpu(r.hdr.id), ==, 11);
    g_assert_cmpuint(le16_to_cpu(r.hdr.status), ==, VMAUG_S_TIMEOUT);
    assert_message(&r, "host helper did not answer in time");

    /* The helper learns the answer is no longer wanted... */
    g_assert_cmpuint(qvmh_recv(h, &msg, buf, sizeof(buf)), ==, 0);
    g_assert_cmpuint(le16_to_cpu(msg.type), ==, VMAUG_HOST_CANCEL);
    g_assert_cmpuint(le64_to_cpu(msg.tag), ==, tag);
    /* ...and a late answer is dropped without harm. */
    qvmh_respond(h, tag, VMAUG_S_OK, NULL, 0);
    c = submit_query(aug, 12, "slow");
    tag = qvmh_expect_query(h, 12, "slow");
    qvmh_respond(h, tag, VMAUG_S_NOT_FOUND, NULL, 0);
    collect(aug, &c, &r);
    g_assert_cmpuint(le64_to_cpu(r.hdr.id), ==, 12);
    assert_empty(&r, VMAUG_S_NOT_FOUND);
}

static void test_helper_disconnect(void *obj, void *data,
                                   QGuestAllocator *t_alloc)
{
    QVMAugment *aug = obj;
    QVMAugmentHelper *h = data;
    Call c;
    Reply r;

    helper_connect(h, aug);
    c = submit_query(aug, 21, "printer");
    qvmh_expect_query(h, 21, "printer");
    close(h->fd);
    h->fd = -1;
    collect(aug, &c, &r);
    g_assert_cmpuint(le64_to_cpu(r.hdr.id), ==, 21);
    g_assert_cmpuint(le16_to_cpu(r.hdr.status), ==, VMAUG_S_INTERRUPTED);
    assert_message(&r, MSG_INTERRUPTED);
    wait_helper_state(aug, VMAUG_HELPER_DISCONNECTED);
    g_assert_cmpuint(send_query(aug, 22, "printer", &r), ==,
                     VMAUG_S_UNAVAILABLE);
    assert_message(&r, MSG_UNAVAILABLE);
}

/* A helper that breaks the protocol is cut off; the guest carries on. */
static void helper_garbage(QVMAugmentHelper *h, QVMAugment *aug,
                           const void *bytes, size_t len)
{
    Call c;
    Reply r;
    char eof;

    helper_connect(h, aug);
    c = submit_query(aug, 31, "printer");
    qvmh_expect_query(h, 31, "printer");
    g_assert_cmpint(write(h->fd, bytes, len), ==, len);
    collect(aug, &c, &r);
    g_assert_cmpuint(le64_to_cpu(r.hdr.id), ==, 31);
    g_assert_cmpuint(le16_to_cpu(r.hdr.status), ==, VMAUG_S_INTERRUPTED);
    assert_message(&r, MSG_INTERRUPTED);
    qvmh_wait_fd(h->fd, POLLIN);
    g_assert_cmpint(read(h->fd, &eof, 1), ==, 0);
    g_assert_cmpuint(send_query(aug, 32, "printer", &r), ==,
                     VMAUG_S_UNAVAILABLE);
    assert_message(&r, MSG_UNAVAILABLE);
    assert_qemu_alive();
}

static void test_helper_bad_magic(void *obj, void *data,
                                  QGuestAllocator *t_alloc)
{
    uint8_t junk[sizeof(struct vmaug_host_msg)];

    memset(junk, 0xa5, sizeof(junk));
    helper_garbage(data, obj, junk, sizeof(junk));
}

static void test_helper_oversize(void *obj, void *data,
                                 QGuestAllocator *t_alloc)
{
    struct vmaug_host_msg msg = {
        .magic = cpu_to_le32(VMAUG_HOST_MAGIC),
        .type = cpu_to_le16(VMAUG_HOST_RESPONSE),
        .len = cpu_to_le32(0xfffffff0),
    };

    helper_garbage(data, obj, &msg, sizeof(msg));
}

static void test_helper_bad_response(void *obj, void *data,
                                     QGuestAllocator *t_alloc)
{
    struct {
        struct vmaug_host_msg msg;
        struct virtio_vmaugment_resp resp;
    } QEMU_PACKED bad = {
        .msg = {
            .magic = cpu_to_le32(VMAUG_HOST_MAGIC),
            .type = cpu_to_le16(VMAUG_HOST_RESPONSE),
            .len = cpu_to_le32(sizeof(struct virtio_vmaugment_resp)),
        },
        /* claims a payload the message does not carry */
        .resp = { .len = cpu_to_le32(100) },
    };

    helper_garbage(data, obj, &bad, sizeof(bad));
}

/* Post one event buffer and return the event written into it. */
static uint32_t next_event(QVMAugment *aug, struct virtio_vmaugment_event *ev,
                           void *payload, size_t size)
{
    QTestState *qts = global_qtest;
    size_t buf_size = sizeof(*ev) + VMAUG_MAX_EVENT_PAYLOAD;
    uint64_t addr = guest_alloc(aug->alloc, buf_size);
    uint32_t head, len;

    head = qvirtqueue_add(qts, aug->eventq, addr, buf_size, true, false);
    qvirtqueue_kick(qts, aug->vdev, aug->eventq, head);
    qvirtio_wait_used_elem(qts, aug->vdev, aug->eventq, head, &len,
                           VMAUG_TEST_TIMEOUT_US);
    qtest_memread(qts, addr, ev, sizeof(*ev));
    g_assert_cmpuint(len, ==, sizeof(*ev) + le32_to_cpu(ev->len));
    g_assert_cmpuint(le32_to_cpu(ev->len), <=, size);
    qtest_memread(qts, addr + sizeof(*ev), payload, le32_to_cpu(ev->len));
    guest_free(aug->alloc, addr);
    return le32_to_cpu(ev->type);
}

static void test_helper_events(void *obj, void *data,
                               QGuestAllocator *t_alloc)
{
    QVMAugment *aug = obj;
    QVMAugmentHelper *h = data;
    struct vmaug_module_ref ref = module_ref("scanner", "2.1");
    struct virtio_vmaugment_event ev = {
        .type = cpu_to_le32(VMAUG_EVENT_MODULE_LOADED),
        .len = cpu_to_le32(sizeof(ref)),
    };
    struct virtio_vmaugment_event got;
    struct vmaug_module_ref got_ref;
    uint32_t mask;
    uint64_t seq;

    helper_connect(h, aug);
    g_assert_cmpuint(next_event(aug, &got, &got_ref, sizeof(got_ref)), ==,
                     VMAUG_EVENT_HELPER_CONNECTED);
    seq = le64_to_cpu(got.seq);

    qvmh_send(h, VMAUG_HOST_EVENT, 0, &ev, sizeof(ev), &ref, sizeof(ref));
    g_assert_cmpuint(next_event(aug, &got, &got_ref, sizeof(got_ref)), ==,
                     VMAUG_EVENT_MODULE_LOADED);
    g_assert_cmpuint(le64_to_cpu(got.seq), ==, seq + 1);
    g_assert_cmpuint(le32_to_cpu(got.flags), ==, 0);
    g_assert_cmpstr((char *)got_ref.name, ==, "scanner");

    /* Unsubscribed events are not delivered. */
    g_assert_cmpuint(send_subscribe(aug,
                     VMAUG_EVENT_MASK(VMAUG_EVENT_MODULE_CRASHED), 0,
                     &mask), ==, VMAUG_S_OK);
    qvmh_send(h, VMAUG_HOST_EVENT, 0, &ev, sizeof(ev), &ref, sizeof(ref));
    ev.type = cpu_to_le32(VMAUG_EVENT_MODULE_CRASHED);
    qvmh_send(h, VMAUG_HOST_EVENT, 0, &ev, sizeof(ev), &ref, sizeof(ref));
    g_assert_cmpuint(next_event(aug, &got, &got_ref, sizeof(got_ref)), ==,
                     VMAUG_EVENT_MODULE_CRASHED);
    g_assert_cmpuint(le64_to_cpu(got.seq), ==, seq + 2);
}

static void test_helper_event_buffer_small(void *obj, void *data,
                                           QGuestAllocator *t_alloc)
{
    QVMAugment *aug = obj;
    QTestState *qts = global_qtest;
    uint64_t addr = guest_alloc(aug->alloc, 64);
    uint16_t used = used_idx(aug->eventq);
    uint32_t head;

    /*
     * HELPER_CONNECTED is pending; a buffer too small for it is a ring
     * protocol violation.
     */
    helper_connect(data, aug);
    head = qvirtqueue_add(qts, aug->eventq, addr, 64, true, false);
    qvirtqueue_kick(qts, aug->vdev, aug->eventq, head);
    wait_broken(aug, aug->eventq, used);
    guest_free(aug->alloc, addr);
}

static void wait_migration(QTestState *qts, const char *want)
{
    gint64 end = g_get_monotonic_time() + VMAUG_TEST_TIMEOUT_US;

    for (;;) {
        QDict *resp = qtest_qmp(qts, "{ 'execute': 'query-migrate' }");
        QDict *ret = qdict_get_qdict(resp, "return");
        const char *status = qdict_haskey(ret, "status") ?
                             qdict_get_str(ret, "status") : "none";
        bool done = strcmp(status, want) == 0;

        g_assert_cmpstr(status, !=, "failed");
        qobject_unref(resp);
        if (done) {
            return;
        }
        g_assert(g_get_monotonic_time() < end);
        g_usleep(10000);
    }
}

/*
 * A request in flight when the VM migrates travels with it and is failed
 * with VMAUG_S_INTERRUPTED on the destination, whose helper never saw it.
 */
static void test_helper_migrate(void *obj, void *data,
                                QGuestAllocator *t_alloc)
{
    QVMAugment *aug = obj;
    QVMAugmentHelper *h = data;
    QTestState *src = global_qtest;
    QTestState *dst;
    g_autofree char *file = g_build_filename(h->dir, "migration", NULL);
    g_autofree char *out_uri = g_strdup_printf("exec:cat > %s", file);
    g_autofree char *in_uri = g_strdup_printf("exec:cat %s", file);
    struct virtio_vmaugment_resp resp;
    uint64_t used = aug->reqq->used;
    uint16_t used_idx;
    gint64 end;
    uint32_t elem_id;
    QDict *r;
    Call c;

    helper_connect(h, aug);
    c = submit_query(aug, 51, "printer");
    qvmh_expect_query(h, 51, "printer");
    used_idx = aug->reqq->last_used_idx;

    r = qtest_qmp(src, "{ 'execute': 'migrate', 'arguments': { 'uri': %s } }",
                  out_uri);
    g_assert(qdict_haskey(r, "return"));
    qobject_unref(r);
    wait_migration(src, "completed");

    dst = qtest_initf("%s -incoming defer", h->cmdline);
    r = qtest_qmp(dst, "{ 'execute': 'migrate-incoming',"
                       "  'arguments': { 'uri': %s } }", in_uri);
    g_assert(qdict_haskey(r, "return"));
    qobject_unref(r);
    wait_migration(dst, "completed");

    /* The destination answers the request as soon as it runs. */
    end = g_get_monotonic_time() + VMAUG_TEST_TIMEOUT_US;
    while (qtest_readw(dst, used + 2) == used_idx) {
        g_assert(g_get_monotonic_time() < end);
        qtest_clock_step(dst, 100);
    }
    elem_id = qtest_readl(dst, used + 4 + 8 * (used_idx % aug->reqq->size));
    g_assert_cmpuint(elem_id, ==, c.head);
    g_assert_cmpuint(qtest_readl(dst, used + 8 + 8 * (used_idx %
                                                      aug->reqq->size)),
                     ==, sizeof(resp) + strlen(MSG_INTERRUPTED));
    qtest_memread(dst, c.in_addr, &resp, sizeof(resp));
    g_assert_cmpuint(le64_to_cpu(resp.id), ==, 51);
    g_assert_cmphex(le16_to_cpu(resp.opcode), ==, VMAUG_OP_QUERY);
    g_assert_cmpuint(le16_to_cpu(resp.status), ==, VMAUG_S_INTERRUPTED);
    g_assert_cmpuint(le32_to_cpu(resp.len), ==, strlen(MSG_INTERRUPTED));
    qtest_quit(dst);
    unlink(file);
}

/*
 * A guest address on the pc machine's PCI bus where nothing is mapped.
 * QEMU maps a buffer there through a bounce buffer, of which a PCI device
 * has VMAUG_TEST_BOUNCE bytes (its x-max-bounce-buffer-size): a mapping
 * the device never gives back keeps it, and the next buffer there cannot
 * be mapped.
 */
#define VMAUG_TEST_UNMAPPED     0x10000000ULL
#define VMAUG_TEST_BOUNCE       4096

/* A QUERY whose response buffer is all of the bounce buffer. */
static uint32_t submit_query_unmapped(QVMAugment *aug, uint64_t id,
                                      uint64_t *out_addr)
{
    QTestState *qts = global_qtest;
    struct {
        struct virtio_vmaugment_req hdr;
        struct vmaug_module_ref ref;
    } QEMU_PACKED req = {
        .hdr = {
            .id = cpu_to_le64(id),
            .opcode = cpu_to_le16(VMAUG_OP_QUERY),
            .len = cpu_to_le32(sizeof(req.ref)),
        },
        .ref = module_ref("printer", "1.0"),
    };
    uint32_t head;

    *out_addr = guest_alloc(aug->alloc, sizeof(req));
    qtest_memwrite(qts, *out_addr, &req, sizeof(req));
    head = qvirtqueue_add(qts, aug->reqq, *out_addr, sizeof(req), false,
                          true);
    qvirtqueue_add(qts, aug->reqq, VMAUG_TEST_UNMAPPED, VMAUG_TEST_BOUNCE,
                   true, false);
    qvirtqueue_kick(qts, aug->vdev, aug->reqq, head);
    return head;
}

static int64_t requests_in_flight(QTestState *qts)
{
    QDict *resp = qtest_qmp(qts, "{ 'execute': 'query-vmaugment' }");
    QDict *info = qobject_to(QDict, qlist_peek(qdict_get_qlist(resp,
                                                               "return")));
    int64_t n = qdict_get_int(info, "requests-in-flight");

    qobject_unref(resp);
    return n;
}

/*
 * A reset while the helper holds requests drops them (the helper is told
 * to cancel each) and gives back every buffer they had mapped: requests
 * whose buffers need the bounce buffer still map afterwards.
 */
static void test_helper_reset_in_flight(void *obj, void *data,
                                        QGuestAllocator *t_alloc)
{
    QVMAugment *aug = obj;
    QVMAugmentHelper *h = data;
    QTestState *qts = global_qtest;
    struct vmaug_host_msg msg;
    uint8_t buf[64];
    uint64_t tags[2], tag, out;
    uint32_t head, len;
    Call c;
    Reply r;
    int i;

    /* Outside RAM: what is written there does not read back. */
    qtest_writeb(qts, VMAUG_TEST_UNMAPPED, 0xa5);
    g_assert_cmphex(qtest_readb(qts, VMAUG_TEST_UNMAPPED), ==, 0);

    helper_connect(h, aug);
    submit_query_unmapped(aug, 81, &out);
    g_assert(!device_broken(aug));
    tags[0] = qvmh_expect_query(h, 81, "printer");
    guest_free(aug->alloc, out);
    c = submit_query(aug, 82, "scanner");
    tags[1] = qvmh_expect_query(h, 82, "scanner");
    g_assert_cmpint(requests_in_flight(qts), ==, 2);

    qvmaugment_reset(aug);
    for (i = 0; i < ARRAY_SIZE(tags); i++) {
        g_assert_cmpuint(qvmh_recv(h, &msg, buf, sizeof(buf)), ==, 0);
        g_assert_cmpuint(le16_to_cpu(msg.type), ==, VMAUG_HOST_CANCEL);
        g_assert_cmpuint(le64_to_cpu(msg.tag), ==, tags[i]);
    }
    g_assert_cmpint(requests_in_flight(qts), ==, 0);
    guest_free(aug->alloc, c.out_addr);
    guest_free(aug->alloc, c.in_addr);
    /* An answer to a dropped request goes nowhere. */
    qvmh_respond(h, tags[0], VMAUG_S_OK, NULL, 0);

    head = submit_query_unmapped(aug, 83, &out);
    g_assert(!device_broken(aug));
    tag = qvmh_expect_query(h, 83, "printer");
    qvmh_respond(h, tag, VMAUG_S_NOT_FOUND, NULL, 0);
    qvirtio_wait_used_elem(qts, aug->vdev, aug->reqq, head, &len,
                           VMAUG_TEST_TIMEOUT_US);
    g_assert_cmpuint(len, ==, sizeof(struct virtio_vmaugment_resp));
    g_assert_cmpuint(used_idx(aug->reqq), ==, 1);
    guest_free(aug->alloc, out);

    c = submit_query(aug, 84, "scanner");
    tag = qvmh_expect_query(h, 84, "scanner");
    qvmh_respond(h, tag, VMAUG_S_NOT_FOUND, NULL, 0);
    collect(aug, &c, &r);
    g_assert_cmpuint(le64_to_cpu(r.hdr.id), ==, 84);
    assert_empty(&r, VMAUG_S_NOT_FOUND);
    g_assert_cmpint(requests_in_flight(qts), ==, 0);
}

/* ---- A hostile migration stream ---- */

/*
 * The ids of two requests in flight.  The stream carries them big endian
 * and guest RAM little endian, so each occurs once in the stream: where
 * its request starts in the device's section.
 */
#define VMAUG_TEST_MARK0        0x564d415547303030ULL   /* "VMAUG000" */
#define VMAUG_TEST_MARK1        0x564d415547303031ULL   /* "VMAUG001" */

/*
 * Where the fields of a migrated request lie from its id on
 * (vmaugment_put_one() in hw/vmaugment/vmaugment.c); the count of
 * requests precedes the first.
 */
#define REQ_COUNT               (-4)    /* be32 */
#define REQ_HEAD                10      /* be32 */
#define REQ_NDESCS              14      /* be32 */
#define REQ_IN_NUM              18      /* be32 */
#define REQ_ADDR0               22      /* be64 */
#define REQ_LEN0                30      /* be32 */
#define REQ_SIZE1               34      /* with one response buffer */

static size_t stream_find(const uint8_t *buf, size_t len, uint64_t id)
{
    uint64_t be = cpu_to_be64(id);
    const uint8_t *at = memmem(buf, len, &be, sizeof(be));

    g_assert(at);
    g_assert(!memmem(at + 1, len - (at + 1 - buf), &be, sizeof(be)));
    return at - buf;
}

/* Wait for an incoming migration to end; returns its status. */
static char *wait_incoming(QTestState *qts, char **desc)
{
    gint64 end = g_get_monotonic_time() + VMAUG_TEST_TIMEOUT_US;

    for (;;) {
        QDict *resp = qtest_qmp(qts, "{ 'execute': 'query-migrate' }");
        QDict *ret = qdict_get_qdict(resp, "return");
        const char *status = qdict_haskey(ret, "status") ?
                             qdict_get_str(ret, "status") : "none";

        if (!strcmp(status, "completed") || !strcmp(status, "failed")) {
            char *s = g_strdup(status);

            *desc = g_strdup(qdict_haskey(ret, "error-desc") ?
                             qdict_get_str(ret, "error-desc") : "");
            qobject_unref(resp);
            return s;
        }
        qobject_unref(resp);
        g_assert(g_get_monotonic_time() < end);
        g_usleep(10000);
    }
}

/*
 * Feed @stream to a new destination QEMU.  With @why it must refuse the
 * stream, say "vmaugment: refusing the migration stream: @why", and stay
 * up; without, it must load it.  The destination's helper link is a null
 * chardev: the helper plays no part.
 */
static void incoming_stream(QVMAugmentHelper *h, const uint8_t *stream,
                            size_t len, const char *why)
{
    g_autofree char *file = g_build_filename(h->dir, "stream", NULL);
    g_autofree char *log = g_build_filename(h->dir, "stderr", NULL);
    g_autofree char *uri = g_strdup_printf("exec:cat %s", file);
    g_autofree char *sock = g_strdup_printf(
        "-chardev socket,id=vmaug-helper,path=%s", h->path);
    const char *at = strstr(h->cmdline, sock);
    g_autofree char *status = NULL;
    g_autofree char *desc = NULL;
    g_autofree char *out = NULL;
    g_autofree char *line = NULL;
    QTestState *dst;
    QDict *r;
    int fd, saved;

    g_assert(at);
    g_assert(g_file_set_contents(file, (const char *)stream, len, NULL));
    fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    g_assert_cmpint(fd, >=, 0);
    saved = dup(STDERR_FILENO);
    g_assert_cmpint(saved, >=, 0);
    /* QEMU keeps the stderr it starts with: a file, to read its reports. */
    g_assert_cmpint(dup2(fd, STDERR_FILENO), ==, STDERR_FILENO);
    dst = qtest_initf("%.*s-chardev null,id=vmaug-helper%s -incoming defer",
                      (int)(at - h->cmdline), h->cmdline, at + strlen(sock));
    g_assert_cmpint(dup2(saved, STDERR_FILENO), ==, STDERR_FILENO);
    close(saved);
    close(fd);

    r = qtest_qmp(dst, "{ 'execute': 'migrate-incoming', 'arguments': {"
                       "  'uri': %s, 'exit-on-error': false } }", uri);
    g_assert(qdict_haskey(r, "return"));
    qobject_unref(r);
    status = wait_incoming(dst, &desc);
    g_assert_cmpstr(status, ==, why ? "failed" : "completed");
    if (why) {
        g_assert_cmpstr(desc, ==, "load of migration failed: Invalid argument");
    }
    r = qtest_qmp(dst, "{ 'execute': 'query-status' }");
    g_assert_cmpstr(qdict_get_str(qdict_get_qdict(r, "return"), "status"),
                    ==, why ? "inmigrate" : "running");
    qobject_unref(r);
    qtest_quit(dst);

    g_assert(g_file_get_contents(log, &out, NULL, NULL));
    if (why) {
        line = g_strdup_printf(": vmaugment: refusing the migration stream: "
                               "%s\n", why);
        g_assert_cmpstr(strstr(out, line), !=, NULL);
    } else {
        g_assert_cmpstr(strstr(out, "refusing"), ==, NULL);
    }
    unlink(log);
    unlink(file);
}

/*
 * A migration stream is untrusted: a destination fed a stream whose
 * requests in flight were tampered with refuses it with a migration
 * error and the reason, and never exits or aborts.
 */
static void test_helper_migrate_hostile(void *obj, void *data,
                                        QGuestAllocator *t_alloc)
{
    static const struct {
        int field[2];
        int size[2];
        uint64_t value[2];
        const char *why;
    } cases[] = {
        { { REQ_IN_NUM }, { 4 }, { 0x7fffffff },
          "request 0: 2147483647 response buffers (1 to 1024 allowed)" },
        { { REQ_IN_NUM }, { 4 }, { 0 },
          "request 0: 0 response buffers (1 to 1024 allowed)" },
        { { REQ_LEN0 }, { 4 }, { 0 },
          "request 0: an empty response buffer" },
        { { REQ_LEN0 }, { 4 }, { 8 },
          "request 0: 8 bytes of response buffers, too small for a "
          "response header" },
        /* Outside RAM: more than the bounce buffer holds. */
        { { REQ_ADDR0, REQ_LEN0 }, { 8, 4 }, { VMAUG_TEST_UNMAPPED, 65536 },
          "request 0: cannot map 65536 bytes at 0x10000000" },
        /* Across the end of the pc machine's 128 MiB of RAM. */
        { { REQ_ADDR0, REQ_LEN0 }, { 8, 4 }, { 0x7fff000, 8192 },
          "request 0: cannot map 8192 bytes at 0x7fff000" },
    };
    QVMAugment *aug = obj;
    QVMAugmentHelper *h = data;
    g_autofree char *file = g_build_filename(h->dir, "migration", NULL);
    g_autofree char *out_uri = g_strdup_printf("exec:cat > %s", file);
    g_autofree uint8_t *good = NULL;
    uint32_t num = aug->reqq->size;
    uint8_t *bad;
    char *why;
    size_t first, second;
    gsize len;
    QDict *r;
    int i, j;

    helper_connect(h, aug);
    submit_query(aug, VMAUG_TEST_MARK0, "printer");
    qvmh_expect_query(h, VMAUG_TEST_MARK0, "printer");
    submit_query(aug, VMAUG_TEST_MARK1, "scanner");
    qvmh_expect_query(h, VMAUG_TEST_MARK1, "scanner");

    r = qtest_qmp(global_qtest, "{ 'execute': 'migrate',"
                                "  'arguments': { 'uri': %s } }", out_uri);
    g_assert(qdict_haskey(r, "return"));
    qobject_unref(r);
    wait_migration(global_qtest, "completed");
    g_assert(g_file_get_contents(file, (char **)&good, &len, NULL));
    unlink(file);

    /* The layout the cases patch, checked on the stream as migrated. */
    first = stream_find(good, len, VMAUG_TEST_MARK0);
    second = stream_find(good, len, VMAUG_TEST_MARK1);
    g_assert_cmpuint(ldl_be_p(good + first + REQ_COUNT), ==, 2);
    g_assert_cmpuint(ldl_be_p(good + first + REQ_NDESCS), ==, 1);
    g_assert_cmpuint(ldl_be_p(good + first + REQ_IN_NUM), ==, 1);
    g_assert_cmpuint(ldl_be_p(good + first + REQ_LEN0), ==,
                     sizeof(struct virtio_vmaugment_resp) +
                     VMAUG_TEST_RESP_MAX);
    g_assert_cmpuint(second, ==, first + REQ_SIZE1);
    incoming_stream(h, good, len, NULL);

    for (i = 0; i < ARRAY_SIZE(cases); i++) {
        bad = g_memdup2(good, len);
        for (j = 0; j < ARRAY_SIZE(cases[i].field) && cases[i].size[j]; j++) {
            if (cases[i].size[j] == 8) {
                stq_be_p(bad + first + cases[i].field[j], cases[i].value[j]);
            } else {
                stl_be_p(bad + first + cases[i].field[j], cases[i].value[j]);
            }
        }
        incoming_stream(h, bad, len, cases[i].why);
        g_free(bad);
    }

    /* The ring's size bounds the count, the heads and each chain. */
    bad = g_memdup2(good, len);
    stl_be_p(bad + first + REQ_COUNT, num + 1);
    why = g_strdup_printf("%u requests in flight on a %u-entry ring",
                          num + 1, num);
    incoming_stream(h, bad, len, why);
    g_free(why);
    memcpy(bad, good, len);
    stl_be_p(bad + first + REQ_HEAD, num);
    why = g_strdup_printf("request 0: chain head %u outside a %u-entry ring",
                          num, num);
    incoming_stream(h, bad, len, why);
    g_free(why);
    memcpy(bad, good, len);
    stl_be_p(bad + first + REQ_NDESCS, 0);
    why = g_strdup_printf("request 0: chain of 0 descriptors on a %u-entry "
                          "ring", num);
    incoming_stream(h, bad, len, why);
    g_free(why);

    /* Two requests on one chain. */
    memcpy(bad, good, len);
    memcpy(bad + second + REQ_HEAD, good + first + REQ_HEAD, 4);
    why = g_strdup_printf("request 1: chain head %u restored twice",
                          ldl_be_p(good + first + REQ_HEAD));
    incoming_stream(h, bad, len, why);
    g_free(why);
    g_free(bad);
}

/* ---- QMP administration ---- */

static bool qmp_has_command(QDict *resp, const char *name)
{
    QListEntry *e;

    QLIST_FOREACH_ENTRY(qdict_get_qlist(resp, "return"), e) {
        QDict *cmd = qobject_to(QDict, qlist_entry_obj(e));

        if (!strcmp(qdict_get_str(cmd, "name"), name)) {
            return true;
        }
    }
    return false;
}

static void test_qmp_query(void *obj, void *data, QGuestAllocator *t_alloc)
{
    static const char *const commands[] = {
        "query-vmaugment", "query-vmaugment-modules",
        "query-vmaugment-registrations", "vmaugment-register",
        "vmaugment-unregister", "vmaugment-unload",
        "query-vmaugment-sandboxes", "query-vmaugment-ui",
    };
    QDict *resp = qmp("{ 'execute': 'query-commands' }");
    QDict *info;
    QList *list;
    size_t i;

    for (i = 0; i < ARRAY_SIZE(commands); i++) {
        g_assert(qmp_has_command(resp, commands[i]));
    }
    qobject_unref(resp);

    resp = qmp("{ 'execute': 'query-vmaugment' }");
    list = qdict_get_qlist(resp, "return");
    g_assert_cmpuint(qlist_size(list), ==, 1);
    info = qobject_to(QDict, qlist_peek(list));
    g_assert(g_str_has_prefix(qdict_get_str(info, "path"), "/machine/"));
    g_assert(!qdict_get_bool(info, "helper-connected"));
    g_assert_cmpuint(qdict_get_int(info, "requests-in-flight"), ==, 0);
    qobject_unref(resp);

    /* Without a helper the commands that need one fail, clearly. */
    assert_qmp_error(qmp("{ 'execute': 'query-vmaugment-modules' }"),
                     "vmaugment: the host helper is not connected");
    assert_qmp_error(qmp("{ 'execute': 'vmaugment-unload',"
                         "  'arguments': { 'device': 'no-such-device',"
                         "                 'name': 'x' } }"),
                     "Device 'no-such-device' is not a vmaugment device");
}

/* Read the REQUEST a QMP command made; returns its payload length. */
static uint32_t helper_expect_admin(QVMAugmentHelper *h, uint16_t opcode,
                                    uint64_t *tag, void *payload, size_t size)
{
    struct vmaug_host_msg msg;
    uint8_t buf[512];
    struct virtio_vmaugment_req req;
    uint32_t len = qvmh_recv(h, &msg, buf, sizeof(buf));

    g_assert_cmpuint(le16_to_cpu(msg.type), ==, VMAUG_HOST_REQUEST);
    g_assert_cmpuint(len, >=, sizeof(req));
    memcpy(&req, buf, sizeof(req));
    g_assert_cmpuint(le16_to_cpu(req.opcode), ==, opcode);
    g_assert_cmpuint(le32_to_cpu(req.len), ==, len - sizeof(req));
    g_assert_cmpuint(len - sizeof(req), <=, size);
    memcpy(payload, buf + sizeof(req), len - sizeof(req));
    *tag = le64_to_cpu(msg.tag);
    return len - sizeof(req);
}

static void test_helper_qmp_modules(void *obj, void *data,
                                    QGuestAllocator *t_alloc)
{
    QVMAugmentHelper *h = data;
    struct {
        struct vmaug_list_resp hdr;
        struct vmaug_module_info info;
    } QEMU_PACKED answer = {
        .hdr = { .count = cpu_to_le32(1), .total = cpu_to_le32(1) },
        .info = {
            .ref = module_ref("printer", "1.1"),
            .kind = cpu_to_le32(VMAUG_KIND_COMMUNICATION),
            .state = cpu_to_le32(VMAUG_MODULE_LOADED),
            .events = cpu_to_le32(VMAUG_EVENT_MASK(VMAUG_EVENT_IMAGE_START)),
        },
    };
    struct vmaug_list_req req;
    QDict *resp, *m;
    QList *list;
    uint64_t tag;

    helper_connect(h, obj);
    qtest_qmp_send(global_qtest,
                   "{ 'execute': 'query-vmaugment-modules' }");
    g_assert_cmpuint(helper_expect_admin(h, VMAUG_OP_LIST, &tag, &req,
                                         sizeof(req)), ==, sizeof(req));
    g_assert_cmpuint(le32_to_cpu(req.what), ==, VMAUG_LIST_MODULES);
    g_assert_cmpuint(le32_to_cpu(req.start), ==, 0);
    g_assert(tag & (1ULL << 63));
    qvmh_respond(h, tag, VMAUG_S_OK, &answer, sizeof(answer));

    resp = qtest_qmp_receive(global_qtest);
    list = qdict_get_qlist(resp, "return");
    g_assert_cmpuint(qlist_size(list), ==, 1);
    m = qobject_to(QDict, qlist_peek(list));
    g_assert_cmpstr(qdict_get_str(m, "name"), ==, "printer");
    g_assert_cmpstr(qdict_get_str(m, "version"), ==, "1.1");
    g_assert_cmpstr(qdict_get_str(m, "kind"), ==, "communication");
    g_assert_cmpstr(qdict_get_str(m, "state"), ==, "loaded");
    g_assert_cmpstr(qstring_get_str(qobject_to(QString, qlist_peek(
                        qdict_get_qlist(m, "events")))), ==, "image-start");
    qobject_unref(resp);

    /* A listing that lies about its size is refused, not trusted. */
    qtest_qmp_send(global_qtest,
                   "{ 'execute': 'query-vmaugment-modules' }");
    helper_expect_admin(h, VMAUG_OP_LIST, &tag, &req, sizeof(req));
    answer.hdr.count = cpu_to_le32(2);
    qvmh_respond(h, tag, VMAUG_S_OK, &answer, sizeof(answer));
    assert_qmp_error(qtest_qmp_receive(global_qtest),
                     "vmaugment: malformed listing from the host helper");
    assert_qemu_alive();
}

static void test_helper_qmp_register(void *obj, void *data,
                                     QGuestAllocator *t_alloc)
{
    QVMAugmentHelper *h = data;
    static const char denied[] = "policy forbids scanner";
    struct vmaug_registration reg;
    QDict *resp;
    uint64_t tag;

    helper_connect(h, obj);
    qtest_qmp_send(global_qtest,
                   "{ 'execute': 'vmaugment-register', 'arguments': {"
                   "  'name': 'scanner', 'version': '2.0', 'required': true,"
                   "  'events': [ 'image-start', 'image-stop' ] } }");
    g_assert_cmpuint(helper_expect_admin(h, VMAUG_OP_REGISTER, &tag, &reg,
                                         sizeof(reg)), ==, sizeof(reg));
    g_assert_cmpstr((char *)reg.ref.name, ==, "scanner");
    g_assert_cmpstr((char *)reg.ref.version, ==, "2.0");
    g_assert_cmphex(le32_to_cpu(reg.events), ==,
                    VMAUG_EVENT_MASK(VMAUG_EVENT_IMAGE_START) |
                    VMAUG_EVENT_MASK(VMAUG_EVENT_IMAGE_STOP));
    g_assert_cmphex(le32_to_cpu(reg.flags), ==, VMAUG_REG_F_REQUIRED);
    qvmh_respond(h, tag, VMAUG_S_OK, NULL, 0);
    resp = qtest_qmp_receive(global_qtest);
    g_assert(qdict_haskey(resp, "return"));
    qobject_unref(resp);

    /* The helper's refusal reaches the host owner with its reason. */
    qtest_qmp_send(global_qtest,
                   "{ 'execute': 'vmaugment-unload',"
                   "  'arguments': { 'name': 'scanner' } }");
    helper_expect_admin(h, VMAUG_OP_UNLOAD, &tag, &reg, sizeof(reg));
    qvmh_respond(h, tag, VMAUG_S_DENIED, denied, strlen(denied));
    assert_qmp_error(qtest_qmp_receive(global_qtest),
                     "vmaugment: the host helper answered: denied: "
                     "policy forbids scanner");
}

static void test_helper_qmp_timeout(void *obj, void *data,
                                    QGuestAllocator *t_alloc)
{
    QVMAugmentHelper *h = data;
    struct vmaug_module_ref ref;
    struct vmaug_host_msg msg;
    uint8_t buf[64];
    uint64_t tag;

    helper_connect(h, obj);
    qtest_qmp_send(global_qtest,
                   "{ 'execute': 'vmaugment-unregister',"
                   "  'arguments': { 'name': 'scanner' } }");
    helper_expect_admin(h, VMAUG_OP_UNREGISTER, &tag, &ref, sizeof(ref));
    /* No answer: after request-timeout-ms the command fails... */
    assert_qmp_error(qtest_qmp_receive(global_qtest),
                     "vmaugment: the host helper did not answer in time");
    /* ...and the helper is told to stop working on it. */
    g_assert_cmpuint(qvmh_recv(h, &msg, buf, sizeof(buf)), ==, 0);
    g_assert_cmpuint(le16_to_cpu(msg.type), ==, VMAUG_HOST_CANCEL);
    g_assert_cmpuint(le64_to_cpu(msg.tag), ==, tag);
}

static void test_helper_qmp_events(void *obj, void *data,
                                   QGuestAllocator *t_alloc)
{
    QVMAugmentHelper *h = data;
    struct vmaug_module_ref ref = module_ref("printer", "1.0");
    struct virtio_vmaugment_event ev = {
        .type = cpu_to_le32(VMAUG_EVENT_MODULE_CRASHED),
        .len = cpu_to_le32(sizeof(ref)),
    };
    QDict *event, *d;

    helper_connect(h, obj);
    event = qtest_qmp_eventwait_ref(global_qtest, "VMAUGMENT_HELPER");
    g_assert(qdict_get_bool(qdict_get_qdict(event, "data"), "connected"));
    qobject_unref(event);

    qvmh_send(h, VMAUG_HOST_EVENT, 0, &ev, sizeof(ev), &ref, sizeof(ref));
    event = qtest_qmp_eventwait_ref(global_qtest, "VMAUGMENT_MODULE");
    d = qdict_get_qdict(event, "data");
    g_assert_cmpstr(qdict_get_str(d, "change"), ==, "crashed");
    g_assert_cmpstr(qdict_get_str(d, "name"), ==, "printer");
    g_assert_cmpstr(qdict_get_str(d, "version"), ==, "1.0");
    qobject_unref(event);

    close(h->fd);
    h->fd = -1;
    event = qtest_qmp_eventwait_ref(global_qtest, "VMAUGMENT_HELPER");
    g_assert(!qdict_get_bool(qdict_get_qdict(event, "data"), "connected"));
    qobject_unref(event);
}

/*
 * While the VM is paused the helper is still served (the host owner can
 * use QMP), but a guest's answer waits until the VM runs again.
 */
static void test_helper_paused(void *obj, void *data,
                               QGuestAllocator *t_alloc)
{
    QVMAugment *aug = obj;
    QVMAugmentHelper *h = data;
    struct vmaug_list_resp empty = {};
    struct vmaug_list_req req;
    uint16_t used_idx;
    QDict *resp;
    uint64_t tag;
    Call c;
    Reply r;

    helper_connect(h, aug);
    c = submit_query(aug, 61, "printer");
    tag = qvmh_expect_query(h, 61, "printer");
    used_idx = aug->reqq->last_used_idx;

    qobject_unref(qmp("{ 'execute': 'stop' }"));
    qvmh_respond(h, tag, VMAUG_S_NOT_FOUND, NULL, 0);

    qtest_qmp_send(global_qtest,
                   "{ 'execute': 'query-vmaugment-registrations' }");
    helper_expect_admin(h, VMAUG_OP_LIST, &tag, &req, sizeof(req));
    qvmh_respond(h, tag, VMAUG_S_OK, &empty, sizeof(empty));
    resp = qtest_qmp_receive(global_qtest);
    g_assert_cmpuint(qlist_size(qdict_get_qlist(resp, "return")), ==, 0);
    qobject_unref(resp);

    /* The guest's answer was read (QMP came after it) but not written. */
    g_assert_cmpuint(qtest_readw(global_qtest, aug->reqq->used + 2), ==,
                     used_idx);
    qobject_unref(qmp("{ 'execute': 'cont' }"));
    collect(aug, &c, &r);
    g_assert_cmpuint(le64_to_cpu(r.hdr.id), ==, 61);
    assert_empty(&r, VMAUG_S_NOT_FOUND);
}


/* ---- Lifecycle: QEMUs of the tests' own, to watch them start and stop ---- */

/* How a lifecycle test's QEMU is started. */
typedef struct LifecycleOpts {
    bool image;             /* the device names h->image */
    bool reconnect;         /* the chardev reconnects to a new helper */
    bool short_start;       /* start-timeout-ms=300 */
} LifecycleOpts;

static const LifecycleOpts lifecycle_plain = { 0 };
static const LifecycleOpts lifecycle_image = { .image = true };
static const LifecycleOpts lifecycle_image_reconnect = {
    .image = true, .reconnect = true,
};
static const LifecycleOpts lifecycle_image_short = {
    .image = true, .short_start = true,
};

static QTestState *lifecycle_vm(QVMAugmentHelper *h, const LifecycleOpts *o)
{
    g_autofree char *image_opt = o->image ?
        g_strdup_printf(",image=%s", h->image) : g_strdup("");

    return qtest_initf("-machine q35 -display none "
                       "-chardev socket,id=vmaug-helper,path=%s%s "
                       "-device vmaugment-pci,chardev=vmaug-helper%s%s",
                       h->path, o->reconnect ? ",reconnect-ms=100" : "",
                       image_opt, o->short_start ?
                       ",start-timeout-ms=300" : "");
}

static void assert_run_state(QTestState *qts, const char *status,
                             const char *image_start)
{
    QDict *resp = qtest_qmp(qts, "{ 'execute': 'query-status' }");
    QDict *info;

    g_assert_cmpstr(qdict_get_str(qdict_get_qdict(resp, "return"), "status"),
                    ==, status);
    qobject_unref(resp);
    resp = qtest_qmp(qts, "{ 'execute': 'query-vmaugment' }");
    info = qobject_to(QDict, qlist_peek(qdict_get_qlist(resp, "return")));
    g_assert_cmpstr(qdict_get_str(info, "image-start"), ==, image_start);
    qobject_unref(resp);
}

/* Wait for VMAUGMENT_IMAGE_START; returns its message ("" for none). */
static char *wait_image_start(QTestState *qts, bool ok)
{
    QDict *ev = qtest_qmp_eventwait_ref(qts, "VMAUGMENT_IMAGE_START");
    QDict *d = qdict_get_qdict(ev, "data");
    char *msg = g_strdup(qdict_haskey(d, "message") ?
                         qdict_get_str(d, "message") : "");

    g_assert_cmpint(qdict_get_bool(d, "ok"), ==, ok);
    g_assert(qdict_haskey(d, "duration-us"));
    qobject_unref(ev);
    return msg;
}

static bool helper_saw(QVMAugmentHelper *h, uint32_t event)
{
    guint i;

    for (i = 0; i < h->lifecycle->len; i++) {
        if (g_array_index(h->lifecycle, uint32_t, i) == event) {
            return true;
        }
    }
    return false;
}

/*
 * With an image the VM waits, although autostart asked it to run, until
 * the helper has prepared the image; then it runs, pauses and resumes,
 * and its stop is told to the helper before QEMU exits.
 */
static void test_image_start(void *obj, void *data, QGuestAllocator *t_alloc)
{
    QVMAugmentHelper *h = qvmh_new();
    QTestState *qts = lifecycle_vm(h, &lifecycle_image_reconnect);
    g_autofree char *image = qvmh_hello(h);
    g_autofree char *msg = NULL;

    g_assert_cmpstr(image, ==, h->image);
    g_assert_cmphex(h->start_flags, ==, 0);
    g_assert_cmpuint(h->start_tag, !=, 0);
    assert_run_state(qts, "prelaunch", "waiting");
    g_usleep(200 * 1000);
    assert_run_state(qts, "prelaunch", "waiting");

    qvmh_start_done(h, VMAUG_S_OK, NULL);
    msg = wait_image_start(qts, true);
    g_assert_cmpstr(msg, ==, "");
    qtest_qmp_eventwait(qts, "RESUME");
    assert_run_state(qts, "running", "done");
    /* The decision stays readable for clients that missed the event. */
    {
        QDict *resp = qtest_qmp(qts, "{ 'execute': 'query-vmaugment' }");
        QDict *info = qobject_to(QDict, qlist_peek(qdict_get_qlist(resp,
                                                                   "return")));

        g_assert(qdict_haskey(info, "image-start-duration-us"));
        g_assert(!qdict_haskey(info, "image-start-message"));
        g_assert_cmpstr(qdict_get_str(info, "image"), ==, h->image);
        qobject_unref(resp);
    }

    qobject_unref(qtest_qmp(qts, "{ 'execute': 'stop' }"));
    qvmh_expect_lifecycle(h, VMAUG_EVENT_PAUSE);
    qobject_unref(qtest_qmp(qts, "{ 'execute': 'cont' }"));
    qvmh_expect_lifecycle(h, VMAUG_EVENT_RESUME);

    /* A helper that comes back loads the modules without their handlers. */
    close(h->fd);
    h->fd = -1;
    g_free(qvmh_hello(h));
    g_assert_cmphex(h->start_flags, ==, VMAUG_LIFECYCLE_F_RECONNECT);
    qvmh_start_done(h, VMAUG_S_OK, NULL);
    assert_run_state(qts, "running", "done");

    qtest_qmp_send(qts, "{ 'execute': 'quit' }");
    qvmh_expect_lifecycle(h, VMAUG_EVENT_IMAGE_STOP);
    qvmh_expect_lifecycle(h, VMAUG_EVENT_HOST_STOP);
    qtest_quit(qts);
    qvmh_free(h);
}

/* A helper that refuses the start: the VM never runs and QEMU exits 1. */
static void test_image_start_refused(void *obj, void *data,
                                     QGuestAllocator *t_alloc)
{
    static const char why[] = "required module scanner 1.0 unavailable:\n"
                              "repository unreachable";
    QVMAugmentHelper *h = qvmh_new();
    QTestState *qts = lifecycle_vm(h, &lifecycle_image);
    g_autofree char *msg = NULL;

    g_free(qvmh_hello(h));
    qvmh_start_done(h, VMAUG_S_NOT_FOUND, why);
    msg = wait_image_start(qts, false);
    /* Shown as it came, less what a terminal would act on. */
    g_assert_cmpstr(msg, ==, "required module scanner 1.0 unavailable:?"
                    "repository unreachable");
    qtest_qmp_eventwait(qts, "SHUTDOWN");
    qvmh_expect_lifecycle(h, VMAUG_EVENT_HOST_STOP);
    g_assert(!helper_saw(h, VMAUG_EVENT_IMAGE_STOP));
    qtest_set_expected_status(qts, 1);
    qtest_quit(qts);
    qvmh_free(h);
}

/* A helper that connects but never answers, and one that never connects. */
static void test_image_start_timeout(void *obj, void *data,
                                     QGuestAllocator *t_alloc)
{
    static const char *const why[] = {
        "the host helper did not prepare the image within 300 ms",
        "the host helper did not connect within 300 ms",
    };
    int i;

    for (i = 0; i < ARRAY_SIZE(why); i++) {
        QVMAugmentHelper *h = qvmh_new();
        QTestState *qts = lifecycle_vm(h, &lifecycle_image_short);
        g_autofree char *msg = NULL;

        if (i == 0) {
            g_free(qvmh_hello(h));
        }
        msg = wait_image_start(qts, false);
        g_assert_cmpstr(msg, ==, why[i]);
        qtest_qmp_eventwait(qts, "SHUTDOWN");
        qtest_set_expected_status(qts, 1);
        qtest_quit(qts);
        qvmh_free(h);
    }
}

/* An answer to nothing the device asked is a protocol error. */
static void test_image_start_bad_answer(void *obj, void *data,
                                        QGuestAllocator *t_alloc)
{
    QVMAugmentHelper *h = qvmh_new();
    QTestState *qts = lifecycle_vm(h, &lifecycle_image);
    QDict *ev;
    char eof;

    g_free(qvmh_hello(h));
    h->start_tag++;
    qvmh_start_done(h, VMAUG_S_OK, NULL);
    ev = qtest_qmp_eventwait_ref(qts, "VMAUGMENT_HELPER");
    g_assert(qdict_get_bool(qdict_get_qdict(ev, "data"), "connected"));
    qobject_unref(ev);
    ev = qtest_qmp_eventwait_ref(qts, "VMAUGMENT_HELPER");
    g_assert(!qdict_get_bool(qdict_get_qdict(ev, "data"), "connected"));
    qobject_unref(ev);
    qvmh_wait_fd(h->fd, POLLIN);
    g_assert_cmpint(read(h->fd, &eof, 1), ==, 0);
    /* Still held: nobody prepared the image. */
    assert_run_state(qts, "prelaunch", "waiting");
    qtest_quit(qts);
    qvmh_free(h);
}

static void helper_module_event(QVMAugmentHelper *h, uint32_t type,
                                const void *payload, uint32_t len)
{
    struct virtio_vmaugment_event ev = {
        .type = cpu_to_le32(type),
        .len = cpu_to_le32(len),
    };

    qvmh_send(h, VMAUG_HOST_EVENT, 0, &ev, sizeof(ev), payload, len);
}

static QDict *wait_module_event(QTestState *qts, const char *change)
{
    QDict *ev = qtest_qmp_eventwait_ref(qts, "VMAUGMENT_MODULE");
    QDict *d = qdict_get_qdict(ev, "data");

    g_assert_cmpstr(qdict_get_str(d, "change"), ==, change);
    qobject_ref(d);
    qobject_unref(ev);
    return d;
}

/*
 * A refused module is reported with its reason; a restart request resets
 * the VM (image) or makes QEMU exit with VMAUG_RESTART_EXIT_CODE (host).
 */
static void test_module_refused_restart(void *obj, void *data,
                                        QGuestAllocator *t_alloc)
{
    QVMAugmentHelper *h = qvmh_new();
    QTestState *qts = lifecycle_vm(h, &lifecycle_plain);
    struct {
        struct vmaug_module_ref ref;
        char reason[32];
    } QEMU_PACKED refused = { .ref = module_ref("scanner", "2.0") };
    struct vmaug_restart restart = { .ref = module_ref("upgrade", "1.1") };
    QDict *d;

    g_free(qvmh_hello(h));
    qvmh_start_done(h, VMAUG_S_OK, NULL);
    assert_run_state(qts, "running", "done");

    memcpy(refused.reason, "signer not trusted\x1b[2J", 22);
    helper_module_event(h, VMAUG_EVENT_MODULE_REFUSED, &refused,
                        sizeof(refused.ref) + 22);
    d = wait_module_event(qts, "refused");
    g_assert_cmpstr(qdict_get_str(d, "name"), ==, "scanner");
    g_assert_cmpstr(qdict_get_str(d, "reason"), ==,
                    "signer not trusted?[2J");
    qobject_unref(d);

    restart.what = cpu_to_le32(VMAUG_RESTART_IMAGE);
    helper_module_event(h, VMAUG_EVENT_RESTART_REQUESTED, &restart,
                        sizeof(restart));
    d = wait_module_event(qts, "restart-requested");
    g_assert_cmpstr(qdict_get_str(d, "restart"), ==, "image");
    qobject_unref(d);
    qtest_qmp_eventwait(qts, "RESET");

    /* An unknown scope is ignored, not guessed at. */
    restart.what = cpu_to_le32(7);
    helper_module_event(h, VMAUG_EVENT_RESTART_REQUESTED, &restart,
                        sizeof(restart));
    restart.what = cpu_to_le32(VMAUG_RESTART_HOST);
    helper_module_event(h, VMAUG_EVENT_RESTART_REQUESTED, &restart,
                        sizeof(restart));
    d = wait_module_event(qts, "restart-requested");
    g_assert_cmpstr(qdict_get_str(d, "restart"), ==, "host");
    qobject_unref(d);
    qtest_qmp_eventwait(qts, "SHUTDOWN");
    qvmh_expect_lifecycle(h, VMAUG_EVENT_IMAGE_STOP);
    qvmh_expect_lifecycle(h, VMAUG_EVENT_HOST_STOP);
    qtest_set_expected_status(qts, VMAUG_RESTART_EXIT_CODE);
    qtest_quit(qts);
    qvmh_free(h);
}

static struct vmaug_servicing_report servicing_report(const char *bundle,
                                                      const char *version,
                                                      uint32_t outcome)
{
    struct vmaug_servicing_report rep = {
        .outcome = cpu_to_le32(outcome),
    };

    g_strlcpy((char *)rep.bundle, bundle, sizeof(rep.bundle));
    g_strlcpy((char *)rep.version, version, sizeof(rep.version));
    return rep;
}

static uint16_t send_servicing_report(QVMAugment *aug, uint64_t id,
                                      const struct vmaug_servicing_report *rep,
                                      const char *text, uint32_t text_len,
                                      Reply *r)
{
    g_autofree uint8_t *buf = g_malloc0(sizeof(*rep) + text_len);

    memcpy(buf, rep, sizeof(*rep));
    if (text_len) {
        memcpy(buf + sizeof(*rep), text, MIN(strlen(text), text_len));
    }
    return call(aug, id, VMAUG_OP_SERVICING_REPORT, buf,
                sizeof(*rep) + text_len, r);
}

/*
 * The device checks a servicing report's size and fixed strings before it
 * relays it: a good one reaches for the (absent) helper.
 */
static void test_servicing_report(void *obj, void *data,
                                  QGuestAllocator *t_alloc)
{
    struct vmaug_servicing_report rep =
        servicing_report("motd-refresh", "2026.11.1",
                         VMAUG_SERVICING_CONFIRMED);
    Reply r;

    g_assert_cmpuint(send_servicing_report(obj, 81, &rep, "ok", 2, &r), ==,
                     VMAUG_S_UNAVAILABLE);
    g_assert_cmpuint(send_servicing_report(obj, 82, &rep, "",
                                           VMAUG_SERVICING_MESSAGE_MAX, &r),
                     ==, VMAUG_S_UNAVAILABLE);
    g_assert_cmpuint(send_servicing_report(obj, 83, &rep, "",
                                           VMAUG_SERVICING_MESSAGE_MAX + 1,
                                           &r),
                     ==, VMAUG_S_TOO_BIG);
    g_assert_cmpuint(call(obj, 84, VMAUG_OP_SERVICING_REPORT, &rep,
                          sizeof(rep) - 1, &r), ==, VMAUG_S_INVALID);
    memset(rep.version, '1', sizeof(rep.version));
    g_assert_cmpuint(send_servicing_report(obj, 85, &rep, NULL, 0, &r), ==,
                     VMAUG_S_INVALID);
    assert_qemu_alive();
}

/*
 * A report the helper recorded becomes a VMAUGMENT_SERVICING event with
 * the guest's text in a harmless alphabet; a malformed one is dropped.
 */
static void test_servicing_event(void *obj, void *data,
                                 QGuestAllocator *t_alloc)
{
    QVMAugmentHelper *h = qvmh_new();
    QTestState *qts = lifecycle_vm(h, &lifecycle_plain);
    struct {
        struct vmaug_servicing_report rep;
        char text[32];
    } QEMU_PACKED ev = {
        .rep = servicing_report("motd-refresh", "2026.11.1", 7),
    };
    QDict *e, *d;

    g_free(qvmh_hello(h));
    qvmh_start_done(h, VMAUG_S_OK, NULL);
    assert_run_state(qts, "running", "done");

    /* An outcome the protocol does not have is not shown. */
    helper_module_event(h, VMAUG_EVENT_SERVICING, &ev, sizeof(ev.rep));
    ev.rep = servicing_report("motd-refresh", "2026.11.1",
                              VMAUG_SERVICING_FAILED);
    ev.rep.boot = cpu_to_le32(2);
    memcpy(ev.text, "dpkg failed\x1b[2J\n", 16);
    helper_module_event(h, VMAUG_EVENT_SERVICING, &ev, sizeof(ev.rep) + 16);
    e = qtest_qmp_eventwait_ref(qts, "VMAUGMENT_SERVICING");
    d = qdict_get_qdict(e, "data");
    g_assert_cmpstr(qdict_get_str(d, "bundle"), ==, "motd-refresh");
    g_assert_cmpstr(qdict_get_str(d, "version"), ==, "2026.11.1");
    g_assert_false(qdict_get_bool(d, "confirmed"));
    g_assert_cmpint(qdict_get_int(d, "boot"), ==, 2);
    g_assert_cmpstr(qdict_get_str(d, "message"), ==, "dpkg failed?[2J?");
    qobject_unref(e);
    qtest_quit(qts);
    qvmh_free(h);
}

/* Sandbox details are for the host owner: a guest asking is refused. */
static void test_list_host_only(void *obj, void *data,
                                QGuestAllocator *t_alloc)
{
    struct vmaug_list_req req = { .what = cpu_to_le32(VMAUG_LIST_SANDBOXES) };
    Reply r;

    g_assert_cmpuint(call(obj, 71, VMAUG_OP_LIST, &req, sizeof(req), &r), ==,
                     VMAUG_S_DENIED);
    assert_message(&r, "listing for the host owner only");
    req.what = cpu_to_le32(VMAUG_LIST_UI);
    g_assert_cmpuint(call(obj, 72, VMAUG_OP_LIST, &req, sizeof(req), &r), ==,
                     VMAUG_S_DENIED);
    assert_message(&r, "listing for the host owner only");
}

static void test_helper_qmp_sandboxes(void *obj, void *data,
                                      QGuestAllocator *t_alloc)
{
    QVMAugmentHelper *h = data;
    struct {
        struct vmaug_list_resp hdr;
        struct vmaug_sandbox_info sb[2];
    } QEMU_PACKED answer = {
        .hdr = { .count = cpu_to_le32(2), .total = cpu_to_le32(2) },
        .sb = { {
            .ref = module_ref("printer", "1.0"),
            .state = cpu_to_le32(VMAUG_MODULE_LOADED),
            .pid = cpu_to_le32(4121),
            .memory_limit = cpu_to_le64(256 << 20),
            .cpu_limit = cpu_to_le64(60),
            .uptime_ms = cpu_to_le64(5310),
            .queued_calls = cpu_to_le32(1),
            .uid = cpu_to_le32(0x70000000 + 4121),
            .missing = cpu_to_le32(VMAUG_SANDBOX_USER_NS |
                                   VMAUG_SANDBOX_EMPTY_ROOT),
        }, {
            .ref = module_ref("scanner", "1.0"),
            .state = cpu_to_le32(VMAUG_MODULE_CRASHED),
            .restarts = cpu_to_le32(3),
        } },
    };
    struct vmaug_list_req req;
    g_autoptr(GString) names = g_string_new(NULL);
    QDict *resp, *sb;
    QList *list, *missing;
    QListEntry *e;
    uint64_t tag;

    helper_connect(h, obj);
    qtest_qmp_send(global_qtest,
                   "{ 'execute': 'query-vmaugment-sandboxes' }");
    helper_expect_admin(h, VMAUG_OP_LIST, &tag, &req, sizeof(req));
    g_assert_cmpuint(le32_to_cpu(req.what), ==, VMAUG_LIST_SANDBOXES);
    g_assert(tag & (1ULL << 63));
    qvmh_respond(h, tag, VMAUG_S_OK, &answer, sizeof(answer));
    resp = qtest_qmp_receive(global_qtest);
    list = qdict_get_qlist(resp, "return");
    g_assert_cmpuint(qlist_size(list), ==, 2);
    sb = qobject_to(QDict, qlist_peek(list));
    g_assert_cmpstr(qdict_get_str(sb, "name"), ==, "printer");
    g_assert_cmpstr(qdict_get_str(sb, "state"), ==, "loaded");
    g_assert_cmpuint(qdict_get_int(sb, "pid"), ==, 4121);
    g_assert_cmpuint(qdict_get_int(sb, "memory-limit"), ==, 256 << 20);
    g_assert_cmpuint(qdict_get_int(sb, "queued-calls"), ==, 1);
    g_assert_cmpuint(qdict_get_int(sb, "uid"), ==, 0x70000000 + 4121);
    /* What the host could not give, by name, in bit order. */
    missing = qdict_get_qlist(sb, "missing");
    QLIST_FOREACH_ENTRY(missing, e) {
        g_string_append_printf(names, "%s ", qstring_get_str(
                                   qobject_to(QString, qlist_entry_obj(e))));
    }
    g_assert_cmpstr(names->str, ==, "user-namespace empty-root ");
    qobject_unref(resp);

    /* A piece the protocol does not have fails the command. */
    qtest_qmp_send(global_qtest,
                   "{ 'execute': 'query-vmaugment-sandboxes' }");
    helper_expect_admin(h, VMAUG_OP_LIST, &tag, &req, sizeof(req));
    answer.sb[1].missing = cpu_to_le32(VMAUG_SANDBOX_NO_CAPS << 1);
    qvmh_respond(h, tag, VMAUG_S_OK, &answer, sizeof(answer));
    resp = qtest_qmp_receive(global_qtest);
    g_assert(qdict_haskey(resp, "error"));
    qobject_unref(resp);
    answer.sb[1].missing = 0;

    /* A state the protocol does not have fails the command. */
    qtest_qmp_send(global_qtest,
                   "{ 'execute': 'query-vmaugment-sandboxes' }");
    helper_expect_admin(h, VMAUG_OP_LIST, &tag, &req, sizeof(req));
    answer.sb[1].state = cpu_to_le32(9);
    qvmh_respond(h, tag, VMAUG_S_OK, &answer, sizeof(answer));
    assert_qmp_error(qtest_qmp_receive(global_qtest),
                     "vmaugment: the host helper sent an unknown sandbox "
                     "state");
    assert_qemu_alive();
}

/* One UI entry: header, JSON, padding to 8 bytes. */
static size_t ui_entry(uint8_t *out, const char *module, const char *json,
                       uint32_t claimed)
{
    struct vmaug_ui_entry hdr = { .len = cpu_to_le32(claimed) };
    size_t size = ROUND_UP(sizeof(hdr) + strlen(json), 8);

    g_strlcpy((char *)hdr.module, module, sizeof(hdr.module));
    memset(out, 0, size);
    memcpy(out, &hdr, sizeof(hdr));
    memcpy(out + sizeof(hdr), json, strlen(json));
    return size;
}

static QDict *qmp_ui_answer(QVMAugmentHelper *h, const char *json,
                            uint32_t claimed)
{
    uint8_t answer[512];
    struct vmaug_list_resp hdr = {
        .count = cpu_to_le32(1), .total = cpu_to_le32(1),
    };
    struct vmaug_list_req req;
    uint64_t tag;
    size_t len;

    qtest_qmp_send(global_qtest, "{ 'execute': 'query-vmaugment-ui' }");
    helper_expect_admin(h, VMAUG_OP_LIST, &tag, &req, sizeof(req));
    g_assert_cmpuint(le32_to_cpu(req.what), ==, VMAUG_LIST_UI);
    memcpy(answer, &hdr, sizeof(hdr));
    len = sizeof(hdr) + ui_entry(answer + sizeof(hdr), "ui", json, claimed);
    qvmh_respond(h, tag, VMAUG_S_OK, answer, len);
    return qtest_qmp_receive(global_qtest);
}

static void test_helper_qmp_ui(void *obj, void *data,
                               QGuestAllocator *t_alloc)
{
    static const char element[] =
        "{\"id\": \"status\", \"type\": \"label\", \"text\": \"backup\"}";
    QVMAugmentHelper *h = data;
    QDict *resp, *ui, *el;

    helper_connect(h, obj);
    resp = qmp_ui_answer(h, element, strlen(element));
    ui = qobject_to(QDict, qlist_peek(qdict_get_qlist(resp, "return")));
    g_assert_cmpstr(qdict_get_str(ui, "module"), ==, "ui");
    el = qdict_get_qdict(ui, "element");
    g_assert_cmpstr(qdict_get_str(el, "id"), ==, "status");
    g_assert_cmpstr(qdict_get_str(el, "text"), ==, "backup");
    qobject_unref(resp);

    /*
     * Not an object, and a length within VMAUG_UI_MAX_JSON but past the
     * entry: both refused.
     */
    assert_qmp_error(qmp_ui_answer(h, "[1, 2]", 6),
                     "vmaugment: the host helper sent a UI element that is "
                     "not a JSON object");
    assert_qmp_error(qmp_ui_answer(h, element, 4000),
                     "vmaugment: malformed UI element from the host helper");
    assert_qemu_alive();
}

static void register_vmaugment_test(void)
{
    QOSGraphTestOptions helper = {
        .before = helper_before,
        .edge.extra_device_opts = "chardev=vmaug-helper",
    };
    QOSGraphTestOptions helper_fast = {
        .before = helper_before,
        .edge.extra_device_opts = "chardev=vmaug-helper,"
                                  "request-timeout-ms=1000",
    };

    qos_add_test("pci-ids", "vmaugment", test_pci_ids, NULL);
    qos_add_test("features", "vmaugment", test_features, NULL);
    qos_add_test("config", "vmaugment", test_config, NULL);
    qos_add_test("version", "vmaugment", test_version, NULL);
    qos_add_test("ping", "vmaugment", test_ping, NULL);
    qos_add_test("subscribe", "vmaugment", test_subscribe, NULL);
    qos_add_test("no-space", "vmaugment", test_no_space, NULL);
    qos_add_test("helper-unavailable", "vmaugment", test_helper_unavailable,
                 NULL);
    qos_add_test("zero-length", "vmaugment", test_zero_length, NULL);
    qos_add_test("short-header", "vmaugment", test_short_header, NULL);
    qos_add_test("oversize", "vmaugment", test_oversize, NULL);
    qos_add_test("length-mismatch", "vmaugment", test_length_mismatch, NULL);
    qos_add_test("bad-flags", "vmaugment", test_bad_flags, NULL);
    qos_add_test("unknown-opcode", "vmaugment", test_unknown_opcode, NULL);
    qos_add_test("bad-payload", "vmaugment", test_bad_payload, NULL);
    qos_add_test("wrong-direction", "vmaugment", test_wrong_direction, NULL);
    qos_add_test("missing-response", "vmaugment", test_missing_response,
                 NULL);
    qos_add_test("short-response", "vmaugment", test_short_response, NULL);
    qos_add_test("looped-chain", "vmaugment", test_looped_chain, NULL);

    qos_add_test("helper/relay", "vmaugment", test_helper_relay, &helper);
    qos_add_test("helper/id-reuse", "vmaugment", test_helper_id_reuse,
                 &helper);
    qos_add_test("helper/timeout", "vmaugment", test_helper_timeout,
                 &helper_fast);
    qos_add_test("helper/disconnect", "vmaugment", test_helper_disconnect,
                 &helper);
    qos_add_test("helper/bad-magic", "vmaugment", test_helper_bad_magic,
                 &helper);
    qos_add_test("helper/oversize", "vmaugment", test_helper_oversize,
                 &helper);
    qos_add_test("helper/bad-response", "vmaugment",
                 test_helper_bad_response, &helper);
    qos_add_test("helper/events", "vmaugment", test_helper_events, &helper);
    qos_add_test("helper/event-buffer-small", "vmaugment",
                 test_helper_event_buffer_small, &helper);
    qos_add_test("helper/migrate", "vmaugment", test_helper_migrate,
                 &helper);
    qos_add_test("helper/migrate-hostile", "vmaugment",
                 test_helper_migrate_hostile, &helper);
    qos_add_test("helper/reset-in-flight", "vmaugment",
                 test_helper_reset_in_flight, &helper);
    qos_add_test("qmp/query", "vmaugment", test_qmp_query, NULL);
    qos_add_test("helper/paused", "vmaugment", test_helper_paused, &helper);
    qos_add_test("helper/qmp-modules", "vmaugment", test_helper_qmp_modules,
                 &helper);
    qos_add_test("helper/qmp-register", "vmaugment",
                 test_helper_qmp_register, &helper);
    qos_add_test("helper/qmp-timeout", "vmaugment", test_helper_qmp_timeout,
                 &helper_fast);
    qos_add_test("helper/qmp-events", "vmaugment", test_helper_qmp_events,
                 &helper);
    qos_add_test("helper/qmp-sandboxes", "vmaugment",
                 test_helper_qmp_sandboxes, &helper);
    qos_add_test("helper/qmp-ui", "vmaugment", test_helper_qmp_ui, &helper);
    qos_add_test("list-host-only", "vmaugment", test_list_host_only, NULL);
    qos_add_test("servicing-report", "vmaugment", test_servicing_report,
                 NULL);
    qos_add_test("lifecycle/servicing-event", "vmaugment",
                 test_servicing_event, NULL);
    qos_add_test("lifecycle/image-start", "vmaugment", test_image_start,
                 NULL);
    qos_add_test("lifecycle/image-start-refused", "vmaugment",
                 test_image_start_refused, NULL);
    qos_add_test("lifecycle/image-start-timeout", "vmaugment",
                 test_image_start_timeout, NULL);
    qos_add_test("lifecycle/image-start-bad-answer", "vmaugment",
                 test_image_start_bad_answer, NULL);
    qos_add_test("lifecycle/refused-and-restart", "vmaugment",
                 test_module_refused_restart, NULL);
}

libqos_init(register_vmaugment_test);
