/*
 * vmaugment-helper driven over its socket exactly as the QEMU device
 * drives it (test-helper.h has the fixture).  Here: what hostile peers
 * try: hostile devices, cancelled requests, stores the host owner did not
 * allow, a tamper corpus over the upload path, a sandbox-escape corpus of
 * signed hostile modules, and a crashed helper restarted under
 * --supervise.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gio/gio.h>
#include <glib-unix.h>
#include <glib/gstdio.h>

#include "test-helper.h"
#include "vm-area.h"
#include "vmaugment-module.h"

/* ---- Hostile devices ---- */

static void test_hostile_device(Fixture *f, gconstpointer data)
{
    g_auto(HelperReply) r = { 0 };
    struct vmaug_module_ref ref;

    /* Malformed requests get error responses, not a dead helper. */
    g_assert_true(helper_client_call(f->c, VMAUG_OP_QUERY, "x", 1, NULL, 0,
                                     &r));
    g_assert_cmpuint(r.status, ==, VMAUG_S_INVALID);
    helper_reply_clear(&r);
    g_assert_true(helper_client_call(f->c, 0x7777, NULL, 0, NULL, 0, &r));
    g_assert_cmpuint(r.status, ==, VMAUG_S_UNSUPPORTED);
    helper_reply_clear(&r);
    memset(&ref, 'A', sizeof(ref));     /* no NUL anywhere */
    g_assert_true(helper_client_call(f->c, VMAUG_OP_LOAD, &ref, sizeof(ref),
                                     NULL, 0, &r));
    g_assert_cmpuint(r.status, ==, VMAUG_S_INVALID);
    helper_reply_clear(&r);
    helper_ref(&ref, "../../etc", NULL);
    g_assert_true(helper_client_call(f->c, VMAUG_OP_LOAD, &ref, sizeof(ref),
                                     NULL, 0, &r));
    g_assert_cmpuint(r.status, ==, VMAUG_S_INVALID);
    helper_reply_clear(&r);
    /* A request whose header lies about its length. */
    {
        struct virtio_vmaugment_req req = {
            .opcode = GUINT16_TO_LE(VMAUG_OP_QUERY),
            .len = GUINT32_TO_LE(1000),
        };

        helper_client_send_msg(f->c, VMAUG_HOST_REQUEST, 999, &req,
                               sizeof(req));
        g_assert_true(helper_client_wait_response(f->c, 999, &r));
        g_assert_cmpuint(r.status, ==, VMAUG_S_INVALID);
        helper_reply_clear(&r);
    }

    /* Framing violations close that connection only. */
    {
        g_autoptr(HelperClient) bad = helper_client_connect(f->socket, NULL);

        helper_client_send_raw(bad, "garbage garbage garbage!", 24);
        g_assert_true(helper_client_closed(bad, 5000));
    }
    {
        g_autoptr(HelperClient) bad = helper_client_connect(f->socket, NULL);
        struct vmaug_host_msg m = {
            .magic = GUINT32_TO_LE(VMAUG_HOST_MAGIC),
            .type = GUINT16_TO_LE(VMAUG_HOST_REQUEST),
            .len = GUINT32_TO_LE(0xffffffff),
        };

        helper_client_send_raw(bad, &m, sizeof(m));
        g_assert_true(helper_client_closed(bad, 5000));
    }
    {
        g_autoptr(HelperClient) bad = helper_client_connect(f->socket, NULL);

        helper_client_send_msg(bad, VMAUG_HOST_HELLO, 0, "again", 5);
        g_assert_true(helper_client_closed(bad, 5000));
    }
    /* A store QEMU names must be one the host owner allowed. */
    {
        g_autoptr(HelperClient) bad = helper_client_connect(f->socket,
                                                            "/etc");

        g_assert_true(helper_client_closed(bad, 5000));
    }
    g_assert_true(helper_client_call(f->c, VMAUG_OP_QUERY, &ref, sizeof(ref),
                                     NULL, 0, &r));
}

static void test_cancel(Fixture *f, gconstpointer data)
{
    struct vmaug_invoke inv = { 0 };
    struct virtio_vmaugment_req req = {
        .opcode = GUINT16_TO_LE(VMAUG_OP_INVOKE),
        .len = GUINT32_TO_LE(sizeof(inv)),
    };
    g_autoptr(GByteArray) msg = g_byte_array_new();
    g_auto(HelperReply) r = { 0 };
    struct vmaug_list_req lr = { .what = GUINT32_TO_LE(VMAUG_LIST_MODULES) };

    upload_module(f, "hostile", "1.0");
    g_assert_cmpuint(helper_load(f->c, "hostile", NULL, NULL), ==,
                     VMAUG_S_OK);
    /* A call that will never answer, cancelled by a device reset. */
    g_strlcpy((gchar *)inv.module, "hostile", sizeof(inv.module));
    g_strlcpy((gchar *)inv.function, "spin", sizeof(inv.function));
    g_byte_array_append(msg, (const guint8 *)&req, sizeof(req));
    g_byte_array_append(msg, (const guint8 *)&inv, sizeof(inv));
    helper_client_send_msg(f->c, VMAUG_HOST_REQUEST, 777, msg->data,
                           msg->len);
    helper_client_send_msg(f->c, VMAUG_HOST_CANCEL, 777, NULL, 0);
    /* The module is killed when its call times out; the cancelled tag is
     * never answered (helper_client_call would fail on a stray tag). */
    g_assert_nonnull(helper_client_wait_event(f->c,
                                              VMAUG_EVENT_MODULE_CRASHED,
                                              10000));
    g_assert_true(helper_client_call(f->c, VMAUG_OP_LIST, &lr, sizeof(lr),
                                     NULL, 0, &r));
    g_assert_cmpuint(r.status, ==, VMAUG_S_OK);
    /* A CANCEL with a payload breaks the framing rules. */
    helper_client_send_msg(f->c, VMAUG_HOST_CANCEL, 1, "x", 1);
    g_assert_true(helper_client_closed(f->c, 5000));
}

static void test_allowed_store(Fixture *f, gconstpointer data)
{
    g_autofree gchar *other = g_build_filename(f->keys->dir, "other-image",
                                               NULL);
    g_autofree gchar *objects = g_build_filename(other, "objects", NULL);
    g_autoptr(HelperClient) c2 = NULL;
    g_autoptr(GBytes) pkg = test_module_package(f->keys->admin, "echo", "1.0");
    const gchar *args[] = { "--allow-store", other, NULL };
    g_autoptr(GDir) d = NULL;

    helper_client_free(f->c);
    helper_kill(f->pid);
    fixture_start(f, args);
    /* Another image, another store: what one uploads the other lacks. */
    c2 = helper_client_connect(f->socket, other);
    g_assert_cmpuint(helper_upload(c2, pkg, "echo", "1.0", 65536), ==,
                     VMAUG_S_OK);
    g_assert_cmpuint(helper_query(c2, "echo", NULL, NULL), ==, VMAUG_S_OK);
    g_assert_cmpuint(helper_query(f->c, "echo", NULL, NULL), ==,
                     VMAUG_S_NOT_FOUND);
    d = g_dir_open(objects, 0, NULL);
    g_assert_nonnull(d);
    g_assert_nonnull(g_dir_read_name(d));
}

/* ---- Tamper corpus over the upload path ---- */

static void test_tamper_upload(Fixture *f, gconstpointer data)
{
    g_autoptr(GBytes) good = test_module_package(f->keys->admin, "echo", "1.0");
    g_autoptr(GBytes) unknown = test_module_package(f->keys->stranger, "echo",
                                                    "1.0");
    g_autoptr(GBytes) expired = test_module_package(f->keys->expired, "echo",
                                                    "1.0");
    g_autoptr(GBytes) revoked = test_module_package(f->keys->revoked, "echo",
                                                    "1.0");
    g_autoptr(GBytes) truncated = g_bytes_new_from_bytes(
        good, 0, g_bytes_get_size(good) - 10);
    g_autofree gchar *audit = audit_path(f);
    g_autofree gchar *before = test_snapshot(f->store, "audit.log");
    g_autofree gchar *after = NULL;
    gsize size = g_bytes_get_size(good);
    GBytes *bad[7];
    guint refusals = test_count_lines(audit, "\"refuse\"");

    bad[0] = test_flip_bit(good, (size - 2000) * 8 + 3);    /* payload */
    bad[1] = test_flip_bit(good, (VMAUG_PKG_HEADER_SIZE + 20) * 8);
    bad[2] = test_flip_bit(good, (size - 40) * 8 + 1);      /* signature */
    bad[3] = g_bytes_ref(unknown);
    bad[4] = g_bytes_ref(expired);
    bad[5] = g_bytes_ref(revoked);
    bad[6] = g_bytes_ref(truncated);
    for (guint i = 0; i < G_N_ELEMENTS(bad); i++) {
        guint16 st = helper_upload(f->c, bad[i], "echo", "1.0", 65536);

        g_assert_true(st == VMAUG_S_DENIED || st == VMAUG_S_INVALID);
        g_bytes_unref(bad[i]);
    }
    after = test_snapshot(f->store, "audit.log");
    g_assert_cmpstr(before, ==, after);
    g_assert_cmpuint(test_count_lines(audit, "\"refuse\""), ==,
                     refusals + G_N_ELEMENTS(bad));
    /* Oversize is refused at BEGIN, before any byte is taken. */
    {
        struct vmaug_upload_begin b = { 0 };
        g_auto(HelperReply) r = { 0 };

        b.total_size = GUINT64_TO_LE(VMAUG_MAX_UPLOAD_SIZE);
        helper_ref(&b.ref, "echo", "9.0");
        g_assert_true(helper_client_call(f->c, VMAUG_OP_UPLOAD_BEGIN, &b,
                                         sizeof(b), NULL, 0, &r));
        g_assert_cmpuint(r.status, ==, VMAUG_S_TOO_BIG);
    }
    /* And the honest package still goes in. */
    g_assert_cmpuint(helper_upload(f->c, good, "echo", "1.0", 65536), ==,
                     VMAUG_S_OK);
}

/* ---- Sandbox-escape corpus ---- */

static void hostile_log(vmaug_host *h, int level, const char *message)
{
}

/*
 * The control for an escape attempt: @function of the hostile module run
 * in a child of this test, outside any sandbox.  Returns the function's
 * status, or -1 when the child ended without answering because execve
 * replaced it (with a program that exited 0).
 */
static gint hostile_unconfined(const gchar *function, const gchar *in)
{
    static const struct vmaug_host_api api = {
        .abi_version = VMAUG_MODULE_ABI_VERSION,
        .size = sizeof(struct vmaug_host_api),
        .log = hostile_log,
    };
    const struct vmaug_module *mod;
    void *so = dlopen(test_env("VMAUG_TEST_HOSTILE_SO"), RTLD_NOW | RTLD_LOCAL);
    gint32 status = -1;
    int fds[2];
    int ws;
    pid_t pid;

    g_assert_nonnull(so);
    mod = dlsym(so, VMAUG_MODULE_SYMBOL);
    g_assert_nonnull(mod);
    g_assert_true(g_unix_open_pipe(fds, FD_CLOEXEC, NULL));
    pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        gchar out[256];
        gsize out_len = 0;
        void *priv = NULL;
        gint32 st;

        if (mod->init(&api, NULL, &priv) != 0) {
            _exit(2);
        }
        st = mod->call(priv, function, in, in != NULL ? strlen(in) : 0, out,
                       sizeof(out), &out_len);
        _exit(write(fds[1], &st, sizeof(st)) == sizeof(st) ? 0 : 3);
    }
    close(fds[1]);
    if (read(fds[0], &status, sizeof(status)) != sizeof(status)) {
        status = -1;
    }
    close(fds[0]);
    g_assert_cmpint(waitpid(pid, &ws, 0), ==, pid);
    g_assert_true(WIFEXITED(ws));
    g_assert_cmpint(WEXITSTATUS(ws), ==, 0);
    dlclose(so);
    return status;
}

/* Whether a connection is waiting on listener @s. */
static gboolean listener_accepts(int s)
{
    int c = accept(s, NULL, NULL);

    if (c < 0) {
        g_assert_cmpint(errno, ==, EAGAIN);
        return FALSE;
    }
    close(c);
    return TRUE;
}

static gsize count_files(const gchar *path)
{
    g_autoptr(GDir) d = g_dir_open(path, 0, NULL);
    gsize n = 0;

    g_assert_nonnull(d);
    while (g_dir_read_name(d) != NULL) {
        n++;
    }
    return n;
}

/*
 * Each attempt and how the sandbox stops it (docs/sandbox.rst): a denied
 * system call or broker request answers DENIED with the step and errno the
 * module saw ("socket 13"); a forbidden system call kills the module with
 * SIGSYS, a protocol violation gets it SIGKILLed by the helper, and a hang
 * is cut off by the call timeout.  The helper's answer to a killed call
 * is "killed by signal N".
 */
typedef enum {
    ESCAPE_ERRNO,               /* DENIED, "step errno" */
    ESCAPE_SIGNAL,              /* MODULE_FAILED, killed by the signal */
    ESCAPE_TIMEOUT,             /* TIMEOUT, then killed */
} EscapeStop;

/* What the same function does outside the sandbox, where that is cheap to
 * show: the attempt is real, so its failure inside is the sandbox's. */
typedef enum {
    UNCONFINED_NOT_RUN,
    UNCONFINED_OK,              /* answers VMAUG_S_OK */
    UNCONFINED_EXEC,            /* the process image is replaced */
} EscapeControl;

static void test_escape(Fixture *f, gconstpointer data)
{
    static const struct {
        const gchar *function;
        EscapeStop stop;
        const gchar *step;      /* ESCAPE_ERRNO: the call that failed */
        int code;               /* its errno, or the signal */
        EscapeControl unconfined;
    } corpus[] = {
        /* No syscall outside the allowlist: killed, never ENOSYS. */
        { "execve", ESCAPE_SIGNAL, NULL, SIGSYS, UNCONFINED_EXEC },
        /* Files by path are denied by the filter (SC_DENY EACCES). */
        { "open", ESCAPE_ERRNO, "open", EACCES, UNCONFINED_OK },
        /* The broker refuses paths out of the state directory. */
        { "open-climb", ESCAPE_ERRNO, "state_open", EINVAL,
          UNCONFINED_NOT_RUN },
        { "open-absolute", ESCAPE_ERRNO, "state_open", EINVAL,
          UNCONFINED_NOT_RUN },
        /* No sockets (SC_DENY EACCES), with a listener that the same
         * code reaches unconfined. */
        { "connect", ESCAPE_ERRNO, "socket", EACCES, UNCONFINED_OK },
        { "ptrace", ESCAPE_SIGNAL, NULL, SIGSYS, UNCONFINED_OK },
        { "fork", ESCAPE_SIGNAL, NULL, SIGSYS, UNCONFINED_OK },
        /* RLIMIT_AS (--memory-mb 128); 8 GiB is not run unconfined. */
        { "alloc", ESCAPE_ERRNO, "malloc", ENOMEM, UNCONFINED_NOT_RUN },
        { "spin", ESCAPE_TIMEOUT, NULL, 0, UNCONFINED_NOT_RUN },
        /* Not a message: the helper closes the link and kills it. */
        { "garbage", ESCAPE_SIGNAL, NULL, SIGKILL, UNCONFINED_NOT_RUN },
        /* An answer larger than a response may be: a protocol error of
         * the module's, never one the helper passes on to the device. */
        { "big-result", ESCAPE_SIGNAL, NULL, SIGKILL, UNCONFINED_NOT_RUN },
        /* PROT_EXEC is outside the mmap rule: killed. */
        { "exec-memory", ESCAPE_SIGNAL, NULL, SIGSYS, UNCONFINED_OK },
        /* Budgets: 64 events per call, 1024 state entries (the test
         * fills the directory to 1000 first, so that the module's own
         * creations reach the bound within one call's time). */
        { "flood", ESCAPE_ERRNO, "post_event", EAGAIN, UNCONFINED_NOT_RUN },
        { "files", ESCAPE_ERRNO, "state_open", EDQUOT, UNCONFINED_NOT_RUN },
    };
    g_autoptr(GBytes) out = NULL;
    g_autofree gchar *state = NULL;
    g_autofree gchar *notes = NULL;
    g_autofree gchar *text = NULL;
    g_autofree gchar *port_text = NULL;
    guint16 port;
    int listener = test_listen_loopback(&port);

    port_text = g_strdup_printf("%u", port);
    upload_module(f, "hostile", "1.0");
    upload_module(f, "echo", "1.0");
    g_assert_cmpuint(helper_load(f->c, "echo", NULL, NULL), ==, VMAUG_S_OK);
    /* What it may do works: a file of its own, through the broker. */
    g_assert_cmpuint(helper_load(f->c, "hostile", NULL, NULL), ==,
                     VMAUG_S_OK);
    g_assert_cmpuint(helper_invoke(f->c, "hostile", "state", "mine", 4, NULL),
                     ==, VMAUG_S_DENIED);
    notes = vm_file(f, "state/hostile/notes.txt");
    g_assert_true(g_file_get_contents(notes, &text, NULL, NULL));
    g_assert_cmpstr(text, ==, "mine");
    state = g_path_get_dirname(notes);
    for (guint i = 0; i < G_N_ELEMENTS(corpus); i++) {
        const gchar *fn = corpus[i].function;
        const gchar *in = g_strcmp0(fn, "connect") == 0 ? port_text : NULL;
        struct vmaug_module_info info;
        g_autofree gchar *answer = NULL;
        g_autofree gchar *want = NULL;
        guint16 st;

        g_test_message("escape attempt: %s", fn);
        if (g_strcmp0(fn, "files") == 0) {
            for (guint k = count_files(state); k < 1000; k++) {
                g_autofree gchar *name = g_strdup_printf("%s/seed-%u", state,
                                                         k);

                g_assert_true(g_file_set_contents(name, "", 0, NULL));
            }
        }
        if (corpus[i].unconfined != UNCONFINED_NOT_RUN) {
            gint expect = corpus[i].unconfined == UNCONFINED_OK ?
                          VMAUG_S_OK : -1;

            g_assert_cmpint(hostile_unconfined(fn, in), ==, expect);
            if (in != NULL) {
                g_assert_true(listener_accepts(listener));
            }
        }
        g_assert_cmpuint(helper_load(f->c, "hostile", NULL, &info), ==,
                         VMAUG_S_OK);
        g_clear_pointer(&out, g_bytes_unref);
        st = helper_invoke(f->c, "hostile", fn, in,
                           in != NULL ? strlen(in) : 0, &out);
        answer = out != NULL ?
                 g_strndup(g_bytes_get_data(out, NULL),
                           g_bytes_get_size(out)) : g_strdup("");
        g_test_message("%s: status %u, \"%s\"", fn, st, answer);
        switch (corpus[i].stop) {
        case ESCAPE_ERRNO:
            want = g_strdup_printf("%s %d", corpus[i].step, corpus[i].code);
            g_assert_cmpuint(st, ==, VMAUG_S_DENIED);
            g_assert_cmpstr(answer, ==, want);
            break;
        case ESCAPE_SIGNAL:
            /* The number, whole: "killed by signal 31 (...)". */
            want = g_strdup_printf("killed by signal %d", corpus[i].code);
            g_assert_cmpuint(st, ==, VMAUG_S_MODULE_FAILED);
            g_assert_true(g_str_has_prefix(answer, want));
            g_assert_true(answer[strlen(want)] == '\0' ||
                          answer[strlen(want)] == ' ');
            break;
        case ESCAPE_TIMEOUT:
            g_assert_cmpuint(st, ==, VMAUG_S_TIMEOUT);
            g_assert_cmpstr(answer, ==, "module timed out");
            break;
        }
        if (in != NULL) {
            g_assert_false(listener_accepts(listener));
        }
        if (st != VMAUG_S_DENIED) {
            g_autoptr(GBytes) ev =
                helper_client_wait_event(f->c, VMAUG_EVENT_MODULE_CRASHED,
                                         5000);

            g_assert_nonnull(ev);
            g_assert_cmpuint(helper_query(f->c, "hostile", NULL, &info), ==,
                             VMAUG_S_OK);
            g_assert_cmpuint(GUINT32_FROM_LE(info.state), ==,
                             VMAUG_MODULE_CRASHED);
            g_assert_cmpuint(helper_invoke(f->c, "hostile", "ping", NULL, 0,
                                           NULL), ==, VMAUG_S_MODULE_FAILED);
        }
        /* Contained: the helper and the other module keep working, and
         * the hostile one can be loaded again. */
        g_clear_pointer(&out, g_bytes_unref);
        g_assert_cmpuint(helper_invoke(f->c, "echo", "echo", "ok", 2, &out),
                         ==, VMAUG_S_OK);
        g_assert_cmpuint(helper_load(f->c, "hostile", NULL, NULL), ==,
                         VMAUG_S_OK);
        g_clear_pointer(&out, g_bytes_unref);
        g_assert_cmpuint(helper_invoke(f->c, "hostile", "ping", NULL, 0,
                                       &out), ==, VMAUG_S_OK);
        g_assert_cmpmem(g_bytes_get_data(out, NULL), g_bytes_get_size(out),
                        "pong", 4);
    }
    close(listener);
    /* The flood reached the VM only up to the call's budget of 64. */
    {
        guint n = 0;
        GBytes *ev;

        while ((ev = helper_client_wait_event(f->c,
                                              VMAUG_EVENT_MODULE_MESSAGE,
                                              200)) != NULL) {
            g_bytes_unref(ev);
            n++;
        }
        g_assert_cmpuint(n, ==, 64);
    }
    /* The state directory stopped at 1024 entries, 24 of them the
     * module's own, counted on the host. */
    g_assert_cmpuint(count_files(state), ==, 1024);
    {
        g_autofree gchar *last = g_build_filename(state, "junk-23", NULL);
        g_autofree gchar *over = g_build_filename(state, "junk-24", NULL);

        g_assert_true(g_file_test(last, G_FILE_TEST_IS_REGULAR));
        g_assert_false(g_file_test(over, G_FILE_TEST_EXISTS));
    }
    /* A function the manifest does not export never runs. */
    g_assert_cmpuint(helper_invoke(f->c, "hostile", "undeclared", NULL, 0,
                                   NULL), ==, VMAUG_S_NOT_FOUND);
}

/* ---- A crashed helper is restarted; QEMU's side just reconnects ---- */

static GPid child_of(GPid pid)
{
    g_autofree gchar *path = g_strdup_printf("/proc/%d/task/%d/children",
                                             pid, pid);
    g_autofree gchar *text = NULL;
    gint64 deadline = g_get_monotonic_time() + 5 * G_USEC_PER_SEC;

    while (g_get_monotonic_time() < deadline) {
        g_clear_pointer(&text, g_free);
        if (g_file_get_contents(path, &text, NULL, NULL) &&
            g_ascii_isdigit(text[0])) {
            return (GPid)g_ascii_strtoll(text, NULL, 10);
        }
        g_usleep(10000);
    }
    g_assert_not_reached();
}

static void test_supervise(Fixture *f, gconstpointer data)
{
    static const gchar *const args[] = { "--supervise", NULL };
    GPid worker, worker2;
    g_autoptr(GBytes) out = NULL;

    /* Replace the fixture's helper with a supervised one. */
    helper_client_free(f->c);
    helper_kill(f->pid);
    fixture_start(f, args);
    upload_module(f, "echo", "1.0");
    g_assert_cmpuint(helper_load(f->c, "echo", NULL, NULL), ==, VMAUG_S_OK);

    worker = child_of(f->pid);
    g_assert_cmpint(kill(worker, SIGKILL), ==, 0);
    g_assert_true(helper_client_closed(f->c, 5000));
    helper_client_free(f->c);
    /* As QEMU's reconnect-ms does. */
    f->c = helper_client_connect(f->socket, NULL);
    worker2 = child_of(f->pid);
    g_assert_cmpint(worker2, !=, worker);
    g_assert_cmpuint(helper_load(f->c, "echo", NULL, NULL), ==, VMAUG_S_OK);
    g_assert_cmpuint(helper_invoke(f->c, "echo", "echo", "back", 4, &out),
                     ==, VMAUG_S_OK);
    g_assert_cmpmem(g_bytes_get_data(out, NULL), g_bytes_get_size(out),
                    "back", 4);
}

/* A QUERY of "echo" as bytes on the wire, with @tag. */
static GByteArray *channel_query(guint64 tag)
{
    struct vmaug_module_ref ref;
    struct virtio_vmaugment_req req = {
        .id = GUINT64_TO_LE(tag),
        .opcode = GUINT16_TO_LE(VMAUG_OP_QUERY),
        .len = GUINT32_TO_LE(sizeof(ref)),
    };
    struct vmaug_host_msg m = {
        .magic = GUINT32_TO_LE(VMAUG_HOST_MAGIC),
        .type = GUINT16_TO_LE(VMAUG_HOST_REQUEST),
        .len = GUINT32_TO_LE(sizeof(req) + sizeof(ref)),
        .tag = GUINT64_TO_LE(tag),
    };
    GByteArray *b = g_byte_array_new();

    helper_ref(&ref, "echo", NULL);
    g_byte_array_append(b, (const guint8 *)&m, sizeof(m));
    g_byte_array_append(b, (const guint8 *)&req, sizeof(req));
    g_byte_array_append(b, (const guint8 *)&ref, sizeof(ref));
    return b;
}

/*
 * The request channel (docs/protocol.rst): a device that takes it gets
 * the answers to its guest's requests there; a guest request on the link,
 * a host owner's on the channel or a channel closed ends that device, and
 * the others carry on.
 */
static void test_channel(Fixture *f, gconstpointer data)
{
    g_auto(HelperReply) r = { 0 };

    {
        g_autoptr(HelperClient) c =
            helper_client_connect_full(f->socket, NULL, NULL, TRUE);
        int chan = vmaug_link_client_get_channel_fd(c->link);
        g_autoptr(GByteArray) q = channel_query(7);
        struct vmaug_host_msg m;
        struct pollfd p = { .fd = chan, .events = POLLIN };

        g_assert_cmpint(chan, >=, 0);
        /* Room for a whole upload chunk from QEMU's relaying thread. */
        if (geteuid() == 0) {
            int size = 0;
            socklen_t len = sizeof(size);

            g_assert_cmpint(getsockopt(chan, SOL_SOCKET, SO_SNDBUF, &size,
                                       &len), ==, 0);
            g_assert_cmpint(size, >=, 2 * (sizeof(struct vmaug_host_msg) +
                                           VMAUG_HOST_MAX_MSG));
        }
        g_assert_cmpint(send(chan, q->data, q->len, MSG_NOSIGNAL), ==, q->len);
        g_assert_cmpint(poll(&p, 1, 5000), ==, 1);
        g_assert_cmpint(recv(chan, &m, sizeof(m), MSG_WAITALL), ==,
                        sizeof(m));
        g_assert_cmpuint(GUINT16_FROM_LE(m.type), ==, VMAUG_HOST_RESPONSE);
        g_assert_cmpuint(GUINT64_FROM_LE(m.tag), ==, 7);
        {
            g_autofree guint8 *body = g_malloc(GUINT32_FROM_LE(m.len) + 1);

            g_assert_cmpint(recv(chan, body, GUINT32_FROM_LE(m.len),
                                 MSG_WAITALL), ==, GUINT32_FROM_LE(m.len));
        }
        /* And through the client, which sends them there too. */
        g_assert_true(helper_client_call(c, VMAUG_OP_QUERY, "x", 1, NULL, 0,
                                         &r));
        g_assert_cmpuint(r.status, ==, VMAUG_S_INVALID);
        helper_reply_clear(&r);
    }
    {
        g_autoptr(HelperClient) c =
            helper_client_connect_full(f->socket, NULL, NULL, TRUE);
        g_autoptr(GByteArray) q = channel_query(8);

        helper_client_send_raw(c, q->data, q->len);
        g_assert_true(helper_client_closed(c, 5000));
    }
    {
        g_autoptr(HelperClient) c =
            helper_client_connect_full(f->socket, NULL, NULL, TRUE);
        int chan = vmaug_link_client_get_channel_fd(c->link);
        g_autoptr(GByteArray) q = channel_query(G_GUINT64_CONSTANT(1) << 63);

        g_assert_cmpint(send(chan, q->data, q->len, MSG_NOSIGNAL), ==, q->len);
        g_assert_true(helper_client_closed(c, 5000));
    }
    {
        g_autoptr(HelperClient) c =
            helper_client_connect_full(f->socket, NULL, NULL, TRUE);

        shutdown(vmaug_link_client_get_channel_fd(c->link), SHUT_RDWR);
        g_assert_true(helper_client_closed(c, 5000));
    }
    /* A device that does not take the channel keeps to the link. */
    g_assert_true(helper_client_call(f->c, VMAUG_OP_QUERY, "x", 1, NULL, 0,
                                     &r));
    g_assert_cmpuint(r.status, ==, VMAUG_S_INVALID);
}

/*
 * An AREA_REQUEST for a chunk of @data_len bytes in @slot, under
 * @opcode, with its message as one buffer.
 */
static GByteArray *area_request(guint64 tag, guint32 slot, guint16 opcode,
                                guint32 data_len)
{
    struct vmaug_host_area_request ar = { .slot = GUINT32_TO_LE(slot) };
    struct vmaug_upload_chunk ch = { .upload_id = GUINT64_TO_LE(1) };
    struct virtio_vmaugment_req req = {
        .id = GUINT64_TO_LE(tag),
        .opcode = GUINT16_TO_LE(opcode),
        .len = GUINT32_TO_LE(sizeof(ch) + data_len),
    };
    struct vmaug_host_msg m = {
        .magic = GUINT32_TO_LE(VMAUG_HOST_MAGIC),
        .type = GUINT16_TO_LE(VMAUG_HOST_AREA_REQUEST),
        .len = GUINT32_TO_LE(sizeof(ar) + sizeof(req) + sizeof(ch)),
        .tag = GUINT64_TO_LE(tag),
    };
    GByteArray *b = g_byte_array_new();

    g_byte_array_append(b, (const guint8 *)&m, sizeof(m));
    g_byte_array_append(b, (const guint8 *)&ar, sizeof(ar));
    g_byte_array_append(b, (const guint8 *)&req, sizeof(req));
    g_byte_array_append(b, (const guint8 *)&ch, sizeof(ch));
    return b;
}

/* A device that sends @q on the channel (or the link) is cut off. */
static void area_refused(Fixture *f, gboolean channel, gboolean on_link,
                         GByteArray *q)
{
    g_autoptr(HelperClient) c =
        helper_client_connect_full(f->socket, NULL, NULL, channel);
    g_autoptr(GError) error = NULL;
    int fd = on_link ? vmaug_link_client_get_fd(c->link)
                     : vmaug_link_client_get_channel_fd(c->link);

    if (channel) {
        g_assert_true(vmaug_link_client_wait_area(c->link, 5000, &error));
        g_assert_no_error(error);
    }
    g_assert_cmpint(send(fd, q->data, q->len, MSG_NOSIGNAL), ==, q->len);
    g_assert_true(helper_client_closed(c, 5000));
    g_byte_array_unref(q);
}

/*
 * The upload area (docs/protocol.rst): a device that asks gets a sealed
 * memfd of two chunk-sized slots, and an upload whose chunks come in it
 * is stored and verified like any other.  What frames a chunk in the
 * area wrongly (a slot beyond the area, more data than a slot, another
 * opcode, the link, no area asked for, an area without a channel) ends
 * that device; the others carry on.
 */
static void test_upload_area(Fixture *f, gconstpointer data)
{
    g_autoptr(GBytes) pkg = test_module_package(f->keys->admin, "echo", "1.0");
    g_autoptr(GError) error = NULL;

    {
        g_autoptr(HelperClient) c =
            helper_client_connect_full(f->socket, NULL, NULL, TRUE);

        /* The client checks the size and the seals before mapping. */
        g_assert_true(vmaug_link_client_wait_area(c->link, 5000, &error));
        g_assert_no_error(error);
        g_assert_cmpuint(helper_upload(c, pkg, "echo", "1.0", 1024), ==,
                         VMAUG_S_OK);
        g_assert_cmpuint(vmaug_link_client_area_chunks(c->link), >=,
                         g_bytes_get_size(pkg) / 1024);
        g_assert_cmpuint(helper_query(c, "echo", NULL, NULL), ==, VMAUG_S_OK);
    }
    area_refused(f, TRUE, FALSE,
                 area_request(1, VMAUG_HOST_AREA_SLOTS, VMAUG_OP_UPLOAD_CHUNK,
                              16));
    area_refused(f, TRUE, FALSE,
                 area_request(1, 1, VMAUG_OP_UPLOAD_CHUNK,
                              VMAUG_CHUNK_MAX_DATA + 1));
    area_refused(f, TRUE, FALSE, area_request(1, 0, VMAUG_OP_QUERY, 16));
    area_refused(f, TRUE, FALSE, area_request(1, 0, VMAUG_OP_UPLOAD_CHUNK, 0));
    area_refused(f, TRUE, TRUE, area_request(1, 0, VMAUG_OP_UPLOAD_CHUNK, 16));
    area_refused(f, FALSE, TRUE, area_request(1, 0, VMAUG_OP_UPLOAD_CHUNK, 16));
    {
        /* An area asked for without the channel it serves. */
        struct vmaug_host_hello hello = {
            .proto_version = GUINT32_TO_LE(VMAUG_PROTO_VERSION),
            .flags = GUINT32_TO_LE(VMAUG_HOST_HELLO_F_UPLOAD_AREA),
        };
        g_autoptr(HelperClient) c = helper_client_connect(f->socket, NULL);

        {
            int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            struct sockaddr_un addr = { .sun_family = AF_UNIX };
            struct vmaug_host_msg m = {
                .magic = GUINT32_TO_LE(VMAUG_HOST_MAGIC),
                .type = GUINT16_TO_LE(VMAUG_HOST_HELLO),
                .len = GUINT32_TO_LE(sizeof(hello)),
            };
            guint8 buf[4096];

            g_strlcpy(addr.sun_path, f->socket, sizeof(addr.sun_path));
            g_assert_cmpint(connect(fd, (struct sockaddr *)&addr,
                                    sizeof(addr)), ==, 0);
            g_assert_cmpint(send(fd, &m, sizeof(m), MSG_NOSIGNAL), ==,
                            sizeof(m));
            g_assert_cmpint(send(fd, &hello, sizeof(hello), MSG_NOSIGNAL), ==,
                            sizeof(hello));
            /* The helper's HELLO, then the end. */
            while (recv(fd, buf, sizeof(buf), 0) > 0) {
                continue;
            }
            close(fd);
        }
        g_assert_cmpuint(helper_query(c, "nothing-here", NULL, NULL), ==,
                         VMAUG_S_NOT_FOUND);
    }
}

/* A QUERY whose reference is followed by @extra bytes: a long request
 * the helper refuses, with its tag. */
static GByteArray *channel_query_long(guint64 tag, gsize extra)
{
    GByteArray *b = channel_query(tag);
    struct vmaug_host_msg *m = (struct vmaug_host_msg *)b->data;
    struct virtio_vmaugment_req *req = (struct virtio_vmaugment_req *)(m + 1);

    req->len = GUINT32_TO_LE(GUINT32_FROM_LE(req->len) + extra);
    m->len = GUINT32_TO_LE(GUINT32_FROM_LE(m->len) + extra);
    g_byte_array_set_size(b, b->len + extra);
    memset(b->data + b->len - extra, 'x', extra);
    return b;
}

static void channel_append(GByteArray *all, GByteArray *q)
{
    g_byte_array_append(all, q->data, q->len);
    g_byte_array_unref(q);
}

/*
 * Requests as a stream cuts them: hundreds in one write (several times
 * what the helper reads at once, so that requests straddle its reads), a
 * long one between short ones, and one sent a byte at a time.  Each is
 * answered once, in order.
 */
static void test_framing(Fixture *f, gconstpointer data)
{
    g_autoptr(HelperClient) c =
        helper_client_connect_full(f->socket, NULL, NULL, TRUE);
    int chan = vmaug_link_client_get_channel_fd(c->link);
    g_autoptr(GByteArray) all = g_byte_array_new();
    g_autoptr(GByteArray) one = NULL;
    guint64 tag = 1, next = 1;

    for (guint i = 0; i < 700; i++) {
        channel_append(all, channel_query(tag++));
    }
    channel_append(all, channel_query_long(tag++, 40000));
    for (guint i = 0; i < 9; i++) {
        channel_append(all, channel_query(tag++));
    }
    channel_append(all, channel_query_long(tag++, 10000));
    channel_append(all, channel_query(tag++));
    g_assert_cmpuint(all->len, >, 4 * 16 * 1024);
    g_assert_cmpint(send(chan, all->data, all->len, MSG_NOSIGNAL), ==,
                    all->len);
    one = channel_query(tag++);
    for (guint i = 0; i < one->len; i++) {
        g_assert_cmpint(send(chan, one->data + i, 1, MSG_NOSIGNAL), ==, 1);
        g_usleep(500);
    }
    while (next < tag) {
        struct pollfd p = { .fd = chan, .events = POLLIN };
        struct vmaug_host_msg m;
        g_autofree guint8 *body = NULL;

        g_assert_cmpint(poll(&p, 1, 10000), ==, 1);
        g_assert_cmpint(recv(chan, &m, sizeof(m), MSG_WAITALL), ==,
                        sizeof(m));
        g_assert_cmpuint(GUINT16_FROM_LE(m.type), ==, VMAUG_HOST_RESPONSE);
        g_assert_cmpuint(GUINT64_FROM_LE(m.tag), ==, next);
        body = g_malloc(GUINT32_FROM_LE(m.len) + 1);
        g_assert_cmpint(recv(chan, body, GUINT32_FROM_LE(m.len),
                             MSG_WAITALL), ==, GUINT32_FROM_LE(m.len));
        next++;
    }
    /* Nothing more, and the device is still served. */
    {
        struct pollfd p = { .fd = chan, .events = POLLIN };
        g_auto(HelperReply) r = { 0 };

        g_assert_cmpint(poll(&p, 1, 100), ==, 0);
        g_assert_true(helper_client_call(c, VMAUG_OP_QUERY, "x", 1, NULL, 0,
                                         &r));
        g_assert_cmpuint(r.status, ==, VMAUG_S_INVALID);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    TEST_HELPER_ADD("/helper/hostile-device", test_hostile_device);
    TEST_HELPER_ADD("/helper/cancel", test_cancel);
    TEST_HELPER_ADD("/helper/allowed-store", test_allowed_store);
    TEST_HELPER_ADD("/helper/tamper-upload", test_tamper_upload);
    TEST_HELPER_ADD("/helper/escape", test_escape);
    TEST_HELPER_ADD("/helper/supervise", test_supervise);
    TEST_HELPER_ADD("/helper/channel", test_channel);
    TEST_HELPER_ADD("/helper/framing", test_framing);
    TEST_HELPER_ADD("/helper/upload-area", test_upload_area);
    return g_test_run();
}
