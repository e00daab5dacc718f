/*
 * QTest testcases for the vmaugment virtio device: what the device
 * answers itself, and how it refuses malformed requests and ring
 * violations, driven as a guest driver would.
 *
 * The tests that play the host helper are in vmaugment-helper-test.c,
 * the QMP administration in vmaugment-qmp-test.c, the VM's start and stop
 * in vmaugment-lifecycle-test.c.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "libqtest-single.h"
#include "qemu/bswap.h"
#include "qemu/module.h"
#include "libqos/qgraph.h"
#include "libqos/vmaugment.h"
#include "qobject/qdict.h"
#include "qobject/qlist.h"
#include "qobject/qstring.h"
#include "standard-headers/linux/virtio_config.h"
#include "standard-headers/linux/virtio_ring.h"
#include "standard-headers/linux/virtio_vmaugment.h"
#include "standard-headers/vmaugment/host-link.h"
#include "vmaugment-util.h"
#include "standard-headers/linux/pci_regs.h"
#include "libqos/pci.h"

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

    g_assert_cmpuint(qvmaug_send_version(obj, &info), ==, VMAUG_S_OK);
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
    QVMAugReply r;
    size_t i;

    for (i = 0; i < VMAUG_MAX_PING_PAYLOAD + 1; i++) {
        buf[i] = i * 7;
    }
    for (i = 0; i < ARRAY_SIZE(sizes); i++) {
        g_assert_cmpuint(qvmaug_send_ping(obj, 100 + i, buf, sizes[i], &r), ==,
                         VMAUG_S_OK);
        g_assert_cmpuint(le32_to_cpu(r.hdr.len), ==, sizes[i]);
        g_assert_cmpuint(r.used_len, ==, sizeof(r.hdr) + sizes[i]);
        g_assert(memcmp(r.data, buf, sizes[i]) == 0);
    }
    g_assert_cmpuint(qvmaug_send_ping(obj, 200, buf,
                                      VMAUG_MAX_PING_PAYLOAD + 1, &r),
                     ==, VMAUG_S_TOO_BIG);
    qvmaug_assert_message(&r, "payload larger than the opcode allows");
}

static void test_subscribe(void *obj, void *data, QGuestAllocator *t_alloc)
{
    uint32_t mask = 0;
    uint32_t want = VMAUG_EVENT_MASK(VMAUG_EVENT_IMAGE_STOP) |
                    VMAUG_EVENT_MASK(VMAUG_EVENT_MODULE_LOADED);

    g_assert_cmpuint(qvmaug_send_subscribe(obj, want, 0, &mask), ==,
                     VMAUG_S_OK);
    g_assert_cmphex(mask, ==, want);
    /* Bit 0 is no event type. */
    g_assert_cmpuint(qvmaug_send_subscribe(obj, 1, 0, &mask), ==, VMAUG_S_OK);
    g_assert_cmphex(mask, ==, 0);
    g_assert_cmpuint(qvmaug_send_subscribe(obj, want, 1, &mask), ==,
                     VMAUG_S_INVALID);
}

static void test_no_space(void *obj, void *data, QGuestAllocator *t_alloc)
{
    QVMAugment *aug = obj;
    uint8_t payload[100] = { 1, 2, 3 };
    QVMAugCall c = qvmaug_submit(aug, 5, VMAUG_OP_PING, payload,
                                 sizeof(payload),
                                 sizeof(struct virtio_vmaugment_resp) + 10);
    QVMAugReply r;

    qvmaug_collect(aug, &c, &r);
    g_assert_cmpuint(le16_to_cpu(r.hdr.status), ==, VMAUG_S_NO_SPACE);
    g_assert_cmpuint(le32_to_cpu(r.hdr.len), ==, sizeof(payload));
    g_assert_cmpuint(r.used_len, ==, sizeof(r.hdr));
}

static void test_helper_unavailable(void *obj, void *data,
                                    QGuestAllocator *t_alloc)
{
    QVMAugReply r;

    g_assert_cmpuint(qvmaug_send_query(obj, 9, "printer", &r), ==,
                     VMAUG_S_UNAVAILABLE);
    g_assert_cmphex(le16_to_cpu(r.hdr.opcode), ==, VMAUG_OP_QUERY);
    qvmaug_assert_message(&r, QVMAUG_MSG_UNAVAILABLE);
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
    QVMAugCall c = qvmaug_submit_raw(aug, out, out_size,
                                     sizeof(struct virtio_vmaugment_resp) + 64);
    QVMAugReply r;

    qvmaug_collect(aug, &c, &r);
    g_assert_cmpuint(le64_to_cpu(r.hdr.id), ==, id);
    g_assert_cmphex(le16_to_cpu(r.hdr.opcode), ==, opcode);
    g_assert_cmpuint(le16_to_cpu(r.hdr.status), ==, status);
    qvmaug_assert_message(&r, msg);
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
    QVMAugReply r;

    g_assert_cmpuint(qvmaug_call(obj, 3, 0x7777, NULL, 0, &r), ==,
                     VMAUG_S_UNSUPPORTED);
    qvmaug_assert_message(&r, "unknown opcode");
    g_assert_cmpuint(qvmaug_call(obj, 4, 0, NULL, 0, &r), ==,
                     VMAUG_S_UNSUPPORTED);
    qvmaug_assert_message(&r, "unknown opcode");
}

static void test_bad_payload(void *obj, void *data, QGuestAllocator *t_alloc)
{
    struct vmaug_module_ref ref;
    QVMAugReply r;

    /* A fixed-size request one byte short. */
    ref = qvmaugment_module_ref("printer", "1.0");
    g_assert_cmpuint(qvmaug_call(obj, 6, VMAUG_OP_QUERY, &ref,
                                 sizeof(ref) - 1, &r),
                     ==, VMAUG_S_INVALID);
    qvmaug_assert_message(&r, "payload size does not match the opcode");
    /* A name that does not end inside its field. */
    memset(ref.name, 'a', sizeof(ref.name));
    g_assert_cmpuint(qvmaug_call(obj, 7, VMAUG_OP_LOAD, &ref, sizeof(ref),
                                 &r), ==, VMAUG_S_INVALID);
    qvmaug_assert_message(&r, "string field is not NUL-terminated");
    /* VERSION takes no payload. */
    g_assert_cmpuint(qvmaug_call(obj, 8, VMAUG_OP_VERSION, &ref, 4, &r), ==,
                     VMAUG_S_INVALID);
    qvmaug_assert_message(&r, "payload size does not match the opcode");
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
                           QVMAUG_TIMEOUT_US);
    g_assert_cmpuint(len, ==, sizeof(resp) + strlen(why));
    qtest_memread(qts, addr, &resp, sizeof(resp));
    g_assert_cmpuint(le64_to_cpu(resp.id), ==, 0);
    g_assert_cmpuint(le16_to_cpu(resp.opcode), ==, 0);
    g_assert_cmpuint(le16_to_cpu(resp.status), ==, VMAUG_S_INVALID);
    g_assert_cmpuint(le32_to_cpu(resp.len), ==, strlen(why));
    qtest_memread(qts, addr + sizeof(resp), msg, strlen(why));
    g_assert_cmpmem(msg, strlen(why), why, strlen(why));
    g_assert(!qvmaug_broken(aug));
    guest_free(aug->alloc, addr);
}

static void test_zero_length(void *obj, void *data, QGuestAllocator *t_alloc)
{
    /*
     * virtio core refuses zero-sized descriptors before the device sees
     * them; that is a ring violation and breaks the device.
     */
    QVMAugment *aug = obj;
    uint16_t used = qvmaug_used_idx(aug->reqq);

    qvmaug_submit_raw(aug, NULL, 0, sizeof(struct virtio_vmaugment_resp));
    qvmaug_wait_broken(aug, aug->reqq, used);
}

static void test_missing_response(void *obj, void *data,
                                  QGuestAllocator *t_alloc)
{
    QVMAugment *aug = obj;
    struct virtio_vmaugment_req hdr = { .opcode = cpu_to_le16(VMAUG_OP_PING) };
    uint16_t used = qvmaug_used_idx(aug->reqq);

    qvmaug_submit_raw(aug, &hdr, sizeof(hdr), 0);
    qvmaug_wait_broken(aug, aug->reqq, used);
}

static void test_short_response(void *obj, void *data,
                                QGuestAllocator *t_alloc)
{
    QVMAugment *aug = obj;
    struct virtio_vmaugment_req hdr = { .opcode = cpu_to_le16(VMAUG_OP_PING) };
    uint16_t used = qvmaug_used_idx(aug->reqq);

    qvmaug_submit_raw(aug, &hdr, sizeof(hdr),
                      sizeof(struct virtio_vmaugment_resp) - 1);
    qvmaug_wait_broken(aug, aug->reqq, used);
}

static void test_looped_chain(void *obj, void *data, QGuestAllocator *t_alloc)
{
    QVMAugment *aug = obj;
    QTestState *qts = global_qtest;
    uint64_t addr = guest_alloc(aug->alloc, 64);
    uint16_t used = qvmaug_used_idx(aug->reqq);
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
    qvmaug_wait_broken(aug, aug->reqq, used);
}

static uint16_t send_servicing_report(QVMAugment *aug, uint64_t id,
                                      const struct vmaug_servicing_report *rep,
                                      const char *text, uint32_t text_len,
                                      QVMAugReply *r)
{
    g_autofree uint8_t *buf = g_malloc0(sizeof(*rep) + text_len);

    memcpy(buf, rep, sizeof(*rep));
    if (text_len) {
        memcpy(buf + sizeof(*rep), text, MIN(strlen(text), text_len));
    }
    return qvmaug_call(aug, id, VMAUG_OP_SERVICING_REPORT, buf,
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
        qvmaugment_servicing_report("motd-refresh", "2026.11.1",
                                    VMAUG_SERVICING_CONFIRMED);
    QVMAugReply r;

    g_assert_cmpuint(send_servicing_report(obj, 81, &rep, "ok", 2, &r), ==,
                     VMAUG_S_UNAVAILABLE);
    g_assert_cmpuint(send_servicing_report(obj, 82, &rep, "",
                                           VMAUG_SERVICING_MESSAGE_MAX, &r),
                     ==, VMAUG_S_UNAVAILABLE);
    g_assert_cmpuint(send_servicing_report(obj, 83, &rep, "",
                                           VMAUG_SERVICING_MESSAGE_MAX + 1,
                                           &r),
                     ==, VMAUG_S_TOO_BIG);
    g_assert_cmpuint(qvmaug_call(obj, 84, VMAUG_OP_SERVICING_REPORT, &rep,
                                 sizeof(rep) - 1, &r), ==, VMAUG_S_INVALID);
    memset(rep.version, '1', sizeof(rep.version));
    g_assert_cmpuint(send_servicing_report(obj, 85, &rep, NULL, 0, &r), ==,
                     VMAUG_S_INVALID);
    qvmaug_assert_qemu_alive();
}

/* Sandbox details are for the host owner: a guest asking is refused. */
static void test_list_host_only(void *obj, void *data,
                                QGuestAllocator *t_alloc)
{
    struct vmaug_list_req req = { .what = cpu_to_le32(VMAUG_LIST_SANDBOXES) };
    QVMAugReply r;

    g_assert_cmpuint(qvmaug_call(obj, 71, VMAUG_OP_LIST, &req, sizeof(req),
                                 &r), ==, VMAUG_S_DENIED);
    qvmaug_assert_message(&r, "listing for the host owner only");
    req.what = cpu_to_le32(VMAUG_LIST_UI);
    g_assert_cmpuint(qvmaug_call(obj, 72, VMAUG_OP_LIST, &req, sizeof(req),
                                 &r), ==, VMAUG_S_DENIED);
    qvmaug_assert_message(&r, "listing for the host owner only");
}

static void register_vmaugment_test(void)
{
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
    qos_add_test("list-host-only", "vmaugment", test_list_host_only, NULL);
    qos_add_test("servicing-report", "vmaugment", test_servicing_report,
                 NULL);
}

libqos_init(register_vmaugment_test);
