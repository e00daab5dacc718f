/*
 * QTest testcases for the VM's lifecycle with a vmaugment device: the
 * start held until the helper has prepared the image, refusals, timeouts,
 * module restarts and servicing events.  Each test starts QEMUs of its
 * own (with the options of a LifecycleOpts) to watch them start and stop,
 * so these are plain qtests, not qos tests.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include <poll.h>
#include "libqtest.h"
#include "qemu/bswap.h"
#include "libqos/vmaugment.h"
#include "qobject/qdict.h"
#include "qobject/qlist.h"
#include "standard-headers/linux/virtio_vmaugment.h"
#include "standard-headers/vmaugment/host-link.h"

/* ---- Lifecycle: QEMUs of the tests' own, to watch them start and stop ---- */

/* How a lifecycle test's QEMU is started. */
typedef struct LifecycleOpts {
    bool image;             /* the device names h->image */
    bool reconnect;         /* the chardev reconnects to a new helper */
    bool short_start;       /* start-timeout-ms=300 */
    bool disk;              /* h->image is also the VM's disk */
} LifecycleOpts;

static const LifecycleOpts lifecycle_plain = { 0 };
static const LifecycleOpts lifecycle_image = { .image = true };
static const LifecycleOpts lifecycle_image_reconnect = {
    .image = true, .reconnect = true,
};
static const LifecycleOpts lifecycle_image_short = {
    .image = true, .short_start = true,
};
static const LifecycleOpts lifecycle_image_disk = {
    .image = true, .disk = true,
};

static QTestState *lifecycle_vm(QVMAugmentHelper *h, const LifecycleOpts *o)
{
    g_autofree char *image_opt = o->image ?
        g_strdup_printf(",image=%s", h->image) : g_strdup("");
    g_autofree char *disk_opt = NULL;

    if (o->disk) {
        g_assert_cmpint(truncate(h->image, 1024 * 1024), ==, 0);
        disk_opt = g_strdup_printf("-blockdev driver=file,filename=%s,"
                                   "node-name=disk0 "
                                   "-device virtio-blk-pci,drive=disk0 ",
                                   h->image);
    }
    return qtest_initf("-machine q35 -display none %s"
                       "-chardev socket,id=vmaug-helper,path=%s%s "
                       "-device vmaugment-pci,chardev=vmaug-helper%s%s",
                       disk_opt ? disk_opt : "",
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
static void test_image_start(void)
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
    qvmh_close(h);
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
static void test_image_start_refused(void)
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
static void test_image_start_timeout(void)
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
static void test_image_start_bad_answer(void)
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

/*
 * The helper was dropped for a protocol error (its connection's event may
 * have been read, and passed over, while waiting for others).
 */
static void wait_helper_dropped(QTestState *qts)
{
    bool connected;

    do {
        QDict *ev = qtest_qmp_eventwait_ref(qts, "VMAUGMENT_HELPER");

        connected = qdict_get_bool(qdict_get_qdict(ev, "data"), "connected");
        qobject_unref(ev);
    } while (connected);
}

/* Whether the VM's disk node is active (QEMU holds the image). */
static bool disk_active(QTestState *qts)
{
    QDict *resp = qtest_qmp(qts, "{ 'execute': 'query-named-block-nodes', "
                            "'arguments': { 'flat': true } }");
    QListEntry *e;
    bool active = false;
    bool found = false;

    QLIST_FOREACH_ENTRY(qdict_get_qlist(resp, "return"), e) {
        QDict *node = qobject_to(QDict, qlist_entry_obj(e));

        if (g_str_equal(qdict_get_str(node, "node-name"), "disk0")) {
            active = qdict_get_bool(node, "active");
            found = true;
        }
    }
    g_assert(found);
    qobject_unref(resp);
    return active;
}

/* Whether a process holds a lock on the image (QEMU's, bytes 100 on). */
static bool image_locked(QVMAugmentHelper *h)
{
    struct flock fl = {
        .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 100,
        .l_len = 200,
    };
    int fd = open(h->image, O_RDWR);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(fcntl(fd, F_OFD_GETLK, &fl), ==, 0);
    close(fd);
    return fl.l_type != F_UNLCK;
}

/*
 * While the start is held the helper may have QEMU let go of the image
 * (its nodes inactive, its locks dropped) for a host tool to write it,
 * then take it back; the VM runs on active nodes.
 */
static void test_image_access(void)
{
    QVMAugmentHelper *h = qvmh_new();
    QTestState *qts = lifecycle_vm(h, &lifecycle_image_disk);

    g_free(qvmh_hello(h));
    g_assert(disk_active(qts));
    g_assert(image_locked(h));
    g_assert_cmpuint(qvmh_image_access(h, h->start_tag, VMAUG_IMAGE_RELEASE,
                                       NULL), ==, VMAUG_S_OK);
    g_assert(!disk_active(qts));
    g_assert(!image_locked(h));
    assert_run_state(qts, "prelaunch", "waiting");
    /* Twice is once. */
    g_assert_cmpuint(qvmh_image_access(h, h->start_tag, VMAUG_IMAGE_RELEASE,
                                       NULL), ==, VMAUG_S_OK);
    g_assert_cmpuint(qvmh_image_access(h, h->start_tag, VMAUG_IMAGE_RETAKE,
                                       NULL), ==, VMAUG_S_OK);
    g_assert(disk_active(qts));
    g_assert(image_locked(h));

    /*
     * Released again and never taken back: the device takes it back
     * itself before the guest runs.
     */
    g_assert_cmpuint(qvmh_image_access(h, h->start_tag, VMAUG_IMAGE_RELEASE,
                                       NULL), ==, VMAUG_S_OK);
    qvmh_start_done(h, VMAUG_S_OK, NULL);
    g_free(wait_image_start(qts, true));
    qtest_qmp_eventwait(qts, "RESUME");
    g_assert(disk_active(qts));
    g_assert(image_locked(h));
    qtest_quit(qts);
    qvmh_free(h);
}

/*
 * Never while the guest can run: not for another tag, not once the start
 * was decided; a malformed IMAGE_ACCESS is a protocol error.  None of it
 * releases anything.
 */
static void test_image_access_refused(void)
{
    QVMAugmentHelper *h = qvmh_new();
    QTestState *qts = lifecycle_vm(h, &lifecycle_image_disk);
    struct vmaug_host_image_access bad = {
        .op = cpu_to_le32(VMAUG_IMAGE_RELEASE + 7),
    };
    g_autofree char *why = NULL;
    uint64_t tag;

    g_free(qvmh_hello(h));
    g_assert_cmpuint(qvmh_image_access(h, h->start_tag + 1,
                                       VMAUG_IMAGE_RELEASE, &why),
                     ==, VMAUG_S_BUSY);
    g_assert_cmpstr(why, ==, "no image start is held for this tag");
    g_assert_cmpuint(qvmh_image_access(h, 0, VMAUG_IMAGE_RELEASE, NULL),
                     ==, VMAUG_S_BUSY);
    g_assert(disk_active(qts));
    tag = h->start_tag;
    qvmh_start_done(h, VMAUG_S_OK, NULL);
    g_free(wait_image_start(qts, true));
    qtest_qmp_eventwait(qts, "RESUME");
    g_assert_cmpuint(qvmh_image_access(h, tag, VMAUG_IMAGE_RELEASE, NULL),
                     ==, VMAUG_S_BUSY);
    g_assert(disk_active(qts));
    g_assert(image_locked(h));

    /* An unknown op: the helper is dropped, the VM runs on. */
    qvmh_send(h, VMAUG_HOST_IMAGE_ACCESS, tag, &bad, sizeof(bad), NULL, 0);
    wait_helper_dropped(qts);
    assert_run_state(qts, "running", "done");
    g_assert(disk_active(qts));
    qtest_quit(qts);
    qvmh_free(h);
}

/*
 * A short IMAGE_ACCESS while the start is held: a protocol error, and the
 * image stays QEMU's.
 */
static void test_image_access_short(void)
{
    QVMAugmentHelper *h = qvmh_new();
    QTestState *qts = lifecycle_vm(h, &lifecycle_image_disk);
    uint32_t op = cpu_to_le32(VMAUG_IMAGE_RELEASE);

    g_free(qvmh_hello(h));
    qvmh_send(h, VMAUG_HOST_IMAGE_ACCESS, h->start_tag, &op, sizeof(op),
              NULL, 0);
    wait_helper_dropped(qts);
    g_assert(disk_active(qts));
    g_assert(image_locked(h));
    assert_run_state(qts, "prelaunch", "waiting");
    qtest_quit(qts);
    qvmh_free(h);
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
static void test_module_refused_restart(void)
{
    QVMAugmentHelper *h = qvmh_new();
    QTestState *qts = lifecycle_vm(h, &lifecycle_plain);
    struct {
        struct vmaug_module_ref ref;
        char reason[32];
    } QEMU_PACKED refused = {
        .ref = qvmaugment_module_ref("scanner", "2.0"),
    };
    struct vmaug_restart restart = {
        .ref = qvmaugment_module_ref("upgrade", "1.1"),
    };
    QDict *d;

    g_free(qvmh_hello(h));
    qvmh_start_done(h, VMAUG_S_OK, NULL);
    assert_run_state(qts, "running", "done");

    memcpy(refused.reason, "signer not trusted\x1b[2J", 22);
    qvmh_module_event(h, VMAUG_EVENT_MODULE_REFUSED, &refused,
                      sizeof(refused.ref) + 22);
    d = wait_module_event(qts, "refused");
    g_assert_cmpstr(qdict_get_str(d, "name"), ==, "scanner");
    g_assert_cmpstr(qdict_get_str(d, "reason"), ==,
                    "signer not trusted?[2J");
    qobject_unref(d);

    restart.what = cpu_to_le32(VMAUG_RESTART_IMAGE);
    qvmh_module_event(h, VMAUG_EVENT_RESTART_REQUESTED, &restart,
                      sizeof(restart));
    d = wait_module_event(qts, "restart-requested");
    g_assert_cmpstr(qdict_get_str(d, "restart"), ==, "image");
    qobject_unref(d);
    qtest_qmp_eventwait(qts, "RESET");

    /* An unknown scope is ignored, not guessed at. */
    restart.what = cpu_to_le32(7);
    qvmh_module_event(h, VMAUG_EVENT_RESTART_REQUESTED, &restart,
                      sizeof(restart));
    restart.what = cpu_to_le32(VMAUG_RESTART_HOST);
    qvmh_module_event(h, VMAUG_EVENT_RESTART_REQUESTED, &restart,
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

/*
 * A report the helper recorded becomes a VMAUGMENT_SERVICING event with
 * the guest's text in a harmless alphabet; a malformed one is dropped.
 */
static void test_servicing_event(void)
{
    QVMAugmentHelper *h = qvmh_new();
    QTestState *qts = lifecycle_vm(h, &lifecycle_plain);
    struct {
        struct vmaug_servicing_report rep;
        char text[32];
    } QEMU_PACKED ev = {
        .rep = qvmaugment_servicing_report("motd-refresh", "2026.11.1", 7),
    };
    QDict *e, *d;

    g_free(qvmh_hello(h));
    qvmh_start_done(h, VMAUG_S_OK, NULL);
    assert_run_state(qts, "running", "done");

    /* An outcome the protocol does not have is not shown. */
    qvmh_module_event(h, VMAUG_EVENT_SERVICING, &ev, sizeof(ev.rep));
    ev.rep = qvmaugment_servicing_report("motd-refresh", "2026.11.1",
                                         VMAUG_SERVICING_FAILED);
    ev.rep.boot = cpu_to_le32(2);
    memcpy(ev.text, "dpkg failed\x1b[2J\n", 16);
    qvmh_module_event(h, VMAUG_EVENT_SERVICING, &ev, sizeof(ev.rep) + 16);
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

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    qtest_add_func("/vmaugment/lifecycle/servicing-event",
                   test_servicing_event);
    qtest_add_func("/vmaugment/lifecycle/image-start", test_image_start);
    qtest_add_func("/vmaugment/lifecycle/image-start-refused",
                   test_image_start_refused);
    qtest_add_func("/vmaugment/lifecycle/image-start-timeout",
                   test_image_start_timeout);
    qtest_add_func("/vmaugment/lifecycle/image-access", test_image_access);
    qtest_add_func("/vmaugment/lifecycle/image-access-refused",
                   test_image_access_refused);
    qtest_add_func("/vmaugment/lifecycle/image-access-short",
                   test_image_access_short);
    qtest_add_func("/vmaugment/lifecycle/image-start-bad-answer",
                   test_image_start_bad_answer);
    qtest_add_func("/vmaugment/lifecycle/refused-and-restart",
                   test_module_refused_restart);
    return g_test_run();
}
