/*
 * QTest testcases for the vmaugment virtio device and its host helper
 * link: relayed requests, the helper's failures, events, reset and
 * migration with requests in flight, played with the helper double of
 * libqos/vmaugment.c (qvmh_*).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <poll.h>
#include <sys/mman.h>
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

static void test_helper_relay(void *obj, void *data, QGuestAllocator *t_alloc)
{
    QVMAugment *aug = obj;
    QVMAugmentHelper *h = data;
    struct vmaug_module_info info = {
        .ref = qvmaugment_module_ref("printer", "1.0"),
        .kind = cpu_to_le32(VMAUG_KIND_COMMUNICATION),
        .state = cpu_to_le32(VMAUG_MODULE_STORED),
    };
    QVMAugCall c;
    QVMAugReply r;
    uint64_t tag;

    qvmaug_helper_connect(h, aug);
    c = qvmaug_submit_query(aug, 42, "printer");
    tag = qvmh_expect_query(h, 42, "printer");
    qvmh_respond(h, tag, VMAUG_S_OK, &info, sizeof(info));
    qvmaug_collect(aug, &c, &r);
    g_assert_cmpuint(le64_to_cpu(r.hdr.id), ==, 42);
    g_assert_cmpuint(le16_to_cpu(r.hdr.opcode), ==, VMAUG_OP_QUERY);
    g_assert_cmpuint(le16_to_cpu(r.hdr.status), ==, VMAUG_S_OK);
    g_assert_cmpuint(le32_to_cpu(r.hdr.len), ==, sizeof(info));
    g_assert_cmpuint(r.used_len, ==, sizeof(r.hdr) + sizeof(info));
    g_assert(memcmp(r.data, &info, sizeof(info)) == 0);

    /* A status the protocol does not know becomes an internal error. */
    c = qvmaug_submit_query(aug, 43, "scanner");
    tag = qvmh_expect_query(h, 43, "scanner");
    qvmh_respond(h, tag, 999, NULL, 0);
    qvmaug_collect(aug, &c, &r);
    g_assert_cmpuint(le64_to_cpu(r.hdr.id), ==, 43);
    qvmaug_assert_empty(&r, VMAUG_S_INTERNAL);
}

static void test_helper_id_reuse(void *obj, void *data,
                                 QGuestAllocator *t_alloc)
{
    QVMAugment *aug = obj;
    QVMAugmentHelper *h = data;
    QVMAugCall first, second;
    QVMAugReply r;
    uint64_t tag;

    qvmaug_helper_connect(h, aug);
    first = qvmaug_submit_query(aug, 7, "printer");
    tag = qvmh_expect_query(h, 7, "printer");
    second = qvmaug_submit_query(aug, 7, "printer");
    qvmaug_collect(aug, &second, &r);
    g_assert_cmpuint(le64_to_cpu(r.hdr.id), ==, 7);
    g_assert_cmpuint(le16_to_cpu(r.hdr.status), ==, VMAUG_S_BUSY);
    qvmaug_assert_message(&r, "request id already in flight");

    qvmh_respond(h, tag, VMAUG_S_NOT_FOUND, NULL, 0);
    qvmaug_collect(aug, &first, &r);
    g_assert_cmpuint(le64_to_cpu(r.hdr.id), ==, 7);
    qvmaug_assert_empty(&r, VMAUG_S_NOT_FOUND);

    /* Once answered, the id may be used again. */
    first = qvmaug_submit_query(aug, 7, "printer");
    tag = qvmh_expect_query(h, 7, "printer");
    qvmh_respond(h, tag, VMAUG_S_OK, NULL, 0);
    qvmaug_collect(aug, &first, &r);
    g_assert_cmpuint(le64_to_cpu(r.hdr.id), ==, 7);
    qvmaug_assert_empty(&r, VMAUG_S_OK);
}

/* Connect offering a request channel; qvmh_* then use the channel. */
static void channel_connect(QVMAugmentHelper *h, QVMAugment *aug)
{
    h->offer_channel = true;
    qvmaug_helper_connect(h, aug);
    g_assert_cmpint(h->chan_fd, >=, 0);
    h->fd = h->chan_fd;
}

/* Nothing to read on @fd now. */
static void assert_quiet(int fd)
{
    struct pollfd pfd = { .fd = fd, .events = POLLIN };

    g_assert_cmpint(poll(&pfd, 1, 0), ==, 0);
}

/*
 * A request the helper does not answer in time, and the next; with
 * @channel, all of it (the REQUESTs, the CANCEL, the answers) on the
 * request channel and nothing on the link.
 */
static void helper_timeout(QVMAugmentHelper *h, QVMAugment *aug,
                           bool channel)
{
    struct vmaug_host_msg msg;
    uint8_t buf[64];
    QVMAugCall c;
    QVMAugReply r;
    uint64_t tag;

    if (channel) {
        channel_connect(h, aug);
    } else {
        qvmaug_helper_connect(h, aug);
    }
    c = qvmaug_submit_query(aug, 11, "slow");
    tag = qvmh_expect_query(h, 11, "slow");
    qtest_clock_step(global_qtest, 1001 * 1000 * 1000);
    qvmaug_collect(aug, &c, &r);
    g_assert_cmpuint(le64_to_cpu(r.hdr.id), ==, 11);
    g_assert_cmpuint(le16_to_cpu(r.hdr.status), ==, VMAUG_S_TIMEOUT);
    qvmaug_assert_message(&r, "host helper did not answer in time");

    /* The helper learns the answer is no longer wanted... */
    g_assert_cmpuint(qvmh_recv(h, &msg, buf, sizeof(buf)), ==, 0);
    g_assert_cmpuint(le16_to_cpu(msg.type), ==, VMAUG_HOST_CANCEL);
    g_assert_cmpuint(le64_to_cpu(msg.tag), ==, tag);
    /* ...and a late answer is dropped without harm. */
    qvmh_respond(h, tag, VMAUG_S_OK, NULL, 0);
    c = qvmaug_submit_query(aug, 12, "slow");
    tag = qvmh_expect_query(h, 12, "slow");
    qvmh_respond(h, tag, VMAUG_S_NOT_FOUND, NULL, 0);
    qvmaug_collect(aug, &c, &r);
    g_assert_cmpuint(le64_to_cpu(r.hdr.id), ==, 12);
    qvmaug_assert_empty(&r, VMAUG_S_NOT_FOUND);
    if (channel) {
        assert_quiet(h->link_fd);
    }
}

static void test_helper_timeout(void *obj, void *data,
                                QGuestAllocator *t_alloc)
{
    helper_timeout(data, obj, false);
}

static void test_helper_disconnect(void *obj, void *data,
                                   QGuestAllocator *t_alloc)
{
    QVMAugment *aug = obj;
    QVMAugmentHelper *h = data;
    QVMAugCall c;
    QVMAugReply r;

    qvmaug_helper_connect(h, aug);
    c = qvmaug_submit_query(aug, 21, "printer");
    qvmh_expect_query(h, 21, "printer");
    qvmh_close(h);
    qvmaug_collect(aug, &c, &r);
    g_assert_cmpuint(le64_to_cpu(r.hdr.id), ==, 21);
    g_assert_cmpuint(le16_to_cpu(r.hdr.status), ==, VMAUG_S_INTERRUPTED);
    qvmaug_assert_message(&r, QVMAUG_MSG_INTERRUPTED);
    qvmaug_wait_helper_state(aug, VMAUG_HELPER_DISCONNECTED);
    g_assert_cmpuint(qvmaug_send_query(aug, 22, "printer", &r), ==,
                     VMAUG_S_UNAVAILABLE);
    qvmaug_assert_message(&r, QVMAUG_MSG_UNAVAILABLE);
}

/* A helper that breaks the protocol is cut off; the guest carries on. */
static void helper_garbage(QVMAugmentHelper *h, QVMAugment *aug,
                           const void *bytes, size_t len)
{
    QVMAugCall c;
    QVMAugReply r;
    char eof;

    qvmaug_helper_connect(h, aug);
    c = qvmaug_submit_query(aug, 31, "printer");
    qvmh_expect_query(h, 31, "printer");
    g_assert_cmpint(write(h->fd, bytes, len), ==, len);
    qvmaug_collect(aug, &c, &r);
    g_assert_cmpuint(le64_to_cpu(r.hdr.id), ==, 31);
    g_assert_cmpuint(le16_to_cpu(r.hdr.status), ==, VMAUG_S_INTERRUPTED);
    qvmaug_assert_message(&r, QVMAUG_MSG_INTERRUPTED);
    qvmh_wait_fd(h->fd, POLLIN);
    g_assert_cmpint(read(h->fd, &eof, 1), ==, 0);
    g_assert_cmpuint(qvmaug_send_query(aug, 32, "printer", &r), ==,
                     VMAUG_S_UNAVAILABLE);
    qvmaug_assert_message(&r, QVMAUG_MSG_UNAVAILABLE);
    qvmaug_assert_qemu_alive();
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
                           QVMAUG_TIMEOUT_US);
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
    struct vmaug_module_ref ref = qvmaugment_module_ref("scanner", "2.1");
    struct virtio_vmaugment_event ev = {
        .type = cpu_to_le32(VMAUG_EVENT_MODULE_LOADED),
        .len = cpu_to_le32(sizeof(ref)),
    };
    struct virtio_vmaugment_event got;
    struct vmaug_module_ref got_ref;
    uint32_t mask;
    uint64_t seq;

    qvmaug_helper_connect(h, aug);
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
    g_assert_cmpuint(qvmaug_send_subscribe(aug,
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
    uint16_t used = qvmaug_used_idx(aug->eventq);
    uint32_t head;

    /*
     * HELPER_CONNECTED is pending; a buffer too small for it is a ring
     * protocol violation.
     */
    qvmaug_helper_connect(data, aug);
    head = qvirtqueue_add(qts, aug->eventq, addr, 64, true, false);
    qvirtqueue_kick(qts, aug->vdev, aug->eventq, head);
    qvmaug_wait_broken(aug, aug->eventq, used);
    guest_free(aug->alloc, addr);
}

static void wait_migration(QTestState *qts, const char *want)
{
    gint64 end = g_get_monotonic_time() + QVMAUG_TIMEOUT_US;

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
    QVMAugCall c;

    qvmaug_helper_connect(h, aug);
    c = qvmaug_submit_query(aug, 51, "printer");
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
    end = g_get_monotonic_time() + QVMAUG_TIMEOUT_US;
    while (qtest_readw(dst, used + 2) == used_idx) {
        g_assert(g_get_monotonic_time() < end);
        qtest_clock_step(dst, 100);
    }
    elem_id = qtest_readl(dst, used + 4 + 8 * (used_idx % aug->reqq->size));
    g_assert_cmpuint(elem_id, ==, c.head);
    g_assert_cmpuint(qtest_readl(dst, used + 8 + 8 * (used_idx %
                                                      aug->reqq->size)),
                     ==, sizeof(resp) + strlen(QVMAUG_MSG_INTERRUPTED));
    qtest_memread(dst, c.in_addr, &resp, sizeof(resp));
    g_assert_cmpuint(le64_to_cpu(resp.id), ==, 51);
    g_assert_cmphex(le16_to_cpu(resp.opcode), ==, VMAUG_OP_QUERY);
    g_assert_cmpuint(le16_to_cpu(resp.status), ==, VMAUG_S_INTERRUPTED);
    g_assert_cmpuint(le32_to_cpu(resp.len), ==, strlen(QVMAUG_MSG_INTERRUPTED));
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
        .ref = qvmaugment_module_ref("printer", "1.0"),
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
    QVMAugCall c;
    QVMAugReply r;
    int i;

    /* Outside RAM: what is written there does not read back. */
    qtest_writeb(qts, VMAUG_TEST_UNMAPPED, 0xa5);
    g_assert_cmphex(qtest_readb(qts, VMAUG_TEST_UNMAPPED), ==, 0);

    qvmaug_helper_connect(h, aug);
    submit_query_unmapped(aug, 81, &out);
    g_assert(!qvmaug_broken(aug));
    tags[0] = qvmh_expect_query(h, 81, "printer");
    guest_free(aug->alloc, out);
    c = qvmaug_submit_query(aug, 82, "scanner");
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
    g_assert(!qvmaug_broken(aug));
    tag = qvmh_expect_query(h, 83, "printer");
    qvmh_respond(h, tag, VMAUG_S_NOT_FOUND, NULL, 0);
    qvirtio_wait_used_elem(qts, aug->vdev, aug->reqq, head, &len,
                           QVMAUG_TIMEOUT_US);
    g_assert_cmpuint(len, ==, sizeof(struct virtio_vmaugment_resp));
    g_assert_cmpuint(qvmaug_used_idx(aug->reqq), ==, 1);
    guest_free(aug->alloc, out);

    c = qvmaug_submit_query(aug, 84, "scanner");
    tag = qvmh_expect_query(h, 84, "scanner");
    qvmh_respond(h, tag, VMAUG_S_NOT_FOUND, NULL, 0);
    qvmaug_collect(aug, &c, &r);
    g_assert_cmpuint(le64_to_cpu(r.hdr.id), ==, 84);
    qvmaug_assert_empty(&r, VMAUG_S_NOT_FOUND);
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
    gint64 end = g_get_monotonic_time() + QVMAUG_TIMEOUT_US;

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

    qvmaug_helper_connect(h, aug);
    qvmaug_submit_query(aug, VMAUG_TEST_MARK0, "printer");
    qvmh_expect_query(h, VMAUG_TEST_MARK0, "printer");
    qvmaug_submit_query(aug, VMAUG_TEST_MARK1, "scanner");
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
                     QVMAUG_RESP_MAX);
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
    QVMAugCall c;
    QVMAugReply r;

    qvmaug_helper_connect(h, aug);
    c = qvmaug_submit_query(aug, 61, "printer");
    tag = qvmh_expect_query(h, 61, "printer");
    used_idx = aug->reqq->last_used_idx;

    qobject_unref(qmp("{ 'execute': 'stop' }"));
    qvmh_respond(h, tag, VMAUG_S_NOT_FOUND, NULL, 0);

    qtest_qmp_send(global_qtest,
                   "{ 'execute': 'query-vmaugment-registrations' }");
    qvmaug_expect_admin(h, VMAUG_OP_LIST, &tag, &req, sizeof(req));
    qvmh_respond(h, tag, VMAUG_S_OK, &empty, sizeof(empty));
    resp = qtest_qmp_receive(global_qtest);
    g_assert_cmpuint(qlist_size(qdict_get_qlist(resp, "return")), ==, 0);
    qobject_unref(resp);

    /* The guest's answer was read (QMP came after it) but not written. */
    g_assert_cmpuint(qtest_readw(global_qtest, aug->reqq->used + 2), ==,
                     used_idx);
    qobject_unref(qmp("{ 'execute': 'cont' }"));
    qvmaug_collect(aug, &c, &r);
    g_assert_cmpuint(le64_to_cpu(r.hdr.id), ==, 61);
    qvmaug_assert_empty(&r, VMAUG_S_NOT_FOUND);
}

/* ---- The request channel (docs/protocol.rst) ---- */

/* Guest requests and their CANCEL go on the channel, never the link. */
static void test_channel_relay(void *obj, void *data, QGuestAllocator *t_alloc)
{
    helper_timeout(data, obj, true);
}

typedef struct {
    QVMAugmentHelper *h;
    uint64_t id;
} ChannelResponder;

/* The helper's side while the device waits for it in the guest's kick. */
static gpointer channel_respond(gpointer opaque)
{
    ChannelResponder *cr = opaque;
    uint64_t tag = qvmh_expect_query(cr->h, cr->id, "printer");

    qvmh_respond(cr->h, tag, VMAUG_S_NOT_FOUND, NULL, 0);
    return NULL;
}

/* Answers that come while the kick waits for them (relay-wait-us). */
static void test_channel_wait(void *obj, void *data, QGuestAllocator *t_alloc)
{
    QVMAugment *aug = obj;
    QVMAugmentHelper *h = data;

    channel_connect(h, aug);
    for (uint64_t id = 81; id < 91; id++) {
        ChannelResponder cr = { .h = h, .id = id };
        GThread *t = g_thread_new("responder", channel_respond, &cr);
        QVMAugCall c = qvmaug_submit_query(aug, id, "printer");
        QVMAugReply r;

        g_thread_join(t);
        qvmaug_collect(aug, &c, &r);
        g_assert_cmpuint(le64_to_cpu(r.hdr.id), ==, id);
        qvmaug_assert_empty(&r, VMAUG_S_NOT_FOUND);
    }
    assert_quiet(h->link_fd);
}

typedef struct {
    QVMAugmentHelper *h;
    int kicked;             /* atomic: the guest's kick has returned */
} LateResponder;

/* Answers only once the kick has returned, or after 10 s. */
static gpointer channel_respond_late(gpointer opaque)
{
    LateResponder *lr = opaque;
    uint64_t tag = qvmh_expect_query(lr->h, 93, "printer");

    for (int ms = 0; ms < 10000 && !g_atomic_int_get(&lr->kicked); ms++) {
        g_usleep(1000);
    }
    qvmh_respond(lr->h, tag, VMAUG_S_NOT_FOUND, NULL, 0);
    return NULL;
}

/*
 * A wait shorter than its first poll (relay-wait-us=10) ends when its
 * bound does: the kick returns without the answer, which the main loop
 * then takes.  Its bound once gone by, the wait is not one without any.
 */
static void test_channel_short_wait(void *obj, void *data,
                                    QGuestAllocator *t_alloc)
{
    QVMAugment *aug = obj;
    LateResponder lr = { .h = data };
    GThread *t;
    QVMAugCall c;
    QVMAugReply r;
    gint64 start;

    channel_connect(lr.h, aug);
    t = g_thread_new("late-responder", channel_respond_late, &lr);
    start = g_get_monotonic_time();
    c = qvmaug_submit_query(aug, 93, "printer");
    g_assert_cmpint(g_get_monotonic_time() - start, <, 5 * G_USEC_PER_SEC);
    g_atomic_int_set(&lr.kicked, 1);
    g_thread_join(t);
    qvmaug_collect(aug, &c, &r);
    g_assert_cmpuint(le64_to_cpu(r.hdr.id), ==, 93);
    qvmaug_assert_empty(&r, VMAUG_S_NOT_FOUND);
}

/*
 * A helper that breaks the channel's rules is cut off like one that
 * breaks the link's: @bytes written to @fd (the link or the channel)
 * while a guest request is in flight.
 */
static void channel_garbage(QVMAugmentHelper *h, QVMAugment *aug,
                            bool on_link, const void *bytes, size_t len)
{
    QVMAugCall c;
    QVMAugReply r;
    char eof;

    channel_connect(h, aug);
    c = qvmaug_submit_query(aug, 91, "printer");
    qvmh_expect_query(h, 91, "printer");
    if (bytes) {
        g_assert_cmpint(write(on_link ? h->link_fd : h->chan_fd, bytes, len),
                        ==, len);
    } else {
        close(h->chan_fd);
        h->fd = h->chan_fd = -1;
    }
    qvmaug_collect(aug, &c, &r);
    g_assert_cmpuint(le64_to_cpu(r.hdr.id), ==, 91);
    g_assert_cmpuint(le16_to_cpu(r.hdr.status), ==, VMAUG_S_INTERRUPTED);
    qvmaug_assert_message(&r, QVMAUG_MSG_INTERRUPTED);
    qvmh_wait_fd(h->link_fd, POLLIN);
    g_assert_cmpint(read(h->link_fd, &eof, 1), ==, 0);
    g_assert_cmpuint(qvmaug_send_query(aug, 92, "printer", &r), ==,
                     VMAUG_S_UNAVAILABLE);
    qvmaug_assert_qemu_alive();
}

#define CHANNEL_RESPONSE_LEN (sizeof(struct vmaug_host_msg) + \
                              sizeof(struct virtio_vmaugment_resp))

/* A response with @tag and no payload, as one write. */
static void channel_response(uint64_t tag, uint8_t *buf)
{
    struct vmaug_host_msg msg = {
        .magic = cpu_to_le32(VMAUG_HOST_MAGIC),
        .type = cpu_to_le16(VMAUG_HOST_RESPONSE),
        .len = cpu_to_le32(sizeof(struct virtio_vmaugment_resp)),
        .tag = cpu_to_le64(tag),
    };
    struct virtio_vmaugment_resp resp = {};

    memcpy(buf, &msg, sizeof(msg));
    memcpy(buf + sizeof(msg), &resp, sizeof(resp));
}

static void test_channel_not_answer(void *obj, void *data,
                                    QGuestAllocator *t_alloc)
{
    struct {
        struct vmaug_host_msg msg;
        struct virtio_vmaugment_event ev;
    } QEMU_PACKED ev = {
        .msg = {
            .magic = cpu_to_le32(VMAUG_HOST_MAGIC),
            .type = cpu_to_le16(VMAUG_HOST_EVENT),
            .len = cpu_to_le32(sizeof(struct virtio_vmaugment_event)),
        },
        .ev = { .type = cpu_to_le32(VMAUG_EVENT_MODULE_UNLOADED) },
    };

    /* An event is the link's, not the channel's. */
    channel_garbage(data, obj, false, &ev, sizeof(ev));
}

static void test_channel_owner_answer(void *obj, void *data,
                                      QGuestAllocator *t_alloc)
{
    uint8_t bad[CHANNEL_RESPONSE_LEN];

    /* The host owner's requests and answers stay on the link. */
    channel_response(1ULL << 63, bad);
    channel_garbage(data, obj, false, bad, sizeof(bad));
}

static void test_channel_answer_on_link(void *obj, void *data,
                                        QGuestAllocator *t_alloc)
{
    uint8_t bad[CHANNEL_RESPONSE_LEN];

    /* The guest's answers come on the channel once there is one. */
    channel_response(0, bad);
    channel_garbage(data, obj, true, bad, sizeof(bad));
}

static void test_channel_closed(void *obj, void *data,
                                QGuestAllocator *t_alloc)
{
    channel_garbage(data, obj, false, NULL, 0);
}

/* A HELLO that says it passes a channel and does not. */
static void test_channel_missing(void *obj, void *data,
                                 QGuestAllocator *t_alloc)
{
    QVMAugment *aug = obj;
    QVMAugmentHelper *h = data;
    struct vmaug_host_hello hello = {
        .proto_version = cpu_to_le32(VMAUG_PROTO_VERSION),
        .flags = cpu_to_le32(VMAUG_HOST_HELLO_F_CHANNEL),
    };
    struct vmaug_host_msg msg;
    uint8_t buf[sizeof(hello) + 2 * VMAUG_HOST_PATH_MAX];
    QVMAugReply r;

    qvmh_wait_fd(h->listen_fd, POLLIN);
    h->fd = h->link_fd = accept(h->listen_fd, NULL, NULL);
    g_assert_cmpint(h->fd, >=, 0);
    qvmh_recv_any(h, &msg, buf, sizeof(buf));
    g_assert_cmpuint(le16_to_cpu(msg.type), ==, VMAUG_HOST_HELLO);
    qvmh_send(h, VMAUG_HOST_HELLO, 0, &hello, sizeof(hello), NULL, 0);
    for (;;) {
        ssize_t n;

        qvmh_wait_fd(h->fd, POLLIN);
        n = read(h->fd, buf, sizeof(buf));
        g_assert_cmpint(n, >=, 0);
        if (n == 0) {
            break;      /* cut off; lifecycle notices may come first */
        }
    }
    g_assert_cmpuint(qvmaug_send_query(aug, 93, "printer", &r), ==,
                     VMAUG_S_UNAVAILABLE);
    qvmaug_assert_qemu_alive();
}

/* ---- The upload area (docs/protocol.rst, UPLOAD_AREA) ---- */

#define AREA_SIZE   ((size_t)VMAUG_HOST_AREA_SLOTS * VMAUG_CHUNK_MAX_DATA)
#define AREA_SEALS  (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

/* A memfd of @size bytes with @seals, as the helper makes it. */
static int area_memfd(size_t size, unsigned int seals)
{
    int fd = memfd_create("vmaugment-test-area", MFD_ALLOW_SEALING);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, size), ==, 0);
    if (seals) {
        g_assert_cmpint(fcntl(fd, F_ADD_SEALS, seals), ==, 0);
    }
    return fd;
}

/*
 * Connect with a channel and pass the device @fd as its upload area; once
 * the device answered an IMAGE_ACCESS sent after it, it took the area or
 * (@ok false) hung up.
 */
static void area_connect(QVMAugmentHelper *h, QVMAugment *aug, int fd,
                         bool ok)
{
    struct vmaug_host_upload_area ua = {
        .slots = cpu_to_le32(VMAUG_HOST_AREA_SLOTS),
        .slot_size = cpu_to_le32(VMAUG_CHUNK_MAX_DATA),
    };
    char eof;

    channel_connect(h, aug);
    h->fd = h->link_fd;
    qvmh_send_fd(h, VMAUG_HOST_UPLOAD_AREA, 0, &ua, sizeof(ua), fd);
    close(fd);
    if (ok) {
        /* No start is held: BUSY, after the area was taken. */
        g_assert_cmpuint(qvmh_image_access(h, 5, VMAUG_IMAGE_RELEASE, NULL),
                         ==, VMAUG_S_BUSY);
        h->fd = h->chan_fd;
        return;
    }
    for (;;) {
        qvmh_wait_fd(h->link_fd, POLLIN);
        if (read(h->link_fd, &eof, 1) <= 0) {
            break;
        }
    }
    qvmaug_assert_qemu_alive();
}

/* The guest's UPLOAD_CHUNK of @len bytes of @fill at @offset. */
static QVMAugCall area_submit_chunk(QVMAugment *aug, uint64_t id,
                                    uint64_t offset, uint8_t fill,
                                    uint32_t len)
{
    struct vmaug_upload_chunk c = {
        .upload_id = cpu_to_le64(77),
        .offset = cpu_to_le64(offset),
    };
    g_autofree uint8_t *p = g_malloc(sizeof(c) + len);

    memcpy(p, &c, sizeof(c));
    memset(p + sizeof(c), fill, len);
    return qvmaug_submit(aug, id, VMAUG_OP_UPLOAD_CHUNK, p, sizeof(c) + len,
                         QVMAUG_RESP_MAX);
}

/*
 * Read the device's relay of the chunk @id of @len bytes of @fill: in
 * slot @slot of @area, or (@slot -1) inline in a REQUEST.  Returns its tag.
 */
static uint64_t area_expect_chunk(QVMAugmentHelper *h, const uint8_t *area,
                                  uint64_t id, uint8_t fill, uint32_t len,
                                  int slot)
{
    struct vmaug_host_area_request ar;
    struct virtio_vmaugment_req req;
    struct vmaug_upload_chunk c;
    struct vmaug_host_msg msg;
    g_autofree uint8_t *buf = g_malloc(VMAUG_HOST_MAX_MSG);
    const uint8_t *data;
    uint32_t n = qvmh_recv(h, &msg, buf, VMAUG_HOST_MAX_MSG);
    size_t at = 0;

    if (slot >= 0) {
        g_assert_cmpuint(le16_to_cpu(msg.type), ==, VMAUG_HOST_AREA_REQUEST);
        g_assert_cmpuint(n, ==, sizeof(ar) + sizeof(req) + sizeof(c));
        memcpy(&ar, buf, sizeof(ar));
        g_assert_cmpuint(le32_to_cpu(ar.slot), ==, slot);
        g_assert_cmpuint(ar.reserved, ==, 0);
        at = sizeof(ar);
        data = area + (size_t)slot * VMAUG_CHUNK_MAX_DATA;
    } else {
        g_assert_cmpuint(le16_to_cpu(msg.type), ==, VMAUG_HOST_REQUEST);
        g_assert_cmpuint(n, ==, sizeof(req) + sizeof(c) + len);
        data = buf + sizeof(req) + sizeof(c);
    }
    memcpy(&req, buf + at, sizeof(req));
    memcpy(&c, buf + at + sizeof(req), sizeof(c));
    g_assert_cmpuint(le64_to_cpu(req.id), ==, id);
    g_assert_cmpuint(le16_to_cpu(req.opcode), ==, VMAUG_OP_UPLOAD_CHUNK);
    /* The request's length counts the data, wherever it travels. */
    g_assert_cmpuint(le32_to_cpu(req.len), ==, sizeof(c) + len);
    g_assert_cmpuint(le64_to_cpu(c.upload_id), ==, 77);
    for (uint32_t i = 0; i < len; i++) {
        g_assert_cmphex(data[i], ==, fill);
    }
    return le64_to_cpu(msg.tag);
}

static void area_answer(QVMAugmentHelper *h, QVMAugment *aug, uint64_t tag,
                        QVMAugCall *c, uint64_t id)
{
    QVMAugReply r;

    qvmh_respond(h, tag, VMAUG_S_OK, NULL, 0);
    qvmaug_collect(aug, c, &r);
    g_assert_cmpuint(le64_to_cpu(r.hdr.id), ==, id);
    qvmaug_assert_empty(&r, VMAUG_S_OK);
}

/* The helper's AREA_RELEASE of @slot, on the channel. */
static void area_release(QVMAugmentHelper *h, uint32_t slot)
{
    struct vmaug_host_area_release rel = { .slot = cpu_to_le32(slot) };

    qvmh_send(h, VMAUG_HOST_AREA_RELEASE, 0, &rel, sizeof(rel), NULL, 0);
}

/*
 * Chunks' data in the slots, two in flight, more inline in their
 * REQUESTs while both are busy; a slot is written again only after the
 * helper released it, not after its answer, also when its request timed
 * out.  Everything on the channel.
 */
static void test_area_chunks(void *obj, void *data, QGuestAllocator *t_alloc)
{
    QVMAugment *aug = obj;
    QVMAugmentHelper *h = data;
    int fd = area_memfd(AREA_SIZE, AREA_SEALS);
    uint8_t *area = mmap(NULL, AREA_SIZE, PROT_READ, MAP_SHARED, fd, 0);
    QVMAugCall c1, c2, c3, c4;
    struct vmaug_host_msg msg;
    uint8_t buf[64];
    QVMAugReply r;
    uint64_t t1, t2, t3, t4;

    g_assert(area != MAP_FAILED);
    area_connect(h, aug, fd, true);

    c1 = area_submit_chunk(aug, 101, 0, 0xa1, VMAUG_CHUNK_MAX_DATA);
    t1 = area_expect_chunk(h, area, 101, 0xa1, VMAUG_CHUNK_MAX_DATA, 0);
    c2 = area_submit_chunk(aug, 102, 0, 0xb2, 4096);
    t2 = area_expect_chunk(h, area, 102, 0xb2, 4096, 1);
    c3 = area_submit_chunk(aug, 103, 0, 0xc3, 333);
    t3 = area_expect_chunk(h, area, 103, 0xc3, 333, -1);
    /* Busy slots were not written over by the inline one. */
    g_assert_cmphex(area[VMAUG_CHUNK_MAX_DATA - 1], ==, 0xa1);
    g_assert_cmphex(area[VMAUG_CHUNK_MAX_DATA], ==, 0xb2);
    /* Answered, not released: still the helper's. */
    area_answer(h, aug, t2, &c2, 102);
    c2 = area_submit_chunk(aug, 104, 0, 0xd4, 1);
    t2 = area_expect_chunk(h, area, 104, 0xd4, 1, -1);
    g_assert_cmphex(area[VMAUG_CHUNK_MAX_DATA], ==, 0xb2);
    /* Released: the device reads that before the answer after it. */
    area_release(h, 1);
    area_answer(h, aug, t2, &c2, 104);
    c4 = area_submit_chunk(aug, 105, 0, 0xe5, 100);
    t4 = area_expect_chunk(h, area, 105, 0xe5, 100, 1);
    /* A slot may be released before its answer: it was read. */
    area_release(h, 0);
    area_release(h, 1);
    area_answer(h, aug, t1, &c1, 101);
    area_answer(h, aug, t3, &c3, 103);
    area_answer(h, aug, t4, &c4, 105);

    /* A chunk that times out keeps its slot until the helper releases it. */
    c1 = area_submit_chunk(aug, 106, 0, 0xf6, 100);
    t1 = area_expect_chunk(h, area, 106, 0xf6, 100, 0);
    qtest_clock_step(global_qtest, 1001 * 1000 * 1000);
    qvmaug_collect(aug, &c1, &r);
    g_assert_cmpuint(le16_to_cpu(r.hdr.status), ==, VMAUG_S_TIMEOUT);
    g_assert_cmpuint(qvmh_recv(h, &msg, buf, sizeof(buf)), ==, 0);
    g_assert_cmpuint(le16_to_cpu(msg.type), ==, VMAUG_HOST_CANCEL);
    g_assert_cmpuint(le64_to_cpu(msg.tag), ==, t1);
    /* The late answer reaches no guest and frees nothing. */
    qvmh_respond(h, t1, VMAUG_S_OK, NULL, 0);
    c2 = area_submit_chunk(aug, 107, 0, 0x17, 100);
    t2 = area_expect_chunk(h, area, 107, 0x17, 100, 1);
    c3 = area_submit_chunk(aug, 108, 0, 0x28, 100);
    t3 = area_expect_chunk(h, area, 108, 0x28, 100, -1);
    g_assert_cmphex(area[0], ==, 0xf6);
    area_release(h, 0);
    area_answer(h, aug, t2, &c2, 107);
    area_answer(h, aug, t3, &c3, 108);
    c4 = area_submit_chunk(aug, 109, 0, 0x39, 100);
    t4 = area_expect_chunk(h, area, 109, 0x39, 100, 0);
    area_answer(h, aug, t4, &c4, 109);

    /* A malformed chunk is refused by the device and takes no slot. */
    c1 = area_submit_chunk(aug, 110, 0, 0x4a, 0);
    qvmaug_collect(aug, &c1, &r);
    g_assert_cmpuint(le16_to_cpu(r.hdr.status), ==, VMAUG_S_INVALID);
    assert_quiet(h->chan_fd);
    assert_quiet(h->link_fd);
    munmap(area, AREA_SIZE);
}

/* A release of a slot the device did not fill, or on the link. */
static void area_bad_release(QVMAugmentHelper *h, QVMAugment *aug,
                             bool on_link)
{
    struct {
        struct vmaug_host_msg msg;
        struct vmaug_host_area_release rel;
    } QEMU_PACKED bad = {
        .msg = {
            .magic = cpu_to_le32(VMAUG_HOST_MAGIC),
            .type = cpu_to_le16(VMAUG_HOST_AREA_RELEASE),
            .len = cpu_to_le32(sizeof(struct vmaug_host_area_release)),
        },
    };

    channel_garbage(h, aug, on_link, &bad, sizeof(bad));
}

static void test_area_release_free(void *obj, void *data,
                                   QGuestAllocator *t_alloc)
{
    area_bad_release(data, obj, false);
}

static void test_area_release_on_link(void *obj, void *data,
                                      QGuestAllocator *t_alloc)
{
    area_bad_release(data, obj, true);
}

/* An area that could shrink under QEMU's mapping is refused. */
static void test_area_unsealed(void *obj, void *data,
                               QGuestAllocator *t_alloc)
{
    area_connect(data, obj, area_memfd(AREA_SIZE, F_SEAL_GROW), false);
}

/*
 * A file that takes no seals, of the right size: F_GET_SEALS fails on
 * it, and it could be cut under the mapping.
 */
static void test_area_not_memfd(void *obj, void *data,
                                QGuestAllocator *t_alloc)
{
    QVMAugmentHelper *h = data;
    g_autofree char *path = g_build_filename(h->dir, "area", NULL);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);

    g_assert_cmpint(fd, >=, 0);
    unlink(path);
    g_assert_cmpint(ftruncate(fd, AREA_SIZE), ==, 0);
    if (fcntl(fd, F_GET_SEALS) >= 0) {
        close(fd);
        g_test_skip("this directory's filesystem takes seals");
        return;
    }
    area_connect(h, obj, fd, false);
}

static void test_area_small(void *obj, void *data, QGuestAllocator *t_alloc)
{
    area_connect(data, obj, area_memfd(AREA_SIZE / 2, AREA_SEALS), false);
}

/* A second area, while the first is in use. */
static void test_area_twice(void *obj, void *data, QGuestAllocator *t_alloc)
{
    QVMAugmentHelper *h = data;
    struct vmaug_host_upload_area ua = {
        .slots = cpu_to_le32(VMAUG_HOST_AREA_SLOTS),
        .slot_size = cpu_to_le32(VMAUG_CHUNK_MAX_DATA),
    };
    int fd = area_memfd(AREA_SIZE, AREA_SEALS);
    char eof;

    area_connect(h, obj, area_memfd(AREA_SIZE, AREA_SEALS), true);
    h->fd = h->link_fd;
    qvmh_send_fd(h, VMAUG_HOST_UPLOAD_AREA, 0, &ua, sizeof(ua), fd);
    close(fd);
    qvmh_wait_fd(h->link_fd, POLLIN);
    g_assert_cmpint(read(h->link_fd, &eof, 1), ==, 0);
    qvmaug_assert_qemu_alive();
}

static void register_vmaugment_helper_test(void)
{
    QOSGraphTestOptions helper = qvmaug_helper_opts(false);
    QOSGraphTestOptions helper_fast = qvmaug_helper_opts(true);
    /* The longest wait: a responder thread gets scheduled within it. */
    QOSGraphTestOptions helper_wait = {
        .before = qvmaug_helper_before,
        .edge.extra_device_opts = "chardev=vmaug-helper,relay-wait-us=2000",
    };
    /* A wait shorter than the poll that starts it. */
    QOSGraphTestOptions helper_short = {
        .before = qvmaug_helper_before,
        .edge.extra_device_opts = "chardev=vmaug-helper,relay-wait-us=10",
    };

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
    qos_add_test("helper/paused", "vmaugment", test_helper_paused, &helper);
    qos_add_test("area/chunks", "vmaugment", test_area_chunks,
                 &helper_fast);
    qos_add_test("area/unsealed", "vmaugment", test_area_unsealed, &helper);
    qos_add_test("area/small", "vmaugment", test_area_small, &helper);
    qos_add_test("area/not-memfd", "vmaugment", test_area_not_memfd,
                 &helper);
    qos_add_test("area/twice", "vmaugment", test_area_twice, &helper);
    qos_add_test("area/release-free", "vmaugment", test_area_release_free,
                 &helper);
    qos_add_test("area/release-on-link", "vmaugment",
                 test_area_release_on_link, &helper);
    qos_add_test("channel/relay", "vmaugment", test_channel_relay,
                 &helper_fast);
    qos_add_test("channel/wait", "vmaugment", test_channel_wait,
                 &helper_wait);
    qos_add_test("channel/short-wait", "vmaugment", test_channel_short_wait,
                 &helper_short);
    qos_add_test("channel/not-answer", "vmaugment", test_channel_not_answer,
                 &helper);
    qos_add_test("channel/owner-answer", "vmaugment",
                 test_channel_owner_answer, &helper);
    qos_add_test("channel/answer-on-link", "vmaugment",
                 test_channel_answer_on_link, &helper);
    qos_add_test("channel/closed", "vmaugment", test_channel_closed, &helper);
    qos_add_test("channel/missing", "vmaugment", test_channel_missing,
                 &helper);
}

libqos_init(register_vmaugment_helper_test);
