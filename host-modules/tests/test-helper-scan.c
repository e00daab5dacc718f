/*
 * vmaugment-helper driven over its socket exactly as the QEMU device
 * drives it (test-helper.h has the fixture).  Here: the image-scan broker
 * (image-scan.c) through the scanner module at image start.
 *
 * The scan process is a shell script standing in for vmaugment-offline:
 * it records the arguments the helper gave it and answers as the test
 * tells it, well or hostile (malformed, oversized or deeply nested JSON,
 * a result its exit status denies, a failure, a crash, a stall).  The
 * real scanner over a real image is the guest scenario 17-image-scan.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <glib/gstdio.h>

#include "test-helper.h"
#include "vm-area.h"
#include "vmaugment-module.h"

#define INFECTED_JSON \
    "{\"image\": \"disk.qcow2\", \"engine\": \"ClamAV 1.4.6\"," \
    " \"database\": {\"version\": \"27000\", \"signatures\": 2}," \
    " \"files-scanned\": 12, \"files-cached\": 3, \"bytes-scanned\": 4096," \
    " \"findings\": [{\"filesystem\": \"ext4\", \"path\": \"/srv/eicar.com\"," \
    " \"signature\": \"Eicar-Test-Signature\"}, {\"filesystem\": \"ext4\"," \
    " \"path\": \"/home/a\\tb\\n\", \"signature\": \"Custom.Test\"}]," \
    " \"errors\": [], \"result\": \"infected\"}"

#define CLEAN_JSON \
    "{\"image\": \"disk.qcow2\", \"engine\": \"ClamAV 1.4.6\"," \
    " \"database\": {\"version\": 27000, \"signatures\": 2}," \
    " \"files-scanned\": 12, \"files-cached\": 12, \"bytes-scanned\": 0," \
    " \"findings\": [], \"errors\": [], \"result\": \"clean\"}"

/* What an apply of a quarantine bundle reports (vmaugment-offline). */
#define QUARANTINE_FINDINGS \
    " \"findings\": [{\"filesystem\": \"ext4\", \"path\": \"/srv/eicar.com\"," \
    " \"signature\": \"Eicar-Test-Signature\"}]"
#define APPLIED_JSON \
    "{\"image\": \"disk.qcow2\", \"bundle\": \"quarantine\"," \
    " \"plan\": [{\"op\": \"quarantine\", \"path\": \"/srv/eicar.com\"}]," \
    " \"quarantine\": {\"engine\": \"ClamAV 1.4.6\"," QUARANTINE_FINDINGS "," \
    " \"errors\": []}, \"status\": \"applied\"}"
#define UNCHANGED_JSON \
    "{\"image\": \"disk.qcow2\", \"bundle\": \"quarantine\"," \
    " \"quarantine\": {\"engine\": \"ClamAV 1.4.6\", \"findings\": []," \
    " \"errors\": []}, \"status\": \"already-applied\"}"

/* What the stand-in does for each mode the test writes to its file: a
 * scan's ("mode") or an apply's ("qmode"). */
static const gchar scan_script[] =
    "#!/bin/sh\n"
    "d=$(dirname \"$0\")\n"
    "case \" $* \" in\n"
    "*\" apply \"*) printf '%s\\n' \"$@\" >\"$d/qargv\"\n"
    "  case $(cat \"$d/qmode\") in\n"
    "  applied) cat \"$d/applied.json\"; exit 0 ;;\n"
    "  clean) cat \"$d/unchanged.json\"; exit 0 ;;\n"
    "  lies) sed 's/\"applied\"/\"already-applied\"/' \"$d/applied.json\";"
    " exit 0 ;;\n"
    "  fails) echo 'vmaugment-offline: apply: refused by signature' >&2;"
    " exit 4 ;;\n"
    "  esac; exit 1 ;;\n"
    "esac\n"
    /* A spare (image-scan.c): the scan's own arguments come on its
     * standard input, and the mode is the one of when they came. */
    "case \" $* \" in\n"
    "*\" --spare \"*) { printf '%s\\n' \"$@\" | grep -vx -e --spare;"
    " tr '\\0' '\\n'; } >\"$d/argv.new\"; mv \"$d/argv.new\" \"$d/argv\" ;;\n"
    "*) printf '%s\\n' \"$@\" >\"$d/argv\" ;;\n"
    "esac\n"
    "case $(cat \"$d/mode\") in\n"
    "infected) cat \"$d/infected.json\"; exit 1 ;;\n"
    "clean) cat \"$d/clean.json\"; exit 0 ;;\n"
    "mismatch) cat \"$d/clean.json\"; exit 1 ;;\n"
    "malformed) printf '{\"result\": \"infected\", \"findings\": ['; "
    "exit 1 ;;\n"
    "unknown) printf '{\"result\": \"clean\", \"extra\": 1}'; exit 0 ;;\n"
    "deep) i=0; while [ $i -lt 100 ]; do printf '['; i=$((i+1)); done;"
    " exit 1 ;;\n"
    "huge) head -c 2000000 /dev/zero | tr '\\0' ' '; "
    "cat \"$d/infected.json\"; exit 1 ;;\n"
    "fails) echo 'vmaugment-offline: scan: no database in /nowhere' >&2;"
    " exit 4 ;;\n"
    "crash) kill -SEGV $$ ;;\n"
    "stall) exec sleep 60 ;;\n"
    "esac\n";

typedef struct {
    gchar *dir;                     /* the stand-in's */
    gchar *database;
    HelperClient *c;                /* the VM of f->image */
} Scan;

static void scan_mode_file(Scan *s, const gchar *name, const gchar *mode)
{
    g_autofree gchar *p = g_build_filename(s->dir, name, NULL);
    g_autofree gchar *argv = g_build_filename(s->dir, name[0] == 'q' ?
                                              "qargv" : "argv", NULL);

    g_unlink(argv);
    g_assert_true(g_file_set_contents(p, mode, -1, NULL));
}

static void scan_mode(Scan *s, const gchar *mode)
{
    scan_mode_file(s, "mode", mode);
}

/* The arguments the stand-in was run with for @what ("argv": a scan,
 * "qargv": an apply), or NULL if it never ran. */
static gchar **scan_argv_of(Scan *s, const gchar *what)
{
    g_autofree gchar *p = g_build_filename(s->dir, what, NULL);
    g_autofree gchar *text = NULL;

    if (!g_file_get_contents(p, &text, NULL, NULL)) {
        return NULL;
    }
    g_strchomp(text);
    return g_strsplit(text, "\n", -1);
}

static gchar **scan_argv(Scan *s)
{
    return scan_argv_of(s, "argv");
}

/* The guest's CONFIG_SET of the scanner's @key; the status. */
static guint16 config_set_status(HelperClient *c, const gchar *key,
                                 const gchar *value)
{
    struct vmaug_config_ref cref = { 0 };
    g_auto(HelperReply) r = { 0 };

    g_strlcpy((gchar *)cref.module, "scanner", sizeof(cref.module));
    g_strlcpy((gchar *)cref.key, key, sizeof(cref.key));
    g_assert_true(helper_client_call(c, VMAUG_OP_CONFIG_SET, &cref,
                                     sizeof(cref), value, strlen(value), &r));
    return r.status;
}

static void config_set(HelperClient *c, const gchar *key, const gchar *value)
{
    g_assert_cmpuint(config_set_status(c, key, value), ==, VMAUG_S_OK);
}

/*
 * A helper whose scanner is @real_tool, or else the stand-in, with @grants
 * for the scanner, and the scanner registered as required with the
 * fixture's image.
 */
static void scan_setup_tool(Fixture *f, Scan *s, const gchar *grants,
                            const gchar *timeout_s, const gchar *real_tool)
{
    g_autofree gchar *tool = NULL;
    g_autofree gchar *policy = g_build_filename(f->keys->dir, "policy.json",
                                                NULL);
    g_autofree gchar *json = g_strdup_printf(
        "{\"grants\": {\"*\": [\"log\", \"config\", \"events\", \"ui\"], "
        "\"scanner\": [%s]}}", grants);
    g_autofree gchar *p = NULL;
    const gchar *args[] = {
        "--policy", policy, "--call-timeout-ms", "1500",
        "--scan-tool", NULL, "--clamav-database", NULL,
        "--scan-timeout-s", timeout_s, NULL
    };
    struct vmaug_registration reg = { 0 };
    g_auto(HelperReply) r = { 0 };

    s->dir = g_build_filename(f->keys->dir, "scanner", NULL);
    s->database = g_build_filename(f->keys->dir, "clamav", NULL);
    g_assert_cmpint(g_mkdir(s->dir, 0700), ==, 0);
    tool = g_build_filename(s->dir, "vmaugment-offline", NULL);
    g_assert_true(g_file_set_contents(tool, scan_script, -1, NULL));
    g_assert_cmpint(g_chmod(tool, 0700), ==, 0);
    p = g_build_filename(s->dir, "infected.json", NULL);
    g_assert_true(g_file_set_contents(p, INFECTED_JSON, -1, NULL));
    g_clear_pointer(&p, g_free);
    p = g_build_filename(s->dir, "clean.json", NULL);
    g_assert_true(g_file_set_contents(p, CLEAN_JSON, -1, NULL));
    g_clear_pointer(&p, g_free);
    p = g_build_filename(s->dir, "applied.json", NULL);
    g_assert_true(g_file_set_contents(p, APPLIED_JSON, -1, NULL));
    g_clear_pointer(&p, g_free);
    p = g_build_filename(s->dir, "unchanged.json", NULL);
    g_assert_true(g_file_set_contents(p, UNCHANGED_JSON, -1, NULL));
    g_assert_true(g_file_set_contents(policy, json, -1, NULL));
    args[5] = real_tool != NULL ? real_tool : tool;
    args[7] = s->database;
    helper_client_free(f->c);
    helper_kill(f->pid);
    fixture_start(f, args);
    upload_module(f, "scanner", "1.0");

    s->c = helper_client_connect_image(f->socket, NULL, f->image);
    helper_ref(&reg.ref, "scanner", "1.0");
    reg.events = GUINT32_TO_LE(VMAUG_EVENT_MASK(VMAUG_EVENT_IMAGE_START));
    reg.flags = GUINT32_TO_LE(VMAUG_REG_F_REQUIRED);
    g_assert_true(helper_client_call(s->c, VMAUG_OP_REGISTER, &reg,
                                     sizeof(reg), NULL, 0, &r));
    g_assert_cmpuint(r.status, ==, VMAUG_S_OK);
}

static void scan_setup(Fixture *f, Scan *s, const gchar *grants,
                       const gchar *timeout_s)
{
    scan_setup_tool(f, s, grants, timeout_s, NULL);
}

/* What the guest gets from the scanner's "report". */
static gchar *scan_report(Scan *s)
{
    g_autoptr(GBytes) out = NULL;
    gchar *report;

    g_assert_cmpuint(helper_invoke(s->c, "scanner", "report", NULL, 0,
                                   &out), ==, VMAUG_S_OK);
    report = g_strndup(g_bytes_get_data(out, NULL), g_bytes_get_size(out));
    g_test_message("%s", report);
    return report;
}

static void scan_clear(Scan *s)
{
    helper_client_free(s->c);
    g_free(s->dir);
    g_free(s->database);
}

/* The image starts (again). */
static HelperDone *scan_start(Fixture *f, Scan *s)
{
    return lifecycle_call(s->c, VMAUG_EVENT_IMAGE_START, 0);
}

/* Lines of the audit log with @action and @decision. */
static guint audit_count(Fixture *f, const gchar *action,
                         const gchar *decision, const gchar *reason)
{
    g_autofree gchar *path = audit_path(f);
    g_autofree gchar *text = NULL;
    g_autofree gchar *a = g_strdup_printf("\"action\":\"%s\"", action);
    g_autofree gchar *d = g_strdup_printf("\"decision\":\"%s\"", decision);
    g_auto(GStrv) lines = NULL;
    guint n = 0;

    g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
    lines = g_strsplit(text, "\n", -1);
    for (guint i = 0; lines[i] != NULL; i++) {
        if (strstr(lines[i], a) != NULL && strstr(lines[i], d) != NULL &&
            (reason == NULL || strstr(lines[i], reason) != NULL)) {
            n++;
        }
    }
    return n;
}

/* Refuse: the start fails, the finding named, and the scan process got
 * the VM's own image, the owner's database, the guest's paths as guest
 * paths, and nothing that could pass for another option. */
static void test_scan_refuse(Fixture *f, gconstpointer data)
{
    Scan s = { 0 };
    g_autoptr(HelperDone) d = NULL;
    g_auto(GStrv) argv = NULL;
    g_autofree gchar *real = NULL;
    g_autofree gchar *want = NULL;
    g_autofree gchar *cache = NULL;

    g_assert_true(g_file_set_contents(f->image, "", 0, NULL));
    real = realpath(f->image, NULL);
    scan_setup(f, &s, "\"image-scan\"", "30");
    config_set(s.c, "policy", "refuse");
    config_set(s.c, "paths", "/srv\n/etc/shadow\n");
    config_set(s.c, "max-file-size", "1048576");
    config_set(s.c, "timeout", "20");
    scan_mode(&s, "infected");
    d = scan_start(f, &s);
    g_test_message("%s", d->message);
    g_assert_cmpuint(d->status, !=, VMAUG_S_OK);
    g_assert_cmpstr(d->message, ==, "required module scanner 1.0 "
                    "unavailable: its image-start handler failed (infected: "
                    "ext4 /srv/eicar.com Eicar-Test-Signature (and 1 more))");

    argv = scan_argv(&s);
    g_assert_nonnull(argv);
    g_assert_cmpstr(argv[0], ==, "scan");
    want = g_strconcat("--database=", s.database, NULL);
    g_assert_true(g_strv_contains((const gchar *const *)argv, want));
    g_assert_true(g_strv_contains((const gchar *const *)argv,
                                  "--timeout=20"));
    g_assert_true(g_strv_contains((const gchar *const *)argv,
                                  "--max-file-size=1048576"));
    g_assert_true(g_strv_contains((const gchar *const *)argv,
                                  "--path=/srv"));
    g_assert_true(g_strv_contains((const gchar *const *)argv,
                                  "--path=/etc/shadow"));
    g_assert_true(g_strv_contains((const gchar *const *)argv,
                                  "--force-share"));
    g_assert_true(g_strv_contains((const gchar *const *)argv, "--json"));
    /* The image is the VM's own, last, and the cache in its area. */
    g_assert_cmpstr(argv[g_strv_length(argv) - 1], ==, real);
    for (guint i = 1; argv[i + 1] != NULL; i++) {
        g_assert_true(g_str_has_prefix(argv[i], "--"));
        if (g_str_has_prefix(argv[i], "--cache=")) {
            cache = g_strdup(argv[i] + strlen("--cache="));
        }
    }
    g_assert_nonnull(cache);
    {
        g_autofree gchar *id = vmaug_vm_area_id_for_image(real);
        g_autofree gchar *area = g_build_filename(f->store, "vms", id,
                                                  "scan", "clamav.cache",
                                                  NULL);

        g_assert_cmpstr(cache, ==, area);
    }
    /* The host owner's record of the scan and of the refused start. */
    g_assert_cmpuint(audit_count(f, "image-scan", "refuse",
                                 "infected: ext4 /srv/eicar.com "
                                 "Eicar-Test-Signature (and 1 more)"), ==, 1);
    g_assert_cmpuint(audit_count(f, "lifecycle-image-start", "refuse",
                                 "Eicar-Test-Signature"), ==, 1);

    /* Clean: the same registration starts. */
    g_clear_pointer(&d, helper_done_free);
    scan_mode(&s, "clean");
    d = scan_start(f, &s);
    g_assert_cmpuint(d->status, ==, VMAUG_S_OK);
    g_assert_cmpuint(audit_count(f, "image-scan", "accept", NULL), ==, 1);
    scan_clear(&s);
}

/* Report: the image starts; the host owner sees the findings (UI element,
 * audit log), the guest gets them on asking, as an answer and an event;
 * paths reach it with control characters escaped. */
static void test_scan_report(Fixture *f, gconstpointer data)
{
    Scan s = { 0 };
    g_autoptr(HelperDone) d = NULL;
    g_autoptr(GBytes) ev = NULL;
    g_autofree gchar *report = NULL;
    g_autofree gchar *ui = NULL;
    g_autofree gchar *ui_path = NULL;

    scan_setup(f, &s, "\"image-scan\"", "30");
    scan_mode(&s, "infected");
    d = scan_start(f, &s);
    g_assert_cmpuint(d->status, ==, VMAUG_S_OK);
    report = scan_report(&s);
    g_assert_true(g_str_has_prefix(report, "result infected\n"
                                   "engine ClamAV 1.4.6\tdatabase 27000\t"
                                   "signatures 2\n"
                                   "files 12\tcached 3\tbytes 4096\n"));
    g_assert_nonnull(strstr(report, "finding ext4\t/srv/eicar.com\t"
                            "Eicar-Test-Signature\n"));
    g_assert_nonnull(strstr(report, "finding ext4\t/home/a\\x09b\\x0a\t"
                            "Custom.Test\n"));
    ev = helper_client_wait_event(s.c, VMAUG_EVENT_MODULE_MESSAGE, 5000);
    g_assert_nonnull(ev);
    /* After the event's header and the module's reference. */
    g_assert_nonnull(memmem(g_bytes_get_data(ev, NULL), g_bytes_get_size(ev),
                            "result infected\n", 16));
    ui_path = vm_file(f, "ui/scanner.json");
    g_assert_nonnull(ui_path);
    g_assert_true(g_file_get_contents(ui_path, &ui, NULL, NULL));
    g_assert_nonnull(strstr(ui, "infected: ext4 /srv/eicar.com "
                            "Eicar-Test-Signature (and 1 more)"));
    g_assert_cmpuint(audit_count(f, "image-scan", "refuse", "infected"), ==,
                     1);
    g_assert_cmpuint(audit_count(f, "lifecycle-image-start", "accept", NULL),
                     ==, 1);
    scan_clear(&s);
}

/* Whatever the scan process does, the helper ends with a clear reason:
 * with on-incomplete refuse, the start is refused naming it. */
static void test_scan_hostile_output(Fixture *f, gconstpointer data)
{
    static const struct {
        const gchar *mode;
        const gchar *reason;
    } cases[] = {
        { "malformed", "the scanner's report is malformed: not JSON" },
        { "unknown", "the scanner's report is malformed: unknown member "
                     "\"extra\"" },
        { "deep", "the scanner's report is malformed: not a JSON report "
                  "of at most 3 levels" },
        { "mismatch", "the scanner's report is malformed: result "
                      "\"clean\" with 0 findings does not match exit "
                      "status 1" },
        { "huge", "the scanner's report is larger than 1048576 bytes" },
        { "fails", "the scanner failed (exit status 4): scan: no database "
                   "in /nowhere" },
        { "crash", "the scanner was killed by signal 11" },
    };
    Scan s = { 0 };

    scan_setup(f, &s, "\"image-scan\"", "30");
    config_set(s.c, "on-incomplete", "refuse");
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autoptr(HelperDone) d = NULL;
        g_autofree gchar *want = g_strdup_printf(
            "required module scanner 1.0 unavailable: its image-start "
            "handler failed (scan failed: %s", cases[i].reason);

        g_test_message("%s", cases[i].mode);
        scan_mode(&s, cases[i].mode);
        d = scan_start(f, &s);
        g_test_message("%s", d->message);
        g_assert_cmpuint(d->status, !=, VMAUG_S_OK);
        g_assert_true(g_str_has_prefix(d->message, want));
    }
    /* Report-and-continue: the same failure lets the image start. */
    {
        g_autoptr(HelperDone) d = NULL;

        config_set(s.c, "on-incomplete", "report-and-continue");
        scan_mode(&s, "malformed");
        d = scan_start(f, &s);
        g_assert_cmpuint(d->status, ==, VMAUG_S_OK);
    }
    g_assert_cmpuint(audit_count(f, "image-scan", "refuse", "failed: "), ==,
                     G_N_ELEMENTS(cases) + 1);
    scan_clear(&s);
}

/* A scan that stalls is stopped at its bound; meanwhile the helper
 * answers everyone else at once. */
static void test_scan_stall(Fixture *f, gconstpointer data)
{
    Scan s = { 0 };
    g_autoptr(HelperDone) d = NULL;
    g_autoptr(HelperClient) other = NULL;
    gint64 t0;

    scan_setup(f, &s, "\"image-scan\"", "1");
    config_set(s.c, "on-incomplete", "refuse");
    scan_mode(&s, "stall");
    helper_client_lifecycle(s.c, 77, VMAUG_EVENT_IMAGE_START, 0);
    /* The scan runs (the stand-in wrote its arguments)... */
    for (guint i = 0; i < 100; i++) {
        g_auto(GStrv) argv = scan_argv(&s);

        if (argv != NULL) {
            break;
        }
        g_usleep(50000);
    }
    /* ...and another VM is served meanwhile. */
    other = helper_client_connect(f->socket, NULL);
    t0 = g_get_monotonic_time();
    g_assert_cmpuint(helper_query(other, "scanner", "1.0", NULL), ==,
                     VMAUG_S_OK);
    g_assert_cmpint(g_get_monotonic_time() - t0, <, G_USEC_PER_SEC);
    d = helper_client_wait_done(s.c, 77, 30000);
    g_assert_nonnull(d);
    g_test_message("%s", d->message);
    g_assert_cmpstr(d->message, ==, "required module scanner 1.0 "
                    "unavailable: its image-start handler failed (scan "
                    "failed: the scan did not end within 1 s)");
    scan_clear(&s);
}

/* Without the host owner's grant there is no scan. */
static void test_scan_not_granted(Fixture *f, gconstpointer data)
{
    Scan s = { 0 };
    g_autoptr(HelperDone) d = NULL;

    scan_setup(f, &s, "", "30");
    config_set(s.c, "on-incomplete", "refuse");
    scan_mode(&s, "infected");
    d = scan_start(f, &s);
    g_assert_cmpstr(d->message, ==, "required module scanner 1.0 "
                    "unavailable: its image-start handler failed (scan "
                    "failed: the host owner did not grant image-scan)");
    g_assert_null(scan_argv(&s));
    scan_clear(&s);
}

/* Paths that are not absolute guest paths are refused before any scan
 * runs. */
static void test_scan_bad_paths(Fixture *f, gconstpointer data)
{
    static const gchar *const bad_paths[] = {
        "srv", "/srv/../../etc", "/a\tb", NULL
    };
    Scan s = { 0 };
    g_autoptr(HelperDone) d = NULL;

    scan_setup(f, &s, "\"image-scan\"", "30");
    config_set(s.c, "on-incomplete", "refuse");
    for (guint i = 0; bad_paths[i] != NULL; i++) {
        g_clear_pointer(&d, helper_done_free);
        config_set(s.c, "paths", bad_paths[i]);
        scan_mode(&s, "infected");
        d = scan_start(f, &s);
        g_test_message("%s", d->message);
        g_assert_cmpstr(d->message, ==, "required module scanner 1.0 "
                        "unavailable: its image-start handler failed (scan "
                        "failed: error 22)");
        g_assert_null(scan_argv(&s));
    }
    scan_clear(&s);
}

/* The EICAR test file (www.eicar.org). */
#define EICAR "X5O!P%@AP[4\\PZX54(P^)7CC)7}$" \
              "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"

/*
 * The real scanner (vmaugment-offline and libclamav) over a small ext4
 * image made here, holding the EICAR test file, with a database of one
 * signature: refused with the finding named, then, in report mode, the
 * same image rescanned from the cache the first scan left in its area.
 */
/* The real scanner (test_env VMAUG_OFFLINE) over an ext4 image of a
 * clean file and EICAR, with a database of EICAR's hash alone. */
static void scan_clamav_setup(Fixture *f, Scan *s)
{
    g_autofree gchar *tree = g_build_filename(f->keys->dir, "tree", NULL);
    g_autofree gchar *p = NULL;
    g_autofree gchar *hdb = NULL;
    g_autofree gchar *sum = NULL;
    g_autofree gchar *err = NULL;
    const gchar *mkfs[] = { "mke2fs", "-q", "-F", "-t", "ext4", "-d", tree,
                            f->image, "8M", NULL };
    gint status;

    p = g_build_filename(tree, "etc", NULL);
    g_assert_cmpint(g_mkdir_with_parents(p, 0755), ==, 0);
    g_clear_pointer(&p, g_free);
    p = g_build_filename(tree, "etc", "os-release", NULL);
    g_assert_true(g_file_set_contents(p, "ID=debian\nVERSION_ID=\"12\"\n",
                                      -1, NULL));
    g_clear_pointer(&p, g_free);
    p = g_build_filename(tree, "opt", "samples", NULL);
    g_assert_cmpint(g_mkdir_with_parents(p, 0755), ==, 0);
    g_clear_pointer(&p, g_free);
    p = g_build_filename(tree, "opt", "samples", "eicar.com", NULL);
    g_assert_true(g_file_set_contents(p, EICAR, -1, NULL));
    g_clear_pointer(&p, g_free);
    p = g_build_filename(tree, "clean.txt", NULL);
    g_assert_true(g_file_set_contents(p, "nothing to see\n", -1, NULL));
    g_assert_true(g_spawn_sync(NULL, (gchar **)mkfs, NULL,
                               G_SPAWN_SEARCH_PATH |
                               G_SPAWN_STDOUT_TO_DEV_NULL, NULL, NULL, NULL,
                               &err, &status, NULL));
    g_assert_cmpint(status, ==, 0);

    scan_setup_tool(f, s, "\"image-scan\"", "60",
                    test_env("VMAUG_OFFLINE"));
    sum = g_compute_checksum_for_string(G_CHECKSUM_MD5, EICAR, -1);
    hdb = g_strdup_printf("%s:%zu:Eicar-Test-Signature\n", sum,
                          strlen(EICAR));
    g_assert_cmpint(g_mkdir(s->database, 0755), ==, 0);
    g_clear_pointer(&p, g_free);
    p = g_build_filename(s->database, "test.hdb", NULL);
    g_assert_true(g_file_set_contents(p, hdb, -1, NULL));
    /* The scan's worker reads it under an id of its own, as it reads
     * /var/lib/clamav: world-readable, as freshclam leaves it. */
    g_assert_cmpint(g_chmod(p, 0644), ==, 0);
    g_assert_cmpint(g_chmod(f->keys->dir, 0711), ==, 0);
}

static void test_scan_clamav(Fixture *f, gconstpointer data)
{
    g_autofree gchar *report = NULL;
    g_autofree gchar *cache = NULL;
    g_autoptr(HelperDone) d = NULL;
    Scan s = { 0 };

    scan_clamav_setup(f, &s);
    config_set(s.c, "policy", "refuse");
    d = scan_start(f, &s);
    g_test_message("%s", d->message);
    g_assert_cmpuint(d->status, !=, VMAUG_S_OK);
    g_assert_cmpstr(d->message, ==, "required module scanner 1.0 "
                    "unavailable: its image-start handler failed (infected: "
                    "/ /opt/samples/eicar.com "
                    "Eicar-Test-Signature.UNOFFICIAL)");
    cache = vm_file(f, "scan/clamav.cache");
    g_assert_nonnull(cache);

    g_clear_pointer(&d, helper_done_free);
    config_set(s.c, "policy", "report");
    d = scan_start(f, &s);
    g_assert_cmpuint(d->status, ==, VMAUG_S_OK);
    report = scan_report(&s);
    g_assert_true(g_str_has_prefix(report, "result infected\n"
                                   "engine ClamAV "));
    g_assert_nonnull(strstr(report, "finding /\t/opt/samples/eicar.com\t"
                            "Eicar-Test-Signature.UNOFFICIAL\n"));
    /* What was clean the first time was not scanned again. */
    g_assert_nonnull(strstr(report, "files 1\tcached 2\t"));
    scan_clear(&s);
}

/* The child of @parent (not @gone) whose arguments hold @arg and, with
 * @confined, that runs under its seccomp filter: its pid, or 0. */
static GPid scan_child(GPid parent, GPid gone, const gchar *arg,
                       gboolean confined)
{
    g_autoptr(GDir) proc = g_dir_open("/proc", 0, NULL);
    const gchar *name;

    while ((name = g_dir_read_name(proc)) != NULL) {
        g_autofree gchar *stat = g_build_filename("/proc", name, "stat",
                                                  NULL);
        g_autofree gchar *status = g_build_filename("/proc", name, "status",
                                                    NULL);
        g_autofree gchar *cmd = g_build_filename("/proc", name, "cmdline",
                                                 NULL);
        g_autofree gchar *text = NULL;
        g_autofree gchar *args = NULL;
        g_autofree gchar *st = NULL;
        gsize len;
        const gchar *end;
        GPid pid = atoi(name);

        if (pid <= 0 || pid == gone ||
            !g_file_get_contents(stat, &text, NULL, NULL) ||
            (end = strrchr(text, ')')) == NULL ||
            atoi(end + 4) != parent ||
            !g_file_get_contents(cmd, &args, &len, NULL) ||
            (confined && (!g_file_get_contents(status, &st, NULL, NULL) ||
                          strstr(st, "\nSeccomp:\t2\n") == NULL))) {
            continue;
        }
        /* Its arguments, each ended by a NUL. */
        for (gsize i = 0; i < len; i += strlen(args + i) + 1) {
            if (strstr(args + i, arg) != NULL) {
                return pid;
            }
        }
    }
    return 0;
}

/* The helper's spare scanner ("scan --spare", image-scan.c), once its
 * worker has loaded the database and confined itself, waiting for @gone
 * to be replaced (0: any): its pid. */
static GPid scan_spare_pid(Fixture *f, GPid gone)
{
    for (guint tries = 0; tries < 500; tries++) {
        GPid spare = scan_child(f->pid, gone, "--spare", FALSE);

        if (spare != 0 &&
            scan_child(spare, 0, "vmaugment-offline-worker", TRUE) != 0) {
            return spare;
        }
        g_usleep(20000);
    }
    return 0;
}

/*
 * After a scan the helper keeps a scanner ready for the next (its worker
 * confined, the database loaded): the next scan takes it, and a new one
 * is started.  One whose database changed meanwhile scans with the new
 * database; one that died is replaced by a scanner of the scan's own.
 */
static void test_scan_spare(Fixture *f, gconstpointer data)
{
    g_autofree gchar *ndb = NULL;
    g_autofree gchar *report = NULL;
    g_autoptr(HelperDone) d = NULL;
    GPid first, second, third;
    Scan s = { 0 };

    scan_clamav_setup(f, &s);
    config_set(s.c, "policy", "report");
    d = scan_start(f, &s);
    g_assert_cmpuint(d->status, ==, VMAUG_S_OK);
    first = scan_spare_pid(f, 0);
    g_assert_cmpint(first, >, 0);

    /* freshclam added a signature (of clean.txt) since it started. */
    ndb = g_build_filename(s.database, "marker.ndb", NULL);
    g_assert_true(g_file_set_contents(ndb, "Test.Marker:0:*:"
                                      "6e6f7468696e6720746f20736565\n",
                                      -1, NULL));
    g_assert_cmpint(g_chmod(ndb, 0644), ==, 0);
    g_clear_pointer(&d, helper_done_free);
    d = scan_start(f, &s);
    g_assert_cmpuint(d->status, ==, VMAUG_S_OK);
    report = scan_report(&s);
    g_assert_nonnull(strstr(report, "finding /\t/clean.txt\t"
                            "Test.Marker.UNOFFICIAL\n"));
    g_assert_nonnull(strstr(report, "finding /\t/opt/samples/eicar.com\t"
                            "Eicar-Test-Signature.UNOFFICIAL\n"));
    /* Taken, and another started. */
    second = scan_spare_pid(f, first);
    g_assert_cmpint(second, >, 0);
    g_assert_cmpint(kill(first, 0), <, 0);

    /* One that died: the scan starts its own, and is not the worse. */
    g_assert_cmpint(kill(second, SIGKILL), ==, 0);
    /* Gone once the helper reaped it. */
    for (guint tries = 0; kill(second, 0) == 0 && tries < 500; tries++) {
        g_usleep(10000);
    }
    g_assert_cmpint(kill(second, 0), <, 0);
    g_clear_pointer(&d, helper_done_free);
    g_clear_pointer(&report, g_free);
    d = scan_start(f, &s);
    g_assert_cmpuint(d->status, ==, VMAUG_S_OK);
    report = scan_report(&s);
    g_assert_true(g_str_has_prefix(report, "result infected\n"));
    g_assert_nonnull(strstr(report, "Test.Marker.UNOFFICIAL\n"));
    third = scan_spare_pid(f, second);
    g_assert_cmpint(third, >, 0);

    /* The spare's scan, with the cache of the scans before. */
    g_clear_pointer(&d, helper_done_free);
    g_clear_pointer(&report, g_free);
    d = scan_start(f, &s);
    g_assert_cmpuint(d->status, ==, VMAUG_S_OK);
    report = scan_report(&s);
    g_assert_nonnull(strstr(report, "Test.Marker.UNOFFICIAL\n"));
    g_assert_nonnull(strstr(report, "files 2\tcached 1\t"));
    g_assert_cmpint(scan_spare_pid(f, third), >, 0);
    g_assert_cmpint(kill(third, 0), <, 0);
    scan_clear(&s);
}

/* The guest's REGISTER (@reg) or UNREGISTER (NULL) of the scanner. */
static guint16 scan_register(Scan *s, guint32 flags, gboolean reg)
{
    struct vmaug_registration r = { 0 };
    g_auto(HelperReply) reply = { 0 };

    helper_ref(&r.ref, "scanner", "1.0");
    r.events = GUINT32_TO_LE(VMAUG_EVENT_MASK(VMAUG_EVENT_IMAGE_START));
    r.flags = GUINT32_TO_LE(flags);
    g_assert_true(helper_client_call(s->c, reg ? VMAUG_OP_REGISTER :
                                     VMAUG_OP_UNREGISTER, &r,
                                     reg ? sizeof(r) : sizeof(r.ref), NULL,
                                     0, &reply));
    return reply.status;
}

/*
 * The host owner pins the scanner with "policy refuse" over the guest's
 * "report": the guest can neither unregister it, make it optional, nor set
 * the policy back, each attempt is refused and audited and changes
 * nothing, and the infected image does not start.
 */
static void test_scan_pinned(Fixture *f, gconstpointer data)
{
    Scan s = { 0 };
    g_autoptr(HelperDone) d = NULL;
    g_autoptr(VmaugRegSet) set = NULL;
    g_autoptr(GError) error = NULL;
    g_autofree gchar *sidecar = vmaug_reg_sidecar_path(f->image);
    g_autofree gchar *before = NULL;
    g_autofree gchar *after = NULL;

    g_assert_true(g_file_set_contents(f->image, "", 0, NULL));
    scan_setup(f, &s, "\"image-scan\"", "30");
    config_set(s.c, "policy", "report");

    /* What vmaugment-admin register --pinned --set policy=refuse does. */
    set = vmaug_reg_set_load(f->image, NULL, &error);
    g_assert_no_error(error);
    g_assert_true(vmaug_reg_set_pin(set, "scanner", "1.0",
                                    VMAUG_EVENT_MASK(VMAUG_EVENT_IMAGE_START),
                                    VMAUG_REG_F_REQUIRED, &error));
    g_assert_true(vmaug_reg_set_config(set, "scanner", "policy", "refuse",
                                       &error));
    g_assert_true(vmaug_reg_set_save(set, &error));
    g_assert_true(g_file_get_contents(sidecar, &before, NULL, NULL));

    g_assert_cmpuint(scan_register(&s, 0, FALSE), ==, VMAUG_S_DENIED);
    g_assert_cmpuint(scan_register(&s, 0, TRUE), ==, VMAUG_S_DENIED);
    g_assert_cmpuint(config_set_status(s.c, "policy", "report"), ==,
                     VMAUG_S_DENIED);
    /* What the host owner did not set stays the guest's. */
    config_set(s.c, "timeout", "20");
    g_assert_true(g_file_get_contents(sidecar, &after, NULL, NULL));
    g_assert_cmpstr(after, ==, before);
    g_assert_cmpuint(audit_count(f, "unregister", "refuse",
                                 "scanner is pinned by the host owner"), ==,
                     1);
    g_assert_cmpuint(audit_count(f, "register", "refuse",
                                 "scanner is pinned by the host owner"), ==,
                     1);
    g_assert_cmpuint(audit_count(f, "config-set", "refuse",
                                 "policy of scanner is set by the host "
                                 "owner"), ==, 1);

    scan_mode(&s, "infected");
    d = scan_start(f, &s);
    g_test_message("%s", d->message);
    g_assert_cmpuint(d->status, !=, VMAUG_S_OK);
    g_assert_nonnull(strstr(d->message, "its image-start handler failed "
                            "(infected: ext4 /srv/eicar.com"));
    g_assert_cmpuint(audit_count(f, "lifecycle-image-start", "refuse",
                                 "Eicar-Test-Signature"), ==, 1);
    scan_clear(&s);
}

/*
 * Pin the scanner's registration as the host owner does (vmaugment-admin
 * register --pinned --set KEY=VALUE...): @keys, NULL-terminated pairs.
 */
static void scan_pin(Fixture *f, const gchar *const *keys)
{
    g_autoptr(VmaugRegSet) set = NULL;
    g_autoptr(GError) error = NULL;

    set = vmaug_reg_set_load(f->image, NULL, &error);
    g_assert_no_error(error);
    g_assert_true(vmaug_reg_set_pin(set, "scanner", "1.0",
                                    VMAUG_EVENT_MASK(VMAUG_EVENT_IMAGE_START),
                                    VMAUG_REG_F_REQUIRED, &error));
    for (guint i = 0; keys[i] != NULL; i += 2) {
        g_assert_true(vmaug_reg_set_config(set, "scanner", keys[i],
                                           keys[i + 1], &error));
    }
    g_assert_true(vmaug_reg_set_save(set, &error));
}

/* The ops the helper asked of QEMU, as "R" (release) and "T" (retake). */
static gchar *scan_accesses(Scan *s)
{
    GString *out = g_string_new(NULL);

    for (guint i = 0; i < s->c->accesses->len; i++) {
        guint32 op = g_array_index(s->c->accesses, guint32, i);

        g_string_append_c(out, op == VMAUG_IMAGE_RELEASE ? 'R' :
                          op == VMAUG_IMAGE_RETAKE ? 'T' : '?');
    }
    g_array_set_size(s->c->accesses, 0);
    return g_string_free(out, FALSE);
}

/*
 * Quarantine: QEMU releases the image, the host owner's pinned bundle is
 * applied with the helper's own database and trust store (not
 * --force-share), QEMU retakes the image, and the image starts; the
 * guest and the host owner see what moved.
 */
static void test_quarantine(Fixture *f, gconstpointer data)
{
    Scan s = { 0 };
    g_autoptr(HelperDone) d = NULL;
    g_auto(GStrv) argv = NULL;
    g_autofree gchar *real = NULL;
    g_autofree gchar *want = NULL;
    g_autofree gchar *report = NULL;
    g_autofree gchar *ui = NULL;
    g_autofree gchar *ui_path = NULL;
    g_autofree gchar *acc = NULL;
    g_autofree gchar *bundle = g_build_filename(f->keys->dir, "q.vmab",
                                                NULL);
    const gchar *const pins[] = {
        "policy", "quarantine", "quarantine-bundle", bundle, NULL
    };

    g_assert_true(g_file_set_contents(f->image, "", 0, NULL));
    real = realpath(f->image, NULL);
    scan_setup(f, &s, "\"image-scan\", \"image-quarantine\"", "30");
    scan_pin(f, pins);
    /* The quarantine looks where the scan looked. */
    config_set(s.c, "paths", "/srv\n/opt\n");
    scan_mode(&s, "infected");
    scan_mode_file(&s, "qmode", "applied");
    d = scan_start(f, &s);
    g_test_message("%s", d->message);
    g_assert_cmpuint(d->status, ==, VMAUG_S_OK);
    acc = scan_accesses(&s);
    g_assert_cmpstr(acc, ==, "RT");

    argv = scan_argv_of(&s, "qargv");
    g_assert_nonnull(argv);
    want = g_strconcat("--database=", s.database, NULL);
    g_assert_true(g_strv_contains((const gchar *const *)argv, want));
    g_clear_pointer(&want, g_free);
    want = g_strconcat("--trust-dir=", f->keys->trust_dir, NULL);
    g_assert_true(g_strv_contains((const gchar *const *)argv, want));
    g_assert_false(g_strv_contains((const gchar *const *)argv,
                                   "--force-share"));
    g_assert_true(g_strv_contains((const gchar *const *)argv,
                                  "--path=/srv"));
    g_assert_true(g_strv_contains((const gchar *const *)argv,
                                  "--path=/opt"));
    /* Options only, then the command, the VM's image and the bundle. */
    g_assert_true(g_strv_contains((const gchar *const *)argv,
                                  "--qemu-released"));
    g_assert_cmpuint(g_strv_length(argv), ==, 10);
    for (guint i = 0; i < 7; i++) {
        g_assert_true(g_str_has_prefix(argv[i], "--"));
    }
    g_assert_cmpstr(argv[7], ==, "apply");
    g_assert_cmpstr(argv[8], ==, real);
    g_assert_cmpstr(argv[9], ==, bundle);

    report = scan_report(&s);
    g_assert_true(g_str_has_prefix(report, "result infected\n"));
    g_assert_nonnull(strstr(report, "result quarantined\n"
                            "moved ext4\t/srv/eicar.com\t"
                            "Eicar-Test-Signature\n"));
    ui_path = vm_file(f, "ui/scanner.json");
    g_assert_nonnull(ui_path);
    g_assert_true(g_file_get_contents(ui_path, &ui, NULL, NULL));
    g_assert_nonnull(strstr(ui, "quarantined: ext4 /srv/eicar.com "
                            "Eicar-Test-Signature"));
    g_assert_cmpuint(audit_count(f, "image-quarantine", "refuse",
                                 "quarantined: ext4 /srv/eicar.com"), ==, 1);
    g_assert_cmpuint(audit_count(f, "lifecycle-image-start", "accept", NULL),
                     ==, 1);

    /* A clean image: no quarantine, QEMU keeps the image. */
    g_clear_pointer(&d, helper_done_free);
    scan_mode(&s, "clean");
    scan_mode_file(&s, "qmode", "applied");
    d = scan_start(f, &s);
    g_assert_cmpuint(d->status, ==, VMAUG_S_OK);
    g_free(acc);
    acc = scan_accesses(&s);
    g_assert_cmpstr(acc, ==, "");
    g_assert_null(scan_argv_of(&s, "qargv"));
    scan_clear(&s);
}

/*
 * Whatever goes wrong, the infected image does not start, and whatever
 * was released is retaken: QEMU does not let go of the image, the grant
 * or the pinned bundle is missing (a guest's own "quarantine-bundle"
 * counts for nothing), the apply fails, its report lies.
 */
static void test_quarantine_refused(Fixture *f, gconstpointer data)
{
    static const struct {
        gboolean pin_bundle;
        guint16 access_status;
        const gchar *qmode;
        const gchar *accesses;
        const gchar *why;
    } cases[] = {
        { FALSE, VMAUG_S_OK, "applied", "", "quarantine failed: the host "
          "owner pinned no quarantine-bundle" },
        { TRUE, VMAUG_S_BUSY, "applied", "R", "quarantine failed: QEMU did "
          "not release the image" },
        { TRUE, VMAUG_S_OK, "fails", "RT", "quarantine failed: the "
          "quarantine failed (exit status 4): apply: refused by signature" },
        { TRUE, VMAUG_S_OK, "lies", "RT", "quarantine failed: the "
          "quarantine's report is malformed: findings, yet nothing "
          "applied" },
    };
    g_autofree gchar *bundle = g_build_filename(f->keys->dir, "q.vmab",
                                                NULL);
    Scan s = { 0 };

    g_assert_true(g_file_set_contents(f->image, "", 0, NULL));
    scan_setup(f, &s, "\"image-scan\", \"image-quarantine\"", "30");
    for (guint i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autoptr(HelperDone) d = NULL;
        g_autofree gchar *acc = NULL;
        g_autofree gchar *want = NULL;
        const gchar *const pins[] = {
            "policy", "quarantine",
            cases[i].pin_bundle ? "quarantine-bundle" : NULL, bundle, NULL
        };

        scan_pin(f, pins);
        if (!cases[i].pin_bundle) {
            /* The guest's own choice of bundle is never read. */
            config_set(s.c, "quarantine-bundle", "/srv/guest.vmab");
        }
        s.c->access_status = cases[i].access_status;
        scan_mode(&s, "infected");
        scan_mode_file(&s, "qmode", cases[i].qmode);
        d = scan_start(f, &s);
        g_test_message("%s", d->message);
        g_assert_cmpuint(d->status, !=, VMAUG_S_OK);
        want = g_strdup_printf("required module scanner 1.0 unavailable: "
                               "its image-start handler failed (%s; "
                               "infected: ext4 /srv/eicar.com "
                               "Eicar-Test-Signature (and 1 more))",
                               cases[i].why);
        g_assert_cmpstr(d->message, ==, want);
        acc = scan_accesses(&s);
        g_assert_cmpstr(acc, ==, cases[i].accesses);
        if (!cases[i].pin_bundle || cases[i].access_status != VMAUG_S_OK) {
            g_assert_null(scan_argv_of(&s, "qargv"));
        }
    }
    scan_clear(&s);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    TEST_HELPER_ADD("/helper/scan/refuse", test_scan_refuse);
    TEST_HELPER_ADD("/helper/scan/report", test_scan_report);
    TEST_HELPER_ADD("/helper/scan/pinned", test_scan_pinned);
    TEST_HELPER_ADD("/helper/scan/hostile-output", test_scan_hostile_output);
    TEST_HELPER_ADD("/helper/scan/stall", test_scan_stall);
    TEST_HELPER_ADD("/helper/scan/not-granted", test_scan_not_granted);
    TEST_HELPER_ADD("/helper/scan/bad-paths", test_scan_bad_paths);
    TEST_HELPER_ADD("/helper/scan/clamav", test_scan_clamav);
    TEST_HELPER_ADD("/helper/scan/spare", test_scan_spare);
    TEST_HELPER_ADD("/helper/scan/quarantine", test_quarantine);
    TEST_HELPER_ADD("/helper/scan/quarantine-refused",
                    test_quarantine_refused);
    return g_test_run();
}
