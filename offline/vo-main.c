/*
 * vmaugment-offline: inspect, check, patch and verify VM disk images
 * without booting them.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "servicing.h"
#include "vo-configure.h"
#include "vmaug-cli.h"
#include "vo-apply.h"
#include "vo-image.h"
#include "vo-batch.h"
#include "vo-batch-apt.h"
#include "vo-hostkernel.h"
#include "vo-inventory.h"
#include "vo-libvirt.h"
#include "vo-ovf.h"
#include "vo-msu.h"
#include "vo-plan-bundle.h"
#include "vo-plan.h"
#include "vo-scan.h"
#include "vo-version.h"
#include "vo-worker.h"

static char *opt_format;
/* The guest's second and later disks, in its order (NULL: none). */
static char **opt_disks;
/* Their formats, one per --disk in the same order, or none at all. */
static char **opt_disk_formats;
/* The command and its arguments, and for each --disk how many of them
 * came before it: plan's guests are each IMAGE with the --disk options
 * that follow it. */
static GPtrArray *vo_main_words;
static GPtrArray *vo_main_disk_list;
static GArray *vo_main_disk_after;
/* Exit status of a command that succeeded but answers "no". */
static int vo_main_status;
static char *opt_trust_dir;
static gboolean opt_dry_run;
static char *opt_key;
static char *opt_cert;
static char *opt_payload_dir;
static char *opt_output;
static int opt_jobs = 2;
static char *opt_report_dir;
static char **opt_bundles;
static char *opt_bundle_dir;
static char *opt_libvirt;
static gboolean opt_accept_weaker;
static char **opt_keys;
static gboolean opt_allow_backing;
static char **opt_apt_sources;
static char *opt_msu_catalog;
static char *opt_keyring;
static gboolean opt_security_only;
static char *opt_download_dir;
static char *opt_plan;
static char *opt_debs;
static int opt_group = -1;
static gboolean opt_stage_preinst;
/* apply, check: who reads and writes the guest (NULL: the worker). */
static char *opt_backend;
static gboolean opt_host_kernel;
/* scan */
static char *opt_database;
static char **opt_scan_paths;
static gint64 opt_max_file_size = VO_SCAN_MAX_FILE_SIZE;
static int opt_timeout = VO_SCAN_TIMEOUT_S;
static char *opt_cache;
static gboolean opt_force_share;
static gboolean opt_spare;
static gboolean opt_qemu_released;
/* Accepted for the convention's sake: every report is JSON anyway. */
static gboolean opt_json;
/* Whether a report reached stdout: a failure without one gets one. */
static gboolean vo_main_reported;
/* "check" answers a question: its report says "applicable", not the
 * "dry-run" of the apply it runs. */
static gboolean vo_main_checking;

static void vo_main_print_json(JsonNode *node)
{
    vmaug_cli_print_json(node);
    vo_main_reported = TRUE;
}

/* A command line that does not fit the command: exit status 2. */
static gboolean vo_main_usage(GError **error, const char *usage)
{
    g_set_error(error, VMAUG_CLI_USAGE_ERROR, VMAUG_CLI_USAGE_ERROR_CODE,
                "%s", usage);
    return FALSE;
}

/* The image's format, for a worker that reads it as it is. */
static char *vo_main_format(const char *image, const char *format,
                            GError **error)
{
    return vo_image_open_format(image, format, FALSE, error);
}

/*
 * The disks of the guest @arg names: an OVF's disks, or the image and
 * @disks after it, in the order the guest sees them; @disk_formats (NULL,
 * or one per disk) are checked to pair with them.
 */
static GPtrArray *vo_main_guest_of(const char *arg, char **disks,
                                   char **disk_formats, GError **error)
{
    g_autoptr(GPtrArray) images = NULL;

    if (g_str_has_suffix(arg, ".ovf")) {
        if (disks || disk_formats) {
            vo_main_usage(error, "--disk: an OVF names its disks itself");
            return NULL;
        }
        return vo_ovf_disks(arg, error);
    }
    images = g_ptr_array_new_with_free_func(g_free);
    g_ptr_array_add(images, vo_ovf_resolve_image(arg, error));
    if (!images->pdata[0]) {
        return NULL;
    }
    for (guint i = 0; disks && disks[i]; i++) {
        if (g_str_has_suffix(disks[i], ".ovf") ||
            g_str_has_suffix(disks[i], ".ova")) {
            vo_main_usage(error, "--disk names a disk image, not an OVF");
            return NULL;
        }
        g_ptr_array_add(images, g_strdup(disks[i]));
    }
    /* Paired by position: a count that differs pairs nothing surely. */
    if (disk_formats && g_strv_length(disk_formats) + 1 != images->len) {
        vo_main_usage(error, "--disk-format: one per --disk, in order");
        return NULL;
    }
    return g_steal_pointer(&images);
}

/* The guest of the command's IMAGE @arg: every --disk is its. */
static GPtrArray *vo_main_guest(const char *arg, GError **error)
{
    return vo_main_guest_of(arg, opt_disks, opt_disk_formats, error);
}

/* The format named for disk @i of a guest whose later disks have
 * @disk_formats (NULL: probed). */
static const char *vo_main_disk_format_of(char **disk_formats, guint i)
{
    return i > 0 && disk_formats ? disk_formats[i - 1] : opt_format;
}

static const char *vo_main_disk_format(guint i)
{
    return vo_main_disk_format_of(opt_disk_formats, i);
}

/* A worker request for the guest on @images, in their @formats (the
 * later disks' arrays point into both). */
static void vo_main_request(VoWorkerRequest *req, GPtrArray *images,
                            GPtrArray *formats)
{
    req->image = req->disk = images->pdata[0];
    req->format = formats->pdata[0];
    req->n_more = images->len - 1;
    req->more_images = (const char *const *)images->pdata + 1;
    req->more_disks = (const char *const *)images->pdata + 1;
    req->more_formats = (const char *const *)formats->pdata + 1;
}

/* Each disk's format, for a worker that reads them as they are. */
static GPtrArray *vo_main_formats(GPtrArray *images, char **disk_formats,
                                  GError **error)
{
    g_autoptr(GPtrArray) formats = g_ptr_array_new_with_free_func(g_free);

    for (guint i = 0; i < images->len; i++) {
        char *format = vo_main_format(
            images->pdata[i], vo_main_disk_format_of(disk_formats, i),
            error);

        if (!format) {
            return NULL;
        }
        g_ptr_array_add(formats, format);
    }
    return g_steal_pointer(&formats);
}

/* Each disk's format as the user named it (NULL: none), for a worker
 * whose run probes them (VoWorkerRequest.probe). */
static GPtrArray *vo_main_named_formats(GPtrArray *images, char **disk_formats)
{
    GPtrArray *formats = g_ptr_array_new();

    for (guint i = 0; i < images->len; i++) {
        g_ptr_array_add(formats,
                        (char *)vo_main_disk_format_of(disk_formats, i));
    }
    return formats;
}

/* Names each disk of the inventory's "disks" by its image. */
static void vo_main_name_disks(JsonNode *inventory, GPtrArray *images)
{
    JsonArray *disks;

    if (!JSON_NODE_HOLDS_OBJECT(inventory) ||
        !JSON_NODE_HOLDS_ARRAY(json_object_get_member(
            json_node_get_object(inventory), "disks"))) {
        return;
    }
    disks = json_object_get_array_member(json_node_get_object(inventory),
                                         "disks");
    for (guint i = 0; i < json_array_get_length(disks) && i < images->len;
         i++) {
        JsonNode *d = json_array_get_element(disks, i);

        if (JSON_NODE_HOLDS_OBJECT(d)) {
            json_object_set_string_member(json_node_get_object(d), "image",
                                          images->pdata[i]);
        }
    }
}

static gboolean vo_main_inspect(int argc, char **argv, GError **error)
{
    g_autoptr(GPtrArray) images = NULL;
    g_autoptr(GPtrArray) formats = NULL;
    g_autoptr(JsonObject) result = NULL;
    VoWorkerRequest req = { .job = VO_WORKER_INSPECT };
    const char *image;

    if (argc != 2) {
        return vo_main_usage(error, "inspect IMAGE [--disk IMAGE]...");
    }
    if (opt_host_kernel) {
        /* Rather than a refusal that names the option it was given. */
        return vo_main_usage(error, "inspect does not take --host-kernel "
                             "(apply, check and verify do)");
    }
    images = vo_main_guest(argv[1], error);
    if (!images) {
        return FALSE;
    }
    image = images->pdata[0];
    formats = vo_main_named_formats(images, opt_disk_formats);
    vo_main_request(&req, images, formats);
    req.probe = TRUE;
    if (!vo_worker_run(&req, &result, error)) {
        return FALSE;
    }
    if (!json_object_has_member(result, "inventory")) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "the worker reported no inventory");
        return FALSE;
    }
    vo_main_name_disks(json_object_get_member(result, "inventory"), images);
    /* A guest's result of configuring at its boot counts as its report:
     * recorded here, shown with the inventory (docs/offline.rst). */
    if (json_object_has_member(result, "dpkg_configure")) {
        JsonNode *inv = json_object_get_member(result, "inventory");
        JsonNode *done = vo_configure_result_record(
            image, json_object_get_member(result, "dpkg_configure"), error);

        if (!done) {
            return FALSE;
        }
        if (JSON_NODE_HOLDS_OBJECT(inv)) {
            json_object_set_member(json_node_get_object(inv),
                                   "dpkg_configure", done);
        } else {
            json_node_unref(done);
        }
    }
    /* The same for the Windows installer's result (vo-msu.h). */
    if (json_object_has_member(result, "msu_install")) {
        JsonNode *inv = json_object_get_member(result, "inventory");
        JsonNode *done = vo_msu_result_record(
            image, json_object_get_member(result, "msu_install"), error);

        if (!done) {
            return FALSE;
        }
        if (JSON_NODE_HOLDS_OBJECT(inv)) {
            json_object_set_member(json_node_get_object(inv), "msu_install",
                                   done);
        } else {
            json_node_unref(done);
        }
    }
    vo_main_print_json(json_object_get_member(result, "inventory"));
    return TRUE;
}

static const char *vo_main_trust_dir(void)
{
    return opt_trust_dir ? opt_trust_dir : vmaug_cli_default_trust_dir();
}

/* Prints the report object, with @status (unless NULL: the report has
 * one) and the error if there is one, and passes @ok through. */
static gboolean vo_main_finish_report(JsonBuilder *b, const char *status,
                                      gboolean ok, GError **error)
{
    g_autoptr(JsonNode) root = NULL;

    if (status) {
        json_builder_set_member_name(b, "status");
        json_builder_add_string_value(b, status);
    }
    if (!ok) {
        json_builder_set_member_name(b, "error");
        json_builder_add_string_value(b, (*error)->message);
    }
    json_builder_end_object(b);
    root = json_builder_get_root(b);
    if (vo_main_checking &&
        g_strcmp0(json_object_get_string_member_with_default(
                      json_node_get_object(root), "status", NULL),
                  "dry-run") == 0) {
        json_object_set_string_member(json_node_get_object(root), "status",
                                      "applicable");
    }
    vo_main_print_json(root);
    return ok;
}

/* The report of a command whose bundle did not load: refused (its
 * signature) or failed, naming the image and the bundle file. */
static gboolean vo_main_bundle_failed(const char *image, const char *bundle,
                                      GError **error)
{
    g_autoptr(JsonBuilder) b = json_builder_new();

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "image");
    json_builder_add_string_value(b, image);
    json_builder_set_member_name(b, "bundle");
    json_builder_add_string_value(b, bundle);
    return vo_main_finish_report(
        b, vmaug_exit_status_word(vmaug_cli_status(*error)), FALSE, error);
}

/*
 * The routes for filesystems the worker does not write (docs/offline.rst,
 * "XFS, btrfs and encrypted disks"): each one only when asked for.
 */
static gboolean vo_main_route(VoApplyFlags *flags, GError **error)
{
    if (opt_host_kernel) {
        if (opt_backend && !g_str_equal(opt_backend, "native")) {
            return vo_main_usage(error, "--host-kernel and --backend are "
                                 "two routes; choose one");
        }
        *flags |= VO_APPLY_HOST_KERNEL;
        return TRUE;
    }
    if (!opt_backend || g_str_equal(opt_backend, "native")) {
        return TRUE;
    }
    if (!g_str_equal(opt_backend, "libguestfs")) {
        return vo_main_usage(error, "--backend is native or libguestfs");
    }
    *flags |= VO_APPLY_LIBGUESTFS;
    return TRUE;
}

static gboolean vo_main_apply(int argc, char **argv, GError **error)
{
    g_autoptr(GPtrArray) images = NULL;
    g_autoptr(VoBundle) bundle = NULL;
    g_autoptr(JsonBuilder) b = json_builder_new();
    VoApplyFlags flags = opt_dry_run ? VO_APPLY_DRY_RUN : 0;
    g_autoptr(GPtrArray) formats = g_ptr_array_new();
    const char *image;
    /* A quarantine instruction's scan: scan's own options. */
    VoScanOptions scan = {
        .database = opt_database,
        .paths = opt_scan_paths,
        .max_file_size = opt_max_file_size > 0 ? opt_max_file_size : 0,
        .timeout_s = opt_timeout > 0 ? opt_timeout : 0,
    };

    if (argc != 3) {
        return vo_main_usage(error, "apply [--dry-run] "
                             "[--backend=libguestfs | --host-kernel] "
                             "[--database DIR [--path GUESTPATH]...] IMAGE "
                             "[--disk IMAGE]... BUNDLE");
    }
    images = vo_main_guest(argv[1], error);
    if (!images) {
        return FALSE;
    }
    image = images->pdata[0];
    if (!vo_main_route(&flags, error)) {
        return FALSE;
    }
    bundle = vo_bundle_load(argv[2], vo_main_trust_dir(), error);
    if (!bundle) {
        return vo_main_bundle_failed(image, argv[2], error);
    }
    for (guint i = 0; i < images->len; i++) {
        g_ptr_array_add(formats, (char *)vo_main_disk_format(i));
    }
    json_builder_begin_object(b);
    return vo_main_finish_report(
        b, NULL, vo_apply_image((const char *const *)images->pdata,
                                images->len,
                                (const char *const *)formats->pdata, bundle,
                                flags, &scan, b, error),
        error);
}

static gboolean vo_main_check(int argc, char **argv, GError **error)
{
    opt_dry_run = TRUE;
    vo_main_checking = TRUE;
    if (argc != 3) {
        return vo_main_usage(error, "check IMAGE [--disk IMAGE]... BUNDLE");
    }
    return vo_main_apply(argc, argv, error);
}

static gboolean vo_main_verify(int argc, char **argv, GError **error)
{
    g_autoptr(GPtrArray) images = NULL;
    g_autoptr(GPtrArray) formats = NULL;
    g_autoptr(VoBundle) bundle = NULL;
    const char *image;
    g_autoptr(JsonObject) result = NULL;
    g_autoptr(JsonBuilder) b = json_builder_new();
    VoWorkerRequest req = { .job = VO_WORKER_VERIFY };
    JsonNode *instructions;
    gboolean ok;

    if (argc != 3) {
        return vo_main_usage(error, "verify [--host-kernel] IMAGE "
                             "[--disk IMAGE]... BUNDLE");
    }
    images = vo_main_guest(argv[1], error);
    if (!images) {
        return FALSE;
    }
    image = images->pdata[0];
    bundle = vo_bundle_load(argv[2], vo_main_trust_dir(), error);
    if (!bundle) {
        return vo_main_bundle_failed(image, argv[2], error);
    }
    for (guint i = 0; i < images->len; i++) {
        if (!vo_apply_recover(images->pdata[i], NULL, error)) {
            return FALSE;
        }
    }
    /* Probed beside the worker's start; first by the host-kernel route,
     * which needs the formats to start at all. */
    formats = opt_host_kernel
                  ? vo_main_formats(images, opt_disk_formats, error)
                  : vo_main_named_formats(images, opt_disk_formats);
    if (!formats) {
        return FALSE;
    }
    vo_main_request(&req, images, formats);
    req.bundle = bundle;
    req.probe = !opt_host_kernel;
    if (opt_host_kernel) {
        g_autofree char *owner = g_canonicalize_filename(image, NULL);

        ok = images->len == 1
                 ? vo_hostkernel_run(VO_HOSTKERNEL_VERIFY, image, owner,
                                     image, -1, formats->pdata[0], bundle,
                                     &result, error)
                 : (g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                                "--host-kernel services guests of one "
                                "disk"), FALSE);
    } else {
        ok = vo_worker_run(&req, &result, error);
    }
    if (!result) {
        return FALSE;
    }
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "image");
    json_builder_add_string_value(b, image);
    json_builder_set_member_name(b, "bundle");
    json_builder_add_string_value(b, bundle->id);
    instructions = json_object_get_member(result, "instructions");
    if (instructions) {
        json_builder_set_member_name(b, "instructions");
        json_builder_add_value(b, json_node_copy(instructions));
    }
    json_builder_set_member_name(b, "verified");
    json_builder_add_boolean_value(b, ok);
    return vo_main_finish_report(b, ok ? "verified" : "not-verified", ok,
                                 error);
}

static gboolean vo_main_recover(int argc, char **argv, GError **error)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(GPtrArray) images = NULL;
    const char *action = "none";

    if (argc != 2) {
        return vo_main_usage(error, "recover IMAGE [--disk IMAGE]...");
    }
    images = vo_main_guest(argv[1], error);
    if (!images) {
        return FALSE;
    }
    /* Any disk leads to its group: the others are finished with it. */
    for (guint i = 0; i < images->len; i++) {
        const char *done;

        if (!vo_apply_recover(images->pdata[i], &done, error)) {
            return FALSE;
        }
        if (!g_str_equal(done, "none") &&
            !g_str_equal(action, "rolled-forward")) {
            action = done;
        }
    }
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "image");
    json_builder_add_string_value(b, argv[1]);
    json_builder_set_member_name(b, "recovery");
    json_builder_add_string_value(b, action);
    return vo_main_finish_report(b, "ok", TRUE, error);
}

static gboolean vo_main_bundle_build(int argc, char **argv, GError **error)
{
    /* A plan of .msu files: its own bundle (vo-msu.h). */
    if (opt_plan && vo_msu_plan_file_is(opt_plan)) {
        if (argc != 1 || !opt_payload_dir || !opt_key || !opt_cert ||
            !opt_output) {
            return vo_main_usage(error, "bundle-build --plan MSU-PLAN "
                                 "--payload-dir DIR [--group N] --key KEY "
                                 "--cert CERT --output BUNDLE");
        }
        return vo_msu_bundle_build(opt_plan, opt_group, opt_payload_dir,
                                   opt_key, opt_cert, opt_output, error);
    }
    if (opt_plan) {
        if (argc != 1 || !opt_debs || !opt_key || !opt_cert || !opt_output) {
            return vo_main_usage(error, "bundle-build --plan PLAN --debs DIR "
                                 "[--group N] [--stage-preinst] --key KEY "
                                 "--cert CERT --output BUNDLE");
        }
        return vo_plan_bundle_build(opt_plan, opt_group, opt_stage_preinst,
                                    opt_debs, opt_key,
                                    opt_cert, opt_output, error);
    }
    if (argc != 2 || !opt_key || !opt_cert || !opt_output) {
        return vo_main_usage(error, "bundle-build --key KEY --cert CERT "
                             "[--payload-dir DIR] --output BUNDLE MANIFEST");
    }
    return vo_bundle_build(argv[1], opt_payload_dir ? opt_payload_dir : ".",
                           opt_key, opt_cert, opt_output, error);
}

/*
 * plan's guests: each IMAGE (argv[1..]) with the --disk options after it
 * (and their --disk-format), or an OVF with its disks.
 */
static GPtrArray *vo_main_plan_guests(int argc, char **argv, GError **error)
{
    g_autoptr(GPtrArray) guests = g_ptr_array_new_with_free_func(
        (GDestroyNotify)vo_plan_guest_free);
    guint n_disks = opt_disks ? g_strv_length(opt_disks) : 0;
    guint next = 0;

    if (opt_disk_formats && g_strv_length(opt_disk_formats) != n_disks) {
        vo_main_usage(error, "--disk-format: one per --disk, in order");
        return NULL;
    }
    /* The command's argv are the words: a --disk after argv[i] (i >= 1)
     * had i + 1 words before it. */
    if (n_disks > 0 && g_array_index(vo_main_disk_after, guint, 0) < 2) {
        vo_main_usage(error, "plan: each --disk follows the IMAGE of the "
                      "guest it belongs to");
        return NULL;
    }
    for (int i = 1; i < argc; i++) {
        g_autoptr(GPtrArray) disks = g_ptr_array_new_null_terminated(
            0, NULL, TRUE);
        g_autoptr(GPtrArray) disk_formats = g_ptr_array_new_null_terminated(
            0, NULL, TRUE);
        g_autoptr(GPtrArray) images = NULL;
        g_autoptr(GPtrArray) formats = NULL;
        char **later_formats;
        VoPlanGuest *guest;

        for (; next < n_disks &&
               g_array_index(vo_main_disk_after, guint, next) == (guint)i + 1;
             next++) {
            g_ptr_array_add(disks, opt_disks[next]);
            if (opt_disk_formats) {
                g_ptr_array_add(disk_formats, opt_disk_formats[next]);
            }
        }
        later_formats = disk_formats->len ? (char **)disk_formats->pdata
                                          : NULL;
        images = vo_main_guest_of(argv[i],
                                  disks->len ? (char **)disks->pdata : NULL,
                                  later_formats, error);
        formats = images ? vo_main_formats(images, later_formats, error)
                         : NULL;
        if (!formats) {
            return NULL;
        }
        guest = vo_plan_guest_new(images->pdata[0],
                                  g_strdup(formats->pdata[0]));
        for (guint k = 1; k < images->len; k++) {
            vo_plan_guest_add_disk(guest, images->pdata[k],
                                   g_strdup(formats->pdata[k]));
        }
        g_ptr_array_add(guests, guest);
    }
    return g_steal_pointer(&guests);
}

/* Writes @plan to --output, or prints it. */
static gboolean vo_main_write_plan(JsonNode *plan, GError **error)
{
    if (opt_output) {
        g_autoptr(JsonGenerator) gen = json_generator_new();

        json_generator_set_pretty(gen, TRUE);
        json_generator_set_root(gen, plan);
        return json_generator_to_file(gen, opt_output, error);
    }
    vo_main_print_json(plan);
    return TRUE;
}

/* plan --msu-catalog CATALOG IMAGE...: the catalog's .msu files decided
 * for each group of Windows images at the same build, UBR and KBs. */
static gboolean vo_main_plan_msu(int argc, char **argv, GError **error)
{
    g_autoptr(GPtrArray) guests = NULL;
    g_autoptr(JsonNode) plan = NULL;
    VoMsuPlanOptions opts = {
        .catalog = opt_msu_catalog,
        .download_dir = opt_download_dir,
    };

    if (argc < 2 || opt_apt_sources || !opt_download_dir) {
        return vo_main_usage(error, "plan --msu-catalog CATALOG.json "
                             "--download-dir DIR [--output PLAN] "
                             "(IMAGE [--disk IMAGE]...)...");
    }
    guests = vo_main_plan_guests(argc, argv, error);
    if (!guests) {
        return FALSE;
    }
    opts.guests = guests;
    plan = vo_msu_plan_run(&opts, error);
    return plan && vo_main_write_plan(plan, error);
}

/* plan (IMAGE [--disk IMAGE]...)...: apt decides for each group of
 * identical package sets. */
static gboolean vo_main_plan(int argc, char **argv, GError **error)
{
    g_autoptr(GPtrArray) guests = NULL;
    g_autoptr(JsonNode) plan = NULL;
    VoPlanOptions opts = {
        .sources = opt_apt_sources,
        .keyring = opt_keyring,
        .security_only = opt_security_only,
        .download_dir = opt_download_dir,
    };

    if (opt_msu_catalog) {
        return vo_main_plan_msu(argc, argv, error);
    }
    if (argc < 2 || !opt_apt_sources || !opt_keyring || !opt_download_dir) {
        return vo_main_usage(error, "plan (--apt-source 'URI SUITE "
                             "COMPONENT...')... --keyring KEY.gpg "
                             "[--security-only] --download-dir DIR "
                             "[--output PLAN] (IMAGE [--disk IMAGE]...)...");
    }
    guests = vo_main_plan_guests(argc, argv, error);
    if (!guests) {
        return FALSE;
    }
    opts.guests = guests;
    plan = vo_plan_run(&opts, error);
    return plan && vo_main_write_plan(plan, error);
}

static gboolean vo_main_batch(int argc, char **argv, GError **error)
{
    g_autoptr(GPtrArray) targets = g_ptr_array_new_with_free_func(
        (GDestroyNotify)vo_batch_target_free);
    g_autoptr(GPtrArray) bundles = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(JsonNode) summary = NULL;
    g_autofree char *self = g_file_read_link("/proc/self/exe", error);
    VoBatchOptions opts = {
        .trust_dir = vo_main_trust_dir(),
        .report_dir = opt_report_dir,
        .dry_run = opt_dry_run,
        .allow_backing = opt_allow_backing,
        .accept_weaker = opt_accept_weaker,
        .keys = opt_keys,
    };
    gboolean all_ok;
    /* With apt, the bundles are the batch's own, one per group. */
    gboolean with_apt = opt_apt_sources != NULL;

    if (!self) {
        return FALSE;
    }
    /* Images come from the command line or from libvirt, not both. */
    if ((opt_libvirt ? argc != 1 : argc < 2) || opt_jobs < 1 ||
        opt_jobs > 64 ||
        (with_apt ? (opt_bundles || opt_bundle_dir || !opt_keyring ||
                     !opt_key || !opt_cert || !opt_report_dir)
                  : (!opt_bundles && !opt_bundle_dir))) {
        return vo_main_usage(error, "batch [--jobs N] [--report-dir DIR] "
                             "(--bundle B)... [--bundle-dir DIR] "
                             "((IMAGE|DIR|@LIST)... | --libvirt URI)\n"
                             "       batch [--jobs N] (--apt-source 'URI "
                             "SUITE COMPONENT...')... --keyring KEY.gpg "
                             "[--security-only] [--stage-preinst] --key KEY "
                             "--cert CERT "
                             "--report-dir DIR ((IMAGE|DIR|@LIST)... | "
                             "--libvirt URI)");
    }
    for (guint i = 0; opt_bundles && opt_bundles[i]; i++) {
        g_ptr_array_add(bundles, g_canonicalize_filename(opt_bundles[i],
                                                         NULL));
    }
    if (opt_bundle_dir) {
        g_autoptr(GPtrArray) more = vo_batch_bundles_in(opt_bundle_dir,
                                                        error);

        if (!more) {
            return FALSE;
        }
        for (guint i = 0; i < more->len; i++) {
            g_ptr_array_add(bundles, g_strdup(more->pdata[i]));
        }
    }
    if (opt_libvirt) {
        if (!vo_libvirt_collect(opt_libvirt, targets, error)) {
            return FALSE;
        }
    } else {
        g_autoptr(GPtrArray) images = vo_batch_collect(argv + 1, error);

        if (!images) {
            return FALSE;
        }
        g_ptr_array_extend_and_steal(targets, g_steal_pointer(&images));
    }
    if (opt_report_dir && g_mkdir_with_parents(opt_report_dir, 0750) < 0) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "cannot create %s",
                    opt_report_dir);
        return FALSE;
    }
    opts.self = self;
    opts.jobs = opt_jobs;
    if (with_apt) {
        VoBatchAptOptions aopts = {
            .batch = opts,
            .sources = opt_apt_sources,
            .keyring = opt_keyring,
            .security_only = opt_security_only,
            .stage_preinst = opt_stage_preinst,
            .key_path = opt_key,
            .cert_path = opt_cert,
            .format = opt_format,
        };

        summary = vo_batch_apt_run(&aopts, targets, &all_ok, error);
        if (!summary) {
            return FALSE;
        }
    } else {
        summary = vo_batch_run(&opts, targets, bundles, &all_ok);
    }
    vo_main_print_json(summary);
    if (!all_ok) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "some images could not be serviced (see the report)");
        return FALSE;
    }
    return TRUE;
}

static gboolean vo_main_compare_versions(int argc, char **argv,
                                         GError **error)
{
    gboolean result;

    if (argc != 4) {
        return vo_main_usage(error, "compare-versions A OP B");
    }
    if (!vo_version_relate(argv[1], argv[2], argv[3], &result, error)) {
        return FALSE;
    }
    /* Like dpkg --compare-versions: the answer is the exit status. */
    vo_main_status = result ? 0 : 1;
    return TRUE;
}

/*
 * status IMAGE: each bundle applied with a marker, as the host recorded
 * it: applied offline (awaiting the guest), confirmed or failed at boot N
 * with the guest's message.  JSON on stdout; "summary" is for people.
 */
static gboolean vo_main_status_cmd(int argc, char **argv, GError **error)
{
    g_autoptr(VmaugServicing) record = NULL;
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autofree char *image = NULL;

    if (argc != 2) {
        return vo_main_usage(error, "status IMAGE");
    }
    image = vo_ovf_resolve_image(argv[1], error);
    if (!image) {
        return FALSE;
    }
    record = vmaug_servicing_load(image, error);
    if (!record) {
        return FALSE;
    }
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "image");
    json_builder_add_string_value(b, image);
    json_builder_set_member_name(b, "bundles");
    json_builder_begin_array(b);
    for (guint i = 0; i < record->entries->len; i++) {
        VmaugServicingEntry *e = g_ptr_array_index(record->entries, i);
        g_autofree char *summary = NULL;

        if (e->state == VMAUG_SERVICING_STATE_APPLIED) {
            summary = g_strdup_printf("applied offline %s, awaiting the "
                                      "guest (%u start%s since)",
                                      e->applied, e->starts,
                                      e->starts == 1 ? "" : "s");
        } else {
            summary = g_strdup_printf("%s at boot %u (%s)%s%s",
                                      vmaug_servicing_state_name(e->state),
                                      e->boot, e->reported,
                                      e->message ? ": " : "",
                                      e->message ? e->message : "");
        }
        json_builder_begin_object(b);
        vmaug_servicing_entry_build(b, e);
        json_builder_set_member_name(b, "summary");
        json_builder_add_string_value(b, summary);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    json_builder_end_object(b);
    {
        g_autoptr(JsonNode) root = json_builder_get_root(b);

        vo_main_print_json(root);
    }
    return TRUE;
}

/*
 * scan IMAGE: ClamAV over the guest's files.  Like clamscan, it answers
 * with its status: 0 clean, 1 infected, 2 incomplete; a scan that did not
 * take place exits VO_MAIN_SCAN_FAILED (docs/cli.rst).
 */
#define VO_MAIN_SCAN_FAILED 3

/* The most a spare reads from standard input: options and an image. */
#define VO_MAIN_SPARE_MAX_ARGS  (256 * 1024)

/*
 * A spare's image and options (scan --spare), read from standard input
 * once the worker is loaded: the arguments the command line would hold
 * after "scan", each ended by a NUL byte, parsed by the same options.
 */
static gboolean vo_main_scan_await(gpointer data, VoScanOptions *opts,
                                   GError **error)
{
    char **image = data;
    const GOptionEntry entries[] = {
        { "format", 'f', 0, G_OPTION_ARG_STRING, &opt_format, NULL, NULL },
        { "path", 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &opt_scan_paths, NULL,
          NULL },
        { "max-file-size", 0, 0, G_OPTION_ARG_INT64, &opt_max_file_size,
          NULL, NULL },
        { "timeout", 0, 0, G_OPTION_ARG_INT, &opt_timeout, NULL, NULL },
        { "cache", 0, 0, G_OPTION_ARG_FILENAME, &opt_cache, NULL, NULL },
        { NULL },
    };
    g_autoptr(GOptionContext) ctx = g_option_context_new(NULL);
    g_autoptr(GByteArray) in = g_byte_array_new();
    g_autoptr(GPtrArray) args = g_ptr_array_new_with_free_func(g_free);
    g_autofree char **argv = NULL;
    int argc;
    guint8 buf[4096];
    gssize n;

    while ((n = read(STDIN_FILENO, buf, sizeof(buf))) != 0) {
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                        "scan --spare: standard input: %s",
                        g_strerror(errno));
            return FALSE;
        }
        if (in->len + n > VO_MAIN_SPARE_MAX_ARGS) {
            return vo_main_usage(error, "scan --spare: more than 256 KiB of "
                                 "arguments");
        }
        g_byte_array_append(in, buf, n);
    }
    g_ptr_array_add(args, g_strdup("scan"));
    for (guint i = 0; i < in->len;) {
        const guint8 *end = memchr(in->data + i, '\0', in->len - i);
        gsize len = end ? (gsize)(end - (in->data + i)) : in->len - i;

        g_ptr_array_add(args, g_strndup((const char *)in->data + i, len));
        i += len + 1;
    }
    argc = args->len;
    /* g_option_context_parse() moves and drops words of this array:
     * its strings stay @args'. */
    argv = g_new0(char *, argc + 1);
    memcpy(argv, args->pdata, argc * sizeof(char *));
    g_option_context_add_main_entries(ctx, entries, NULL);
    g_option_context_set_help_enabled(ctx, FALSE);
    if (!g_option_context_parse(ctx, &argc, &argv, error)) {
        g_prefix_error(error, "scan --spare: ");
        return FALSE;
    }
    if (argc != 2 || g_str_has_prefix(argv[1], "-")) {
        return vo_main_usage(error, "scan --spare: standard input names "
                             "[--path GUESTPATH]... [--max-file-size BYTES] "
                             "[--timeout SECONDS] [--cache FILE] "
                             "[--format FORMAT] IMAGE, each ended by a NUL");
    }
    *image = vo_ovf_resolve_image(argv[1], error);
    if (!*image) {
        return FALSE;
    }
    opts->image = *image;
    opts->format = opt_format;
    opts->paths = opt_scan_paths;
    opts->max_file_size = opt_max_file_size > 0 ? opt_max_file_size : 0;
    opts->timeout_s = opt_timeout > 0 ? opt_timeout : 0;
    opts->cache = opt_cache;
    return TRUE;
}

static gboolean vo_main_scan(int argc, char **argv, GError **error)
{
    g_autofree char *image = NULL;
    g_autoptr(JsonNode) report = NULL;
    VoScanResult result;
    VoScanOptions opts = {
        .format = opt_format,
        .database = opt_database,
        .paths = opt_scan_paths,
        .max_file_size = opt_max_file_size > 0 ? opt_max_file_size : 0,
        .timeout_s = opt_timeout > 0 ? opt_timeout : 0,
        .cache = opt_cache,
        .force_share = opt_force_share,
    };

    /* A spare's scan options come with its image, none before. */
    if (opt_spare && argc == 1 && opt_database && !opt_scan_paths &&
        !opt_cache && !opt_format &&
        opt_max_file_size == VO_SCAN_MAX_FILE_SIZE &&
        opt_timeout == VO_SCAN_TIMEOUT_S) {
        opts.await = vo_main_scan_await;
        opts.await_data = &image;
    } else if (argc != 2 || !opt_database || opt_spare) {
        return vo_main_usage(error, "scan IMAGE --database DIR "
                             "[--path GUESTPATH]... [--max-file-size BYTES] "
                             "[--timeout SECONDS] [--cache FILE] "
                             "[--force-share], or scan --spare --database "
                             "DIR [--force-share] and the rest on standard "
                             "input");
    }
    if (!opts.await) {
        image = vo_ovf_resolve_image(argv[1], error);
        if (!image) {
            return FALSE;
        }
    }
    opts.image = image;
    if (!vo_scan_run(&opts, &report, &result, error)) {
        return FALSE;
    }
    vo_main_print_json(report);
    vo_main_status = result;
    return TRUE;
}

static const struct {
    const char *name;
    gboolean (*run)(int argc, char **argv, GError **error);
    const char *help;
    /* Reports by its exit status or files alone, never in JSON. */
    gboolean no_report;
} vo_main_commands[] = {
    { "inspect", vo_main_inspect,
      "IMAGE                 print drives, OS and packages as JSON" },
    { "check", vo_main_check,
      "IMAGE BUNDLE            does the bundle apply? what would change?" },
    { "apply", vo_main_apply,
      "IMAGE BUNDLE            patch atomically (--dry-run: only show)" },
    { "verify", vo_main_verify,
      "IMAGE BUNDLE           confirm every instruction is in effect" },
    { "recover", vo_main_recover,
      "IMAGE                 finish or undo an interrupted apply" },
    { "plan", vo_main_plan,
      "IMAGE...                 updates apt chooses (--apt-source ...;\n"
      "                                a guest's --disk after its IMAGE)\n"
      "  plan --msu-catalog CATALOG IMAGE...   ... Windows .msu files" },
    { "bundle-build", vo_main_bundle_build,
      "MANIFEST         build and sign a bundle\n"
      "  bundle-build --plan PLAN --debs DIR    ... from a plan\n"
      "  bundle-build --plan PLAN --payload-dir DIR  ... of .msu files",
      TRUE },
    { "batch", vo_main_batch,
      "(IMAGE|DIR|@LIST)...    apply --bundle(s) to many images\n"
      "  batch --libvirt URI           ... to libvirt's inactive domains\n"
      "  batch --apt-source SRC ...    ... the updates apt plans per group "
      "of\n"
      "                                identical images, one signed bundle "
      "each" },
    { "status", vo_main_status_cmd,
      "IMAGE                  bundles applied offline, the guest's reports" },
    { "scan", vo_main_scan,
      "IMAGE --database DIR     ClamAV over the guest's files (exit 0 "
      "clean,\n"
      "                                1 infected, 2 incomplete, 3 failed)" },
    { "compare-versions", vo_main_compare_versions,
      "A OP B       compare Debian versions (exit 0 if true, 1 if "
      "false)", TRUE },
};

/* The command is scan (the first word that is not an option). */
static gboolean vo_main_is_scan(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] != '-') {
            return g_str_equal(argv[i], "scan");
        }
    }
    return FALSE;
}

/* --disk: a later disk, after the words so far (GOptionArgFunc). */
static gboolean vo_main_add_disk(const char *name, const char *value,
                                 gpointer data, GError **error)
{
    g_ptr_array_add(vo_main_disk_list, g_strdup(value));
    g_array_append_val(vo_main_disk_after, vo_main_words->len);
    return TRUE;
}

/* The command or one of its arguments (GOptionArgFunc). */
static gboolean vo_main_add_word(const char *name, const char *value,
                                 gpointer data, GError **error)
{
    g_ptr_array_add(vo_main_words, g_strdup(value));
    return TRUE;
}

/*
 * The end of a command that did its work, once its output is out: every
 * file it wrote is closed, and whoever waits for our exit (an image's
 * start, for a scan) would otherwise wait for the libraries' destructors,
 * which first touch pages never touched before: on a virtual machine
 * tens of microseconds a fault (docs/performance.md).
 */
static G_GNUC_NORETURN void vo_main_exit(int status)
{
    fflush(NULL);
    _exit(status);
}

int main(int argc, char **argv)
{
    gboolean scanning;
    g_autoptr(GOptionContext) ctx = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(GString) summary = g_string_new("Commands:\n");
    static const char *const examples[] = {
        "vmaugment-offline inspect vm.qcow2",
        "vmaugment-offline check vm.qcow2 fix.vmab",
        "vmaugment-offline apply vm.qcow2 fix.vmab",
        "vmaugment-offline apply vm-root.qcow2 --disk vm-var.qcow2 fix.vmab",
        "vmaugment-offline bundle-build --key admin.key --cert admin.crt "
        "--payload-dir files --output fix.vmab manifest.json",
        "vmaugment-offline batch --jobs 4 --bundle fix.vmab /srv/images",
        "vmaugment-offline batch --apt-source 'http://deb.debian.org/"
        "debian-security bookworm-security main' --keyring "
        "debian-security.gpg --security-only --key admin.key --cert "
        "admin.crt --report-dir out /srv/images",
        NULL
    };
    int status;
    GOptionEntry entries[] = {
        { "format", 'f', 0, G_OPTION_ARG_STRING, &opt_format,
          "Image format (default: probed by qemu-img)", "FMT" },
        { "disk", 0, G_OPTION_FLAG_FILENAME, G_OPTION_ARG_CALLBACK,
          vo_main_add_disk,
          "inspect, check, apply, verify, recover, plan: the guest's next "
          "disk after IMAGE (repeatable, in the order the guest sees them; "
          "plan: after the IMAGE whose guest it belongs to)", "IMAGE" },
        { "disk-format", 0, 0, G_OPTION_ARG_STRING_ARRAY, &opt_disk_formats,
          "the format of each --disk, one per --disk in the same order "
          "(default: --format, or probed)", "FMT" },
        { "trust-dir", 0, 0, G_OPTION_ARG_FILENAME, &opt_trust_dir,
          "Trusted certificates for bundles (default: the host's)", "DIR" },
        { "dry-run", 'n', 0, G_OPTION_ARG_NONE, &opt_dry_run,
          "apply: show what would change, change nothing", NULL },
        { "backend", 0, 0, G_OPTION_ARG_STRING, &opt_backend,
          "apply, check: native (default) or libguestfs, whose appliance "
          "VM reads and writes XFS and btrfs", "NAME" },
        { "host-kernel", 0, 0, G_OPTION_ARG_NONE, &opt_host_kernel,
          "apply, check, verify: XFS and btrfs mounted by the host's "
          "kernel from a copy of the partition (trusted images only; "
          "root)", NULL },
        { "key", 0, 0, G_OPTION_ARG_FILENAME, &opt_key,
          "bundle-build, batch --apt-source: signing key (PKCS#8 PEM)",
          "FILE" },
        { "cert", 0, 0, G_OPTION_ARG_FILENAME, &opt_cert,
          "bundle-build, batch --apt-source: the key's certificate",
          "FILE" },
        { "payload-dir", 0, 0, G_OPTION_ARG_FILENAME, &opt_payload_dir,
          "bundle-build: where payload files are (default .); with "
          "--plan of .msu files, the plan's download directory", "DIR" },
        { "output", 'o', 0, G_OPTION_ARG_FILENAME, &opt_output,
          "bundle-build: the bundle to write; plan: the plan", "FILE" },
        { "plan", 0, 0, G_OPTION_ARG_FILENAME, &opt_plan,
          "bundle-build: a bundle from this plan", "PLAN" },
        { "debs", 0, 0, G_OPTION_ARG_FILENAME, &opt_debs,
          "bundle-build --plan: the plan's download directory", "DIR" },
        { "group", 0, 0, G_OPTION_ARG_INT, &opt_group,
          "bundle-build --plan: which group of images (from 0)", "N" },
        { "stage-preinst", 0, 0, G_OPTION_ARG_NONE, &opt_stage_preinst,
          "bundle-build --plan, batch --apt-source: stage the packages "
          "refused for their "
          "preinst, for the guest's dpkg at its next boot", NULL },
        { "apt-source", 0, 0, G_OPTION_ARG_STRING_ARRAY, &opt_apt_sources,
          "plan, batch: a repository, 'URI SUITE COMPONENT...' "
          "(repeatable; a suite ending in -security is a security source)",
          "SOURCE" },
        { "keyring", 0, 0, G_OPTION_ARG_FILENAME, &opt_keyring,
          "plan, batch: the OpenPGP key(s) the sources are signed with",
          "KEY.gpg" },
        { "security-only", 0, 0, G_OPTION_ARG_NONE, &opt_security_only,
          "plan, batch: only upgrades from security sources", NULL },
        { "msu-catalog", 0, 0, G_OPTION_ARG_FILENAME, &opt_msu_catalog,
          "plan: Windows updates from this catalog of .msu files",
          "CATALOG.json" },
        { "download-dir", 0, 0, G_OPTION_ARG_FILENAME, &opt_download_dir,
          "plan: where the .deb (or .msu) files go", "DIR" },
        { "jobs", 'j', 0, G_OPTION_ARG_INT, &opt_jobs,
          "batch: images serviced at once (default 2)", "N" },
        { "report-dir", 0, 0, G_OPTION_ARG_FILENAME, &opt_report_dir,
          "batch: one JSON report per image and bundle (or domain) here; "
          "with --apt-source one per image, and the plan, .debs and "
          "bundles", "DIR" },
        { "bundle", 'b', 0, G_OPTION_ARG_FILENAME_ARRAY, &opt_bundles,
          "batch: a bundle to apply (repeatable, in order)", "FILE" },
        { "bundle-dir", 0, 0, G_OPTION_ARG_FILENAME, &opt_bundle_dir,
          "batch: apply every *.vmab here, in name order", "DIR" },
        { "libvirt", 0, 0, G_OPTION_ARG_STRING, &opt_libvirt,
          "batch: the disks of this libvirt's inactive domains", "URI" },
        { "allow-backing-files", 0, 0, G_OPTION_ARG_NONE, &opt_allow_backing,
          "Open images that name other host files (backing files, data "
          "files, vmdk extents)", NULL },
        { "database", 0, 0, G_OPTION_ARG_FILENAME, &opt_database,
          "scan, and apply of a quarantine instruction: the signature "
          "database directory (freshclam's)", "DIR" },
        { "path", 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &opt_scan_paths,
          "scan, and apply's quarantine: only this guest file or directory "
          "(repeatable; default: every filesystem)", "GUESTPATH" },
        { "max-file-size", 0, 0, G_OPTION_ARG_INT64, &opt_max_file_size,
          "scan: larger files are not scanned (the scan is incomplete; "
          "default 100 MiB)", "BYTES" },
        { "timeout", 0, 0, G_OPTION_ARG_INT, &opt_timeout,
          "scan: stop after this long (the scan is incomplete; default "
          "600)", "SECONDS" },
        { "cache", 0, 0, G_OPTION_ARG_FILENAME, &opt_cache,
          "scan: what was found clean, to rescan only what changed", "FILE" },
        { "spare", 0, 0, G_OPTION_ARG_NONE, &opt_spare,
          "scan: start and load the database now, then read the image and "
          "the scan's options from standard input (each argument ended by "
          "a NUL byte), as the vmaugment helper keeps a scanner ready",
          NULL },
        { "force-share", 0, 0, G_OPTION_ARG_NONE, &opt_force_share,
          "scan, inspect: read an image a QEMU holds open, beside its locks "
          "(the caller vouches the VM runs no instruction meanwhile)",
          NULL },
        { "qemu-released", 0, 0, G_OPTION_ARG_NONE, &opt_qemu_released,
          "apply: write an image whose QEMU released it (its remaining "
          "consistent-read lock is no obstacle; the vmaugment helper's "
          "quarantine)", NULL },
        { "luks-key", 0, 0, G_OPTION_ARG_STRING_ARRAY, &opt_keys,
          "Open the LUKS volume of this UUID (or all of them) with the key "
          "in FILE (repeatable)", "ID:file:FILE" },
        { "accept-weaker-sandbox", 0, 0, G_OPTION_ARG_NONE,
          &opt_accept_weaker,
          "Read guests even where the worker cannot be fully confined",
          NULL },
        { G_OPTION_REMAINING, 0, G_OPTION_FLAG_FILENAME,
          G_OPTION_ARG_CALLBACK, vo_main_add_word, NULL, NULL },
        { NULL },
    };

    for (gsize i = 0; i < G_N_ELEMENTS(vo_main_commands); i++) {
        g_string_append_printf(summary, "  %s %s\n", vo_main_commands[i].name,
                               vo_main_commands[i].help);
    }
    vmaug_cli_init("vmaugment-offline");
    vo_main_words = g_ptr_array_new_null_terminated(0, g_free, TRUE);
    vo_main_disk_list = g_ptr_array_new_null_terminated(0, g_free, TRUE);
    vo_main_disk_after = g_array_new(FALSE, FALSE, sizeof(guint));
    ctx = g_option_context_new("COMMAND [ARGS...]");
    g_option_context_set_summary(ctx, summary->str);
    g_option_context_add_main_entries(ctx, entries, NULL);
    vmaug_cli_setup(ctx, &opt_json, examples);
    scanning = vo_main_is_scan(argc, argv);
    if ((status = vmaug_cli_parse(ctx, &argc, &argv)) >= 0) {
        /* scan's 2 means incomplete: its usage errors fail as 3. */
        return scanning && status == VMAUG_EXIT_USAGE ? VO_MAIN_SCAN_FAILED
                                                      : status;
    }
    /* The words, in order, are the command line left. */
    g_ptr_array_insert(vo_main_words, 0, g_strdup(argv[0]));
    argc = vo_main_words->len;
    argv = (char **)vo_main_words->pdata;
    opt_disks = vo_main_disk_list->len ? (char **)vo_main_disk_list->pdata
                                       : NULL;
    vo_image_set_allow_external(opt_allow_backing);
    vo_image_set_force_share(opt_force_share);
    vo_image_set_qemu_released(opt_qemu_released);
    vo_worker_set_accept_weaker(opt_accept_weaker);
    for (guint i = 0; opt_keys && opt_keys[i]; i++) {
        if (!vo_worker_add_key(opt_keys[i], &error)) {
            return vmaug_cli_usage("%s", error->message);
        }
    }
    if (argc < 2) {
        return vmaug_cli_usage("a command is required");
    }
    for (gsize i = 0; i < G_N_ELEMENTS(vo_main_commands); i++) {
        if (g_str_equal(argv[1], vo_main_commands[i].name)) {
            if (vo_main_commands[i].run(argc - 1, argv + 1, &error)) {
                vo_main_exit(vo_main_status);
            }
            /* A report on every failure, as on success. */
            if (!vo_main_commands[i].no_report && !vo_main_reported) {
                vmaug_cli_print_failure(error);
            }
            if (scanning) {
                vmaug_cli_fail(error, "%s", argv[1]);
                return VO_MAIN_SCAN_FAILED;
            }
            return error->domain == VMAUG_CLI_USAGE_ERROR
                       ? vmaug_cli_fail(error, NULL)
                       : vmaug_cli_fail(error, "%s", argv[1]);
        }
    }
    return vmaug_cli_usage("unknown command '%s'", argv[1]);
}
