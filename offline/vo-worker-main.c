/*
 * vmaugment-offline-worker: reads and writes one guest's disk for its
 * parent, vmaugment-offline, and nothing else (vo-worker.h).
 *
 * Everything it reads was written by the guest, whose filesystems, hives
 * and package database may be crafted to attack their reader; so it
 * confines itself (sandbox_confine()) before its first read of the disk,
 * holds only the descriptors its parent gave it, and says what it found
 * only through its report (vo-wire.h), which the parent checks again.
 * docs/offline.rst ("Confinement") is normative.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <errno.h>
#include <fcntl.h>
#include <iconv.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sandbox.h"
#include "vo-dpkg-status.h"
#include "vo-configure.h"
#include "vo-inventory.h"
#include "vo-mounts.h"
#include "vo-msu.h"
#include "vo-patch.h"
#include "vo-quarantine.h"
#include "vo-scan.h"
#include "vo-wire.h"
#include "vo-worker.h"

typedef struct {
    VoWorkerJob job;
    const char *image;
    guint n_disks;          /* of the guest */
    /* The LUKS volumes the parent opened, served after the disks. */
    VoMountsOpened opened[VO_WORKER_MAX_LUKS];
    guint n_opened;
    VoBundle *bundle;
    VoGuest *guest;
    GError *engine_error;   /* the scan's engine did not load */
} VoWorker;

static void vo_worker_stage(const char *stage)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonNode) node = NULL;

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "stage");
    json_builder_add_string_value(b, stage);
    json_builder_end_object(b);
    node = json_builder_get_root(b);
    /* A parent that stopped listening ends us at the result. */
    vo_wire_send(VO_WORKER_FD_REPORT, VO_WIRE_STAGE, node, NULL);
}

static gboolean vo_worker_inspect(VoWorker *w, JsonBuilder *b,
                                  GError **error)
{
    g_autoptr(VoInventory) inv = vo_inventory_read(w->guest, error);
    JsonNode *configure, *msu;

    if (!inv) {
        return FALSE;
    }
    json_builder_set_member_name(b, "inventory");
    json_builder_add_value(b, vo_inventory_to_json(w->guest, inv));
    configure = vo_configure_result_read(w->guest);
    if (configure) {
        json_builder_set_member_name(b, "dpkg_configure");
        json_builder_add_value(b, configure);
    }
    msu = g_str_equal(w->guest->family, "windows")
          ? vo_msu_result_read(w->guest) : NULL;
    if (msu) {
        json_builder_set_member_name(b, "msu_install");
        json_builder_add_value(b, msu);
    }
    return TRUE;
}

static gboolean vo_worker_packages(VoWorker *w, JsonBuilder *b,
                                   GError **error)
{
    JsonNode *dpkg = vo_dpkg_status_extract(w->guest, error);

    if (!dpkg) {
        return FALSE;
    }
    json_builder_set_member_name(b, "dpkg");
    json_builder_add_value(b, dpkg);
    return TRUE;
}

/* Read-only: the export is, too (vo_worker_do()). */
static gboolean vo_worker_scan(VoWorker *w, JsonBuilder *b, GError **error)
{
    return vo_scan_engine_run(w->guest, b, error);
}

/*
 * A bundle's quarantine instruction: the scan before the decision, so
 * that deciding, patching and verifying all see what it found.
 */
static gboolean vo_worker_quarantine_scan(VoWorker *w, JsonBuilder *b,
                                          GError **error)
{
    VoFileOp *op = vo_bundle_quarantine_op(w->bundle);

    if (!op) {
        return TRUE;
    }
    if (!vo_scan_engine_loaded()) {
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "bundle %s has a quarantine instruction: it is applied "
                    "with --database DIR, the signature database it scans "
                    "with", w->bundle->id);
        return FALSE;
    }
    op->hits = g_ptr_array_new_with_free_func(
        (GDestroyNotify)vo_quarantine_hit_free);
    return vo_scan_engine_quarantine(w->guest, op->hits, b, error);
}

static gboolean vo_worker_check(VoWorker *w, JsonBuilder *b, GError **error)
{
    gboolean done;

    if (!vo_worker_quarantine_scan(w, b, error) ||
        !vo_patch_decide(w->bundle, w->guest, b, &done, error)) {
        return FALSE;
    }
    json_builder_set_member_name(b, "status");
    json_builder_add_string_value(b, done ? "already-applied" : "dry-run");
    return TRUE;
}

/* Patch the overlay, then verify what reached it, not our cache. */
static gboolean vo_worker_apply(VoWorker *w, JsonBuilder *b, GError **error)
{
    gboolean done;

    vo_worker_stage(VO_WORKER_STAGE_DECIDING);
    if (!vo_worker_quarantine_scan(w, b, error) ||
        !vo_patch_decide(w->bundle, w->guest, b, &done, error)) {
        return FALSE;
    }
    if (done) {
        json_builder_set_member_name(b, "status");
        json_builder_add_string_value(b, "already-applied");
        return TRUE;
    }
    vo_worker_stage(VO_WORKER_STAGE_PATCHING);
    if (!vo_patch_execute(w->bundle, w->guest, error)) {
        return FALSE;
    }
    vo_worker_stage(VO_WORKER_STAGE_VERIFYING);
    json_builder_set_member_name(b, "verify");
    if (!vo_mounts_reopen_read_only(w->guest, error) ||
        !vo_patch_verify(w->bundle, w->guest, b, error)) {
        return FALSE;
    }
    json_builder_set_member_name(b, "status");
    json_builder_add_string_value(b, "patched");
    return TRUE;
}

static gboolean vo_worker_verify(VoWorker *w, JsonBuilder *b, GError **error)
{
    gboolean ok;

    json_builder_set_member_name(b, "instructions");
    ok = vo_patch_verify(w->bundle, w->guest, b, error);
    json_builder_set_member_name(b, "verified");
    json_builder_add_boolean_value(b, ok);
    return ok;
}

static void vo_worker_member_str(JsonBuilder *b, const char *name,
                                 const char *value)
{
    if (value) {
        /* Labels are the guest's bytes; the report is UTF-8. */
        g_autofree char *text = g_utf8_make_valid(value, -1);

        json_builder_set_member_name(b, name);
        json_builder_add_string_value(b, text);
    }
}

/*
 * Where each partition, whole-disk filesystem and logical volume of the
 * guest's disks lies, and what libblkid found on it (a LUKS volume's
 * "fstype" is "crypto_LUKS", its "fs_uuid" the LUKS UUID): the
 * --host-kernel route (vo-hostkernel.c) copies one out and lets the host
 * kernel mount it, and with --luks-key the parent opens the LUKS volumes
 * it has keys for (docs/offline.rst, "LUKS"), so that the parent itself
 * never parses a partition table.
 */
static gboolean vo_worker_locate(VoDisk *const *disks, guint n,
                                 JsonBuilder *b, GError **error)
{
    json_builder_set_member_name(b, "volumes");
    json_builder_begin_array(b);
    for (guint d = 0; d < n; d++) {
        g_autoptr(VoLayout) layout = vo_layout_scan(disks[d], error);

        if (!layout) {
            if (n > 1) {
                g_prefix_error(error, "disk %u: ", d + 1);
            }
            return FALSE;
        }
        for (guint i = 0; i < layout->partitions->len; i++) {
            VoPartition *p = layout->partitions->pdata[i];

            json_builder_begin_object(b);
            json_builder_set_member_name(b, "disk");
            json_builder_add_int_value(b, d);
            json_builder_set_member_name(b, "number");
            json_builder_add_int_value(b, p->number);
            json_builder_set_member_name(b, "offset");
            json_builder_add_int_value(b, p->offset);
            json_builder_set_member_name(b, "size");
            json_builder_add_int_value(b, p->size);
            vo_worker_member_str(b, "fstype", p->fstype);
            vo_worker_member_str(b, "fs_uuid", p->fs_uuid);
            vo_worker_member_str(b, "fs_label", p->fs_label);
            vo_worker_member_str(b, "part_uuid", p->part_uuid);
            vo_worker_member_str(b, "part_label", p->part_label);
            vo_worker_member_str(b, "volume", p->volume);
            json_builder_end_object(b);
        }
    }
    json_builder_end_array(b);
    return TRUE;
}

#ifdef VO_WORKER_TEST_HOOKS
static void vo_worker_test_write(const void *data, gsize len)
{
    const guint8 *p = data;

    while (len > 0) {
        ssize_t n = write(VO_WORKER_FD_REPORT, p, len);

        if (n <= 0) {
            _exit(1);
        }
        p += n;
        len -= n;
    }
}

static void vo_worker_test_frame(guint16 type, const char *body, gsize len,
                                 guint32 claimed)
{
    VoWireHeader h = {
        .magic = GUINT32_TO_LE(VO_WIRE_MAGIC),
        .version = GUINT16_TO_LE(VO_WIRE_VERSION),
        .type = GUINT16_TO_LE(type),
        .length = GUINT32_TO_LE(claimed),
    };

    vo_worker_test_write(&h, sizeof(h));
    vo_worker_test_write(body, len);
}

/*
 * Tests only: a worker that talks nonsense to its parent, as a worker
 * taken over by an image could.  The kind is named by the image's file
 * name ("...report-KIND..."), which the parent passes on.
 */
static void vo_worker_test_report(const char *image)
{
    const char *kind = strstr(image, "report-");
    g_autofree char *deep = NULL;
    const char *body = NULL;

    if (!kind) {
        return;
    }
    kind += strlen("report-");
    if (g_str_has_prefix(kind, "bad-magic")) {
        VoWireHeader h = { .magic = 0, .length = GUINT32_TO_LE(2) };

        vo_worker_test_write(&h, sizeof(h));
        vo_worker_test_write("{}", 2);
    } else if (g_str_has_prefix(kind, "huge")) {
        vo_worker_test_frame(VO_WIRE_RESULT, "{}", 2, G_MAXUINT32);
    } else if (g_str_has_prefix(kind, "short")) {
        vo_worker_test_frame(VO_WIRE_RESULT, "{}", 2, 100);
    } else if (g_str_has_prefix(kind, "deep")) {
        gsize n = VO_WIRE_MAX_BODY - 1;

        deep = g_malloc(n);
        memset(deep, '[', n);
        vo_worker_test_frame(VO_WIRE_RESULT, deep, n, n);
    } else if (g_str_has_prefix(kind, "hidden-deep")) {
        /* json-glib reads comments: a quote in one must not hide the
         * nesting from the parent's check. */
        static const char hide[] = "/* \" */";
        gsize half = (VO_WIRE_MAX_BODY - 2 * strlen(hide)) / 2;
        gsize n = 2 * strlen(hide) + 2 * half;

        deep = g_malloc(n);
        memcpy(deep, hide, strlen(hide));
        memset(deep + strlen(hide), '[', half);
        memset(deep + strlen(hide) + half, ']', half);
        memcpy(deep + n - strlen(hide), hide, strlen(hide));
        vo_worker_test_frame(VO_WIRE_RESULT, deep, n, n);
    } else if (g_str_has_prefix(kind, "wide")) {
        /* Within the length and the depth: "{"a":[0,0,...,0]}". */
        gsize n = VO_WIRE_MAX_BODY - 1;

        deep = g_malloc(n);
        memcpy(deep, "{\"a\":[", 6);
        for (gsize i = 6; i + 2 < n; i += 2) {
            memcpy(deep + i, "0,", 2);
        }
        memcpy(deep + n - (n % 2 ? 3 : 2), n % 2 ? "0]}" : "]}",
               n % 2 ? 3 : 2);
        vo_worker_test_frame(VO_WIRE_RESULT, deep, n, n);
    } else if (g_str_has_prefix(kind, "crash-after")) {
        /* A sound report, then a crash before the worker ends. */
        body = "{\"inventory\": {}}";
        vo_worker_test_frame(VO_WIRE_RESULT, body, strlen(body),
                             strlen(body));
        close(VO_WORKER_FD_REPORT);
        *(volatile int *)NULL = 1;
    } else if (g_str_has_prefix(kind, "configure-extra")) {
        /* An unreadable result file, with records claimed beside it. */
        body = "{\"inventory\": {}, \"dpkg_configure\": "
               "{\"status\": \"unreadable\", \"message\": \"x\", "
               "\"records\": [{\"bundle\": \"b\", \"version\": \"1\", "
               "\"outcome\": \"recorded\"}]}}";
    } else if (g_str_has_prefix(kind, "scan-escape")) {
        /* A finding whose path would drive the operator's terminal. */
        body = "{\"scan\": {\"engine\": \"ClamAV 1\", \"database\": "
               "{\"version\": null, \"signatures\": 1}, "
               "\"files-scanned\": 1, \"files-cached\": 0, "
               "\"bytes-scanned\": 1, \"findings\": [{\"filesystem\": "
               "\"/\", \"path\": \"/x\\u001b]0;owned\\u0007\", "
               "\"signature\": \"Eicar\"}], \"errors\": [], "
               "\"cached\": \"\", \"clean\": \"\"}}";
    } else if (g_str_has_prefix(kind, "scan-clean-lie")) {
        /* Cache keys that are no keys: they would reach the cache file. */
        body = "{\"scan\": {\"engine\": \"ClamAV 1\", \"database\": "
               "{\"version\": null, \"signatures\": 1}, "
               "\"files-scanned\": 1, \"files-cached\": 0, "
               "\"bytes-scanned\": 1, \"findings\": [], \"errors\": [], "
               "\"cached\": \"\", \"clean\": \"../../etc/passwd\"}}";
    } else if (g_str_has_prefix(kind, "scan-cached-lie")) {
        /* A bit for a key the parent never gave (none: the first scan). */
        body = "{\"scan\": {\"engine\": \"ClamAV 1\", \"database\": "
               "{\"version\": null, \"signatures\": 1}, "
               "\"files-scanned\": 1, \"files-cached\": 0, "
               "\"bytes-scanned\": 1, \"findings\": [], \"errors\": [], "
               "\"cached\": \"AQ==\", \"clean\": \"\"}}";
    } else if (g_str_has_prefix(kind, "format-lie")) {
        /* Formats the parent did not serve the disks in. */
        body = "{\"inventory\": {\"format\": \"vmdk\", \"disks\": "
               "[{\"disk\": 1, \"format\": \"vmdk\"}]}}";
    } else if (g_str_has_prefix(kind, "disks-extra")) {
        /* One disk more than the guest has, whose format we never set. */
        body = "{\"inventory\": {\"format\": \"raw\", \"disks\": "
               "[{\"disk\": 1}, {\"disk\": 2, \"format\": \"vmdk\"}]}}";
    } else if (g_str_has_prefix(kind, "not-json")) {
        body = "{\"status\": ";
    } else if (g_str_has_prefix(kind, "unknown-member")) {
        body = "{\"status\": \"dry-run\", \"owned\": true}";
    } else if (g_str_has_prefix(kind, "wrong-type")) {
        body = "{\"inventory\": \"all yours\"}";
    } else if (g_str_has_prefix(kind, "escape")) {
        body = "{\"error\": {\"code\": 0, \"message\": "
               "\"evil \\u001b]0;owned\\u0007 \\u009b end\"}}";
    } else if (g_str_has_prefix(kind, "bad-error")) {
        body = "{\"error\": {\"code\": 999, \"message\": \"x\"}}";
    } else if (g_str_has_prefix(kind, "trailing")) {
        body = "{\"inventory\": {}}";
        vo_worker_test_frame(VO_WIRE_RESULT, body, strlen(body),
                             strlen(body));
        body = NULL;
        vo_worker_test_write("more", 4);
    } else if (g_str_has_prefix(kind, "stages")) {
        body = "{\"stage\": \"deciding\"}";
        for (int i = 0; i < 9; i++) {
            vo_worker_test_frame(VO_WIRE_STAGE, body, strlen(body),
                                 strlen(body));
        }
        body = NULL;
    } else if (g_str_has_prefix(kind, "bad-stage")) {
        body = "{\"stage\": \"\\u001b]0;owned\\u0007\"}";
        vo_worker_test_frame(VO_WIRE_STAGE, body, strlen(body),
                             strlen(body));
        body = NULL;
    }
    if (body) {
        vo_worker_test_frame(VO_WIRE_RESULT, body, strlen(body),
                             strlen(body));
    }
    /* "silent" and the rest: no report at all. */
    _exit(0);
}

/*
 * Tests only (offline/tests, never installed): what a reader with a
 * memory bug, or one taken over by a crafted image, would do.  A guest
 * file /etc/vmaugment-crash makes a reader crash; /etc/vmaugment-attack
 * names one attack on the host, whose outcome becomes the job's error.
 */
static gboolean vo_worker_test_hooks(VoGuest *guest, GError **error)
{
    g_autoptr(GBytes) crash = vo_guest_read_file(guest, "/etc/vmaugment-crash",
                                                 NULL);
    g_autoptr(GBytes) attack = vo_guest_read_file(guest,
                                                  "/etc/vmaugment-attack",
                                                  NULL);
    g_autofree char *what = NULL;
    long rc = -1;

    if (crash) {
        *(volatile int *)NULL = 1;
    }
    if (!attack) {
        return TRUE;
    }
    what = g_strstrip(g_strndup(g_bytes_get_data(attack, NULL),
                                g_bytes_get_size(attack)));
    errno = 0;
    if (g_str_equal(what, "host-file")) {
        rc = open("/etc/shadow", O_RDONLY);
    } else if (g_str_equal(what, "proc")) {
        rc = open("/proc/1/environ", O_RDONLY);
    } else if (g_str_equal(what, "socket")) {
        rc = socket(AF_INET, SOCK_STREAM, 0);
    } else if (g_str_equal(what, "exec")) {
        char *const args[] = { (char *)"/bin/sh", NULL };

        rc = execve(args[0], args, args + 1);
    } else if (g_str_equal(what, "kill")) {
        rc = kill(-1, SIGKILL);
    } else if (g_str_equal(what, "ptrace")) {
        rc = ptrace(PTRACE_ATTACH, getppid(), NULL, NULL);
    } else if (g_str_equal(what, "unshare")) {
        rc = unshare(CLONE_NEWNS);
    } else if (g_str_equal(what, "exec-memory")) {
        rc = mmap(NULL, 4096, PROT_READ | PROT_EXEC,
                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) == MAP_FAILED ? -1 : 0;
    }
    g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "attack %s: %s", what,
                rc < 0 ? g_strerror(errno) : "succeeded");
    return FALSE;
}
#endif

static gboolean vo_worker_do(VoWorker *w, JsonBuilder *b, GError **error)
{
    guint n = w->n_disks;
    VoDisk *disks[VO_WORKER_MAX_DISKS + VO_WORKER_MAX_LUKS];
    gboolean ok;

    for (guint i = 0; i < n + w->n_opened; i++) {
        g_autofree char *export = i < n ? NULL
                                        : g_strdup_printf("luks%u", i - n);

        disks[i] = vo_disk_connect(vo_worker_disk_fd(w->job, i), export,
                                   w->job == VO_WORKER_APPLY, error);
        if (!disks[i]) {
            while (i > 0) {
                vo_disk_free(disks[--i]);
            }
            return FALSE;
        }
    }
    /* A spare's scan (vo_scan_run()): its disk is served, so its request
     * was written and sealed before. */
    if (w->job == VO_WORKER_SCAN && !w->engine_error &&
        vo_scan_engine_later()) {
        const char *image = vo_scan_engine_take_later(VO_WORKER_FD_LATER,
                                                      &w->engine_error);

        close(VO_WORKER_FD_LATER);
        if (image) {
            w->image = image;
        }
    }
    /* Said only now that the disks are connected: qemu-nbd ends when its
     * client leaves after the handshake, not before. */
    if (w->engine_error || w->job == VO_WORKER_LOCATE) {
        ok = w->engine_error == NULL && vo_worker_locate(disks, n, b, error);
        for (guint i = 0; i < n + w->n_opened; i++) {
            vo_disk_free(disks[i]);
        }
        if (w->engine_error) {
            g_propagate_error(error, g_steal_pointer(&w->engine_error));
        }
        return ok;
    }
    w->guest = vo_mounts_open_guest(disks, n, w->opened, w->n_opened,
                                    w->image, error);
    if (!w->guest) {
        return FALSE;
    }
#ifdef VO_WORKER_TEST_HOOKS
    vo_worker_test_report(w->image);
    if (!vo_worker_test_hooks(w->guest, error)) {
        return FALSE;
    }
#endif
    switch (w->job) {
    case VO_WORKER_INSPECT:
        return vo_worker_inspect(w, b, error);
    case VO_WORKER_CHECK:
        return vo_worker_check(w, b, error);
    case VO_WORKER_APPLY:
        return vo_worker_apply(w, b, error);
    case VO_WORKER_VERIFY:
        return vo_worker_verify(w, b, error);
    case VO_WORKER_PACKAGES:
        return vo_worker_packages(w, b, error);
    case VO_WORKER_SCAN:
        return vo_worker_scan(w, b, error);
    case VO_WORKER_LOCATE:
        break;
    }
    g_assert_not_reached();
}

/*
 * glibc loads iconv's converters and their list from files on first use,
 * and the empty root has none: load those hivex converts registry names
 * and strings with (LATIN1 and UTF-16LE, to and from UTF-8) now, and keep
 * them open so that they stay loaded.
 */
static gboolean vo_worker_preload_iconv(void)
{
    static const char *const pairs[][2] = {
        { "UTF-8", "LATIN1" }, { "LATIN1", "UTF-8" },
        { "UTF-8", "UTF-16LE" }, { "UTF-16LE", "UTF-8" },
    };
    static iconv_t kept[G_N_ELEMENTS(pairs)];

    for (guint i = 0; i < G_N_ELEMENTS(pairs); i++) {
        kept[i] = iconv_open(pairs[i][0], pairs[i][1]);
        if (kept[i] == (iconv_t)-1) {
            return FALSE;
        }
    }
    return TRUE;
}

/* "DISK:OFFSET,..." or "-": where each LUKS volume the parent opened
 * lies (vo_worker_run()). */
static gboolean vo_worker_parse_opened(VoWorker *w, const char *arg)
{
    g_auto(GStrv) items = NULL;

    if (g_str_equal(arg, "-")) {
        return TRUE;
    }
    items = g_strsplit(arg, ",", -1);
    for (guint i = 0; items[i]; i++) {
        g_auto(GStrv) f = g_strsplit(items[i], ":", 3);
        guint64 disk, offset;

        if (w->n_opened == VO_WORKER_MAX_LUKS || g_strv_length(f) != 2 ||
            !g_ascii_string_to_unsigned(f[0], 10, 0, VO_WORKER_MAX_DISKS - 1,
                                        &disk, NULL) ||
            !g_ascii_string_to_unsigned(f[1], 10, 0, G_MAXINT64, &offset,
                                        NULL)) {
            return FALSE;
        }
        w->opened[w->n_opened].disk = disk;
        w->opened[w->n_opened].offset = offset;
        w->n_opened++;
    }
    return TRUE;
}

/* The bundle its parent verified, from the sealed memfd. */
static VoBundle *vo_worker_bundle(const char *image, const char *signer,
                                  const char *fingerprint, GError **error)
{
    struct stat st;
    void *data;
    VoBundle *bundle;

    if (fstat(VO_WORKER_FD_BUNDLE, &st) < 0 || st.st_size <= 0) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "no bundle was given");
        return NULL;
    }
    data = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE,
                VO_WORKER_FD_BUNDLE, 0);
    if (data == MAP_FAILED) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "cannot map the bundle: %s", g_strerror(errno));
        return NULL;
    }
    bundle = vo_bundle_load_checked_data(data, st.st_size, image, signer,
                                         fingerprint, error);
    /* Payloads were copied out of the archive. */
    munmap(data, st.st_size);
    return bundle;
}

int main(int argc, char **argv)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonNode) report = NULL;
    g_autoptr(GError) error = NULL;
    guint64 n_disks = 0;
    int io_fds[1 + VO_WORKER_MAX_DISKS + VO_WORKER_MAX_LUKS] = {
        VO_WORKER_FD_REPORT,
    };
    VoWorker w = { 0 };
    SandboxPolicy policy = {
        .limits = {
            .memory_bytes = VO_WORKER_MEMORY,
            .cpu_seconds = VO_WORKER_CPU_SECONDS,
            .max_files = VO_WORKER_MAX_FILES,
            /* The probe shadow is a sparse memfd as large as the disk;
             * the scratch space is bounded by its own size. */
            .max_file_bytes = RLIM_INFINITY,
        },
        .io_fds = io_fds,
        .code_fd = -1,
        .scratch_bytes = VO_WORKER_SCRATCH,
        .die_with_parent = true,
    };
    struct stat st;
    gboolean ok;
    int n_fds, rc;

    if (argc < 4 || !vo_worker_job_from_name(argv[1], &w.job) ||
        argc != (vo_worker_job_has_bundle(w.job) ? 7 : 5) ||
        !vo_worker_parse_opened(&w, argv[4])) {
        fprintf(stderr, "usage: vmaugment-offline-worker JOB IMAGE DISKS "
                "LUKS [SIGNER FINGERPRINT] (started by vmaugment-offline)\n");
        return 2;
    }
    w.image = argv[2];
    /* The guest's disks, each on its descriptor. */
    if (!g_ascii_string_to_unsigned(argv[3], 10, 1, VO_WORKER_MAX_DISKS,
                                    &n_disks, NULL)) {
        fprintf(stderr, "vmaugment-offline-worker: 1 to %d disks\n",
                VO_WORKER_MAX_DISKS);
        return 2;
    }
    w.n_disks = n_disks;
    n_fds = vo_worker_job_fds(w.job);
    policy.n_io_fds = 1;
    for (guint i = 0; i < w.n_disks + w.n_opened; i++) {
        io_fds[policy.n_io_fds++] = vo_worker_disk_fd(w.job, i);
    }
    n_fds += w.n_disks - 1 + w.n_opened;
    /* Room for the bundle it maps and the payloads it copies out. */
    if (vo_worker_job_has_bundle(w.job) &&
        fstat(VO_WORKER_FD_BUNDLE, &st) == 0 && st.st_size > 0) {
        policy.limits.memory_bytes += 2 * (guint64)st.st_size;
    }
    if (!vo_worker_preload_iconv()) {
        fprintf(stderr, "vmaugment-offline-worker: iconv: %s\n",
                g_strerror(errno));
        return 2;
    }
    if (w.job == VO_WORKER_SCAN) {
        /*
         * The host owner's database, loaded and compiled before any
         * guest byte and before confinement: no path of the host is
         * reachable afterwards (docs/sandbox.rst, "The scan job").
         */
        /* Our descriptors, then the sandbox's status channel. */
        if (!vo_scan_engine_prepare(VO_WORKER_FD_REQUEST,
                                    VO_WORKER_FD_DISK + n_fds + 1,
                                    &w.engine_error)) {
            g_prefix_error(&w.engine_error, "scan: ");
        }
        close(VO_WORKER_FD_REQUEST);
        /* Kept into the confinement only for a request still to come;
         * an engine that did not load is reported once the disk answers,
         * as for any scan. */
        if (w.engine_error || !vo_scan_engine_later()) {
            close(VO_WORKER_FD_LATER);
        }
        policy.limits.memory_bytes = VO_WORKER_SCAN_MEMORY;
        policy.limits.cpu_seconds = vo_scan_engine_timeout_s() +
                                    VO_WORKER_SCAN_GRACE_S;
        /* libclamav makes a directory per scan for what it unpacks. */
        policy.scratch_dirs = true;
    }
    if (vo_worker_job_has_scan(w.job)) {
        /* A quarantine's scan: loaded as the scan job's is, and given its
         * room.  Empty: the bundle has no quarantine instruction. */
        if (fstat(VO_WORKER_FD_SCAN, &st) == 0 && st.st_size > 0) {
            /* Our descriptors, then the sandbox's status channel. */
            if (!vo_scan_engine_prepare(VO_WORKER_FD_SCAN,
                                        VO_WORKER_FD_DISK + n_fds + 1,
                                        &w.engine_error)) {
                g_prefix_error(&w.engine_error, "quarantine: ");
            }
            policy.limits.memory_bytes += VO_WORKER_SCAN_MEMORY;
            policy.limits.cpu_seconds += vo_scan_engine_timeout_s();
            policy.scratch_dirs = true;
        }
        close(VO_WORKER_FD_SCAN);
    }
    rc = sandbox_confine(&policy, VO_WORKER_FD_DISK + n_fds);
    if (rc < 0) {
        /* Never a byte of the guest unconfined. */
        return 125;
    }

    json_builder_begin_object(b);
    if (vo_worker_job_has_bundle(w.job)) {
        w.bundle = vo_worker_bundle(w.image, argv[5], argv[6], &error);
        close(VO_WORKER_FD_BUNDLE);
    }
    ok = error == NULL && vo_worker_do(&w, b, &error);
    if (!ok) {
        vo_worker_add_error(b, error);
    }
    json_builder_end_object(b);
    report = json_builder_get_root(b);
    /* The guest's data is written back (vo_guest_sync()) before this. */
    g_clear_pointer(&w.guest, vo_guest_free);
    g_clear_pointer(&w.bundle, vo_bundle_free);
    if (!vo_wire_send(VO_WORKER_FD_REPORT, VO_WIRE_RESULT, report, NULL)) {
        return 1;
    }
    /*
     * Nothing is left to write back or say, and the parent waits for our
     * end: the libraries' destructors would first touch pages never
     * touched before, on a virtual machine tens of microseconds a fault
     * (docs/performance.md).
     */
    _exit(ok ? 0 : 1);
}
