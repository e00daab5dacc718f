/*
 * QTest testcases for the vmaugment QMP administration: the commands
 * QEMU answers itself and those it relays to the helper (played with the
 * helper double of libqos/vmaugment.c), their errors and events.
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
    qvmaug_qmp_error(qmp("{ 'execute': 'query-vmaugment-modules' }"),
                     "vmaugment: the host helper is not connected");
    qvmaug_qmp_error(qmp("{ 'execute': 'vmaugment-unload',"
                         "  'arguments': { 'device': 'no-such-device',"
                         "                 'name': 'x' } }"),
                     "Device 'no-such-device' is not a vmaugment device");
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
            .ref = qvmaugment_module_ref("printer", "1.1"),
            .kind = cpu_to_le32(VMAUG_KIND_COMMUNICATION),
            .state = cpu_to_le32(VMAUG_MODULE_LOADED),
            .events = cpu_to_le32(VMAUG_EVENT_MASK(VMAUG_EVENT_IMAGE_START)),
        },
    };
    struct vmaug_list_req req;
    QDict *resp, *m;
    QList *list;
    uint64_t tag;

    qvmaug_helper_connect(h, obj);
    qtest_qmp_send(global_qtest,
                   "{ 'execute': 'query-vmaugment-modules' }");
    g_assert_cmpuint(qvmaug_expect_admin(h, VMAUG_OP_LIST, &tag, &req,
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
    qvmaug_expect_admin(h, VMAUG_OP_LIST, &tag, &req, sizeof(req));
    answer.hdr.count = cpu_to_le32(2);
    qvmh_respond(h, tag, VMAUG_S_OK, &answer, sizeof(answer));
    qvmaug_qmp_error(qtest_qmp_receive(global_qtest),
                     "vmaugment: malformed listing from the host helper");
    qvmaug_assert_qemu_alive();
}

static void test_helper_qmp_register(void *obj, void *data,
                                     QGuestAllocator *t_alloc)
{
    QVMAugmentHelper *h = data;
    static const char denied[] = "policy forbids scanner";
    static const char pinned[] = "scanner is pinned by the host owner";
    struct vmaug_registration reg;
    QDict *resp;
    uint64_t tag;

    qvmaug_helper_connect(h, obj);
    qtest_qmp_send(global_qtest,
                   "{ 'execute': 'vmaugment-register', 'arguments': {"
                   "  'name': 'scanner', 'version': '2.0', 'required': true,"
                   "  'events': [ 'image-start', 'image-stop' ] } }");
    g_assert_cmpuint(qvmaug_expect_admin(h, VMAUG_OP_REGISTER, &tag, &reg,
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

    /*
     * A registration the host owner pinned is kept by the helper, which
     * refuses QMP's change of it like the guest's (QEMU runs beside the
     * guest): the refusal reaches QMP with its reason, and QEMU neither
     * retries nor passes it for success.
     */
    qtest_qmp_send(global_qtest,
                   "{ 'execute': 'vmaugment-register', 'arguments': {"
                   "  'name': 'scanner', 'events': [ 'image-start' ] } }");
    qvmaug_expect_admin(h, VMAUG_OP_REGISTER, &tag, &reg, sizeof(reg));
    g_assert(tag & (1ULL << 63));
    g_assert_cmphex(le32_to_cpu(reg.flags), ==, 0);
    qvmh_respond(h, tag, VMAUG_S_DENIED, pinned, strlen(pinned));
    qvmaug_qmp_error(qtest_qmp_receive(global_qtest),
                     "vmaugment: the host helper answered: denied: "
                     "scanner is pinned by the host owner");
    qtest_qmp_send(global_qtest,
                   "{ 'execute': 'vmaugment-unregister',"
                   "  'arguments': { 'name': 'scanner' } }");
    qvmaug_expect_admin(h, VMAUG_OP_UNREGISTER, &tag, &reg.ref,
                        sizeof(reg.ref));
    g_assert(tag & (1ULL << 63));
    qvmh_respond(h, tag, VMAUG_S_DENIED, pinned, strlen(pinned));
    qvmaug_qmp_error(qtest_qmp_receive(global_qtest),
                     "vmaugment: the host helper answered: denied: "
                     "scanner is pinned by the host owner");

    /* The helper's refusal reaches the host owner with its reason. */
    qtest_qmp_send(global_qtest,
                   "{ 'execute': 'vmaugment-unload',"
                   "  'arguments': { 'name': 'scanner' } }");
    qvmaug_expect_admin(h, VMAUG_OP_UNLOAD, &tag, &reg, sizeof(reg));
    qvmh_respond(h, tag, VMAUG_S_DENIED, denied, strlen(denied));
    qvmaug_qmp_error(qtest_qmp_receive(global_qtest),
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

    qvmaug_helper_connect(h, obj);
    qtest_qmp_send(global_qtest,
                   "{ 'execute': 'vmaugment-unregister',"
                   "  'arguments': { 'name': 'scanner' } }");
    qvmaug_expect_admin(h, VMAUG_OP_UNREGISTER, &tag, &ref, sizeof(ref));
    /* No answer: after request-timeout-ms the command fails... */
    qvmaug_qmp_error(qtest_qmp_receive(global_qtest),
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
    struct vmaug_module_ref ref = qvmaugment_module_ref("printer", "1.0");
    struct virtio_vmaugment_event ev = {
        .type = cpu_to_le32(VMAUG_EVENT_MODULE_CRASHED),
        .len = cpu_to_le32(sizeof(ref)),
    };
    QDict *event, *d;

    qvmaug_helper_connect(h, obj);
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

    qvmh_close(h);
    event = qtest_qmp_eventwait_ref(global_qtest, "VMAUGMENT_HELPER");
    g_assert(!qdict_get_bool(qdict_get_qdict(event, "data"), "connected"));
    qobject_unref(event);
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
            .ref = qvmaugment_module_ref("printer", "1.0"),
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
            .ref = qvmaugment_module_ref("scanner", "1.0"),
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

    qvmaug_helper_connect(h, obj);
    qtest_qmp_send(global_qtest,
                   "{ 'execute': 'query-vmaugment-sandboxes' }");
    qvmaug_expect_admin(h, VMAUG_OP_LIST, &tag, &req, sizeof(req));
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
    qvmaug_expect_admin(h, VMAUG_OP_LIST, &tag, &req, sizeof(req));
    answer.sb[1].missing = cpu_to_le32(VMAUG_SANDBOX_NO_CAPS << 1);
    qvmh_respond(h, tag, VMAUG_S_OK, &answer, sizeof(answer));
    resp = qtest_qmp_receive(global_qtest);
    g_assert(qdict_haskey(resp, "error"));
    qobject_unref(resp);
    answer.sb[1].missing = 0;

    /* A state the protocol does not have fails the command. */
    qtest_qmp_send(global_qtest,
                   "{ 'execute': 'query-vmaugment-sandboxes' }");
    qvmaug_expect_admin(h, VMAUG_OP_LIST, &tag, &req, sizeof(req));
    answer.sb[1].state = cpu_to_le32(9);
    qvmh_respond(h, tag, VMAUG_S_OK, &answer, sizeof(answer));
    qvmaug_qmp_error(qtest_qmp_receive(global_qtest),
                     "vmaugment: the host helper sent an unknown sandbox "
                     "state");
    qvmaug_assert_qemu_alive();
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
    qvmaug_expect_admin(h, VMAUG_OP_LIST, &tag, &req, sizeof(req));
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

    qvmaug_helper_connect(h, obj);
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
    qvmaug_qmp_error(qmp_ui_answer(h, "[1, 2]", 6),
                     "vmaugment: the host helper sent a UI element that is "
                     "not a JSON object");
    qvmaug_qmp_error(qmp_ui_answer(h, element, 4000),
                     "vmaugment: malformed UI element from the host helper");
    qvmaug_assert_qemu_alive();
}

static void register_vmaugment_qmp_test(void)
{
    QOSGraphTestOptions helper = qvmaug_helper_opts(false);
    QOSGraphTestOptions helper_fast = qvmaug_helper_opts(true);

    qos_add_test("qmp/query", "vmaugment", test_qmp_query, NULL);
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
}

libqos_init(register_vmaugment_qmp_test);
