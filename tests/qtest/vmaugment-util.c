/*
 * Shared by the vmaugment qos tests: requests submitted and collected as
 * a guest driver does, and the steps of a test that plays the helper.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "libqtest-single.h"
#include "qemu/bswap.h"
#include "qobject/qdict.h"
#include "standard-headers/linux/virtio_config.h"
#include "vmaugment-util.h"

QVMAugCall qvmaug_submit_raw(QVMAugment *aug, const void *out, size_t out_size,
                             size_t in_size)
{
    QTestState *qts = global_qtest;
    QVMAugCall c = { .in_size = in_size };

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

QVMAugCall qvmaug_submit(QVMAugment *aug, uint64_t id, uint16_t opcode,
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
    return qvmaug_submit_raw(aug, buf, sizeof(hdr) + len, in_size);
}

bool qvmaug_broken(QVMAugment *aug)
{
    return aug->vdev->bus->get_status(aug->vdev) &
           VIRTIO_CONFIG_S_NEEDS_RESET;
}

/* Wait for the answer to @c; an answered request never breaks the device. */
void qvmaug_collect(QVMAugment *aug, QVMAugCall *c, QVMAugReply *r)
{
    QTestState *qts = global_qtest;

    memset(r, 0, sizeof(*r));
    qvirtio_wait_used_elem(qts, aug->vdev, aug->reqq, c->head, &r->used_len,
                           QVMAUG_TIMEOUT_US);
    g_assert_cmpuint(r->used_len, >=, sizeof(r->hdr));
    g_assert_cmpuint(r->used_len, <=, c->in_size);
    qtest_memread(qts, c->in_addr, &r->hdr, sizeof(r->hdr));
    g_assert_cmpuint(r->used_len - sizeof(r->hdr), <=, sizeof(r->data));
    qtest_memread(qts, c->in_addr + sizeof(r->hdr), r->data,
                  r->used_len - sizeof(r->hdr));
    guest_free(aug->alloc, c->out_addr);
    guest_free(aug->alloc, c->in_addr);
    g_assert(!qvmaug_broken(aug));
}

/* An error reply carries exactly @msg, and the used length covers it. */
void qvmaug_assert_message(const QVMAugReply *r, const char *msg)
{
    size_t len = strlen(msg);

    g_assert_cmpuint(le32_to_cpu(r->hdr.len), ==, len);
    g_assert_cmpuint(r->used_len, ==, sizeof(r->hdr) + len);
    g_assert_cmpmem(r->data, len, msg, len);
}

/* A reply with @status and nothing after its header. */
void qvmaug_assert_empty(const QVMAugReply *r, uint16_t status)
{
    g_assert_cmpuint(le16_to_cpu(r->hdr.status), ==, status);
    g_assert_cmpuint(le32_to_cpu(r->hdr.len), ==, 0);
    g_assert_cmpuint(r->used_len, ==, sizeof(r->hdr));
}

/* Send one request and return the response status. */
uint16_t qvmaug_call(QVMAugment *aug, uint64_t id, uint16_t opcode,
                     const void *payload, uint32_t len, QVMAugReply *r)
{
    QVMAugCall c = qvmaug_submit(aug, id, opcode, payload, len,
                                 sizeof(r->hdr) + QVMAUG_RESP_MAX);

    qvmaug_collect(aug, &c, r);
    g_assert_cmpuint(le64_to_cpu(r->hdr.id), ==, id);
    g_assert_cmpuint(le16_to_cpu(r->hdr.opcode), ==, opcode);
    return le16_to_cpu(r->hdr.status);
}

uint16_t qvmaug_send_version(QVMAugment *aug, struct vmaug_version_info *info)
{
    QVMAugReply r;
    uint16_t status = qvmaug_call(aug, 1, VMAUG_OP_VERSION, NULL, 0, &r);

    if (status == VMAUG_S_OK) {
        g_assert_cmpuint(le32_to_cpu(r.hdr.len), ==, sizeof(*info));
        g_assert_cmpuint(r.used_len, ==, sizeof(r.hdr) + sizeof(*info));
        memcpy(info, r.data, sizeof(*info));
    }
    return status;
}

uint16_t qvmaug_send_ping(QVMAugment *aug, uint64_t id, const void *data,
                          uint32_t len, QVMAugReply *r)
{
    return qvmaug_call(aug, id, VMAUG_OP_PING, data, len, r);
}

uint16_t qvmaug_send_subscribe(QVMAugment *aug, uint32_t mask,
                               uint32_t reserved, uint32_t *new_mask)
{
    struct vmaug_subscribe sub = {
        .mask = cpu_to_le32(mask),
        .reserved = cpu_to_le32(reserved),
    };
    QVMAugReply r;
    uint16_t status = qvmaug_call(aug, 2, VMAUG_OP_SUBSCRIBE, &sub,
                                  sizeof(sub), &r);

    if (status == VMAUG_S_OK) {
        g_assert_cmpuint(le32_to_cpu(r.hdr.len), ==, sizeof(sub));
        g_assert_cmpuint(r.used_len, ==, sizeof(r.hdr) + sizeof(sub));
        memcpy(&sub, r.data, sizeof(sub));
        *new_mask = le32_to_cpu(sub.mask);
    } else {
        /* The device refuses a SUBSCRIBE without a message. */
        qvmaug_assert_empty(&r, status);
    }
    return status;
}

QVMAugCall qvmaug_submit_query(QVMAugment *aug, uint64_t id, const char *name)
{
    struct vmaug_module_ref ref = qvmaugment_module_ref(name, "1.0");

    return qvmaug_submit(aug, id, VMAUG_OP_QUERY, &ref, sizeof(ref),
                         sizeof(struct virtio_vmaugment_resp) +
                         QVMAUG_RESP_MAX);
}

uint16_t qvmaug_send_query(QVMAugment *aug, uint64_t id, const char *name,
                           QVMAugReply *r)
{
    QVMAugCall c = qvmaug_submit_query(aug, id, name);

    qvmaug_collect(aug, &c, r);
    g_assert_cmpuint(le64_to_cpu(r->hdr.id), ==, id);
    return le16_to_cpu(r->hdr.status);
}

/* @resp is a GenericError saying exactly @desc; frees @resp. */
void qvmaug_qmp_error(QDict *resp, const char *desc)
                      {
                      QDict *err = qdict_get_qdict(resp, "error");

    g_assert(err);
    g_assert_cmpstr(qdict_get_str(err, "class"), ==, "GenericError");
    g_assert_cmpstr(qdict_get_str(err, "desc"), ==, desc);
    qobject_unref(resp);
}

void qvmaug_assert_qemu_alive(void)
{
    QDict *resp = qmp("{ 'execute': 'query-status' }");

    g_assert(qdict_haskey(resp, "return"));
    qobject_unref(resp);
}

uint16_t qvmaug_used_idx(QVirtQueue *vq)
{
    return qtest_readw(global_qtest, vq->used + 2);
}

/*
 * Wait for the device to mark itself broken, and check that it handed
 * nothing back on @vq: the violating chain is detached, not answered.
 */
void qvmaug_wait_broken(QVMAugment *aug, QVirtQueue *vq, uint16_t used)
{
    gint64 end = g_get_monotonic_time() + QVMAUG_TIMEOUT_US;

    while (!qvmaug_broken(aug)) {
        g_assert(g_get_monotonic_time() < end);
        qtest_clock_step(global_qtest, 100);
    }
    g_assert_cmpuint(qvmaug_used_idx(vq), ==, used);
    qvmaug_assert_qemu_alive();
}

void *qvmaug_helper_before(GString *cmd_line, void *arg)
{
    QVMAugmentHelper *h = qvmh_new();

    g_string_append_printf(cmd_line, " -chardev socket,id=vmaug-helper,path=%s",
                           h->path);
    h->cmdline = g_strdup(cmd_line->str);
    g_test_queue_destroy(qvmh_free, h);
    return h;
}

QOSGraphTestOptions qvmaug_helper_opts(bool fast)
{
    QOSGraphTestOptions opts = {
        .before = qvmaug_helper_before,
        .edge.extra_device_opts = fast ? "chardev=vmaug-helper,"
                                         "request-timeout-ms=1000"
                                       : "chardev=vmaug-helper",
    };

    return opts;
}

/*
 * Wait until the device reports the helper as @state.  Reads config space
 * rather than sending VERSION: libqos never reuses descriptors, so a busy
 * loop of requests would run out of them.
 */
void qvmaug_wait_helper_state(QVMAugment *aug, uint32_t state)
{
    gint64 end = g_get_monotonic_time() + QVMAUG_TIMEOUT_US;
    struct vmaug_version_info info;

    while (qvirtio_config_readl(aug->vdev,
               offsetof(struct virtio_vmaugment_config, helper_state)) !=
           state) {
        g_assert(g_get_monotonic_time() < end);
        g_usleep(1000);
    }
    g_assert_cmpuint(qvmaug_send_version(aug, &info), ==, VMAUG_S_OK);
    g_assert_cmpuint(le32_to_cpu(info.helper_state), ==, state);
}

/* Connect as the helper of a VM that runs, and prepare its image. */
void qvmaug_helper_connect(QVMAugmentHelper *h, QVMAugment *aug)
{
    g_autofree char *image = qvmh_hello(h);

    g_assert_cmpstr(image, ==, "");
    qvmh_start_done(h, VMAUG_S_OK, NULL);
    qvmaug_wait_helper_state(aug, VMAUG_HELPER_CONNECTED);
}

/* Read the REQUEST a QMP command made; returns its payload length. */
uint32_t qvmaug_expect_admin(QVMAugmentHelper *h, uint16_t opcode,
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
