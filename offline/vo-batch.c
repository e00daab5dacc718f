/*
 * Batch servicing.  Every apply runs in its own process: one image's
 * failure (or a crash in a library on a hostile image) cannot take the
 * others with it, and the per-image report is simply that child's output.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <stdio.h>
#include <string.h>

#include <gio/gio.h>

#include "vo-batch.h"
#include "vo-disk.h"
#include "vo-ovf.h"

#define VO_BATCH_MAX_LIST (1024 * 1024)

static gboolean vo_batch_is_image(const char *name)
{
    static const char *const exts[] = {
        ".qcow2", ".raw", ".img", ".vmdk", ".vhd", ".vhdx", ".vpc", NULL,
    };

    if (name[0] == '.') {
        return FALSE;   /* our own sidecars, among others */
    }
    for (guint i = 0; exts[i]; i++) {
        if (g_str_has_suffix(name, exts[i])) {
            return TRUE;
        }
    }
    return FALSE;
}

static gint vo_batch_cmp(gconstpointer a, gconstpointer b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static gboolean vo_batch_scan_dir(const char *dir, const char *suffix,
                                  GPtrArray *out, GError **error)
{
    g_autoptr(GDir) d = g_dir_open(dir, 0, error);
    g_autoptr(GPtrArray) found = g_ptr_array_new();
    const char *name;

    if (!d) {
        return FALSE;
    }
    while ((name = g_dir_read_name(d))) {
        g_autofree char *path = g_build_filename(dir, name, NULL);

        if (!g_file_test(path, G_FILE_TEST_IS_REGULAR)) {
            continue;
        }
        if (suffix ? (name[0] != '.' && g_str_has_suffix(name, suffix))
                   : vo_batch_is_image(name)) {
            g_ptr_array_add(found, g_steal_pointer(&path));
        }
    }
    g_ptr_array_sort(found, vo_batch_cmp);
    for (guint i = 0; i < found->len; i++) {
        g_ptr_array_add(out, found->pdata[i]);
    }
    return TRUE;
}

/* The OVF @path as one target: its first disk, the others with it. */
static gboolean vo_batch_add_ovf(GPtrArray *targets, const char *path,
                                 GError **error)
{
    g_autoptr(GPtrArray) disks = vo_ovf_disks(path, error);
    VoBatchTarget *t;

    if (!disks) {
        return FALSE;
    }
    t = vo_batch_target_new(disks->pdata[0]);
    for (guint j = 1; j < disks->len; j++) {
        vo_batch_target_add_disk(t, disks->pdata[j], NULL, NULL);
    }
    g_ptr_array_add(targets, t);
    return TRUE;
}

GPtrArray *vo_batch_collect(char **sources, GError **error)
{
    g_autoptr(GPtrArray) targets = g_ptr_array_new_with_free_func(
        (GDestroyNotify)vo_batch_target_free);
    g_autoptr(GPtrArray) images = g_ptr_array_new_with_free_func(g_free);

    for (guint i = 0; sources[i]; i++) {
        const char *src = sources[i];

        g_ptr_array_set_size(images, 0);
        if (src[0] == '@') {
            g_autofree char *text = NULL;
            g_auto(GStrv) lines = NULL;
            gsize len;

            if (!g_file_get_contents(src + 1, &text, &len, error)) {
                return NULL;
            }
            if (len > VO_BATCH_MAX_LIST) {
                g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                            "%s: list too long", src + 1);
                return NULL;
            }
            lines = g_strsplit(text, "\n", -1);
            for (guint j = 0; lines[j]; j++) {
                char *line = g_strstrip(lines[j]);

                if (g_str_has_suffix(line, ".ovf")) {
                    if (!vo_batch_add_ovf(targets, line, error)) {
                        return NULL;
                    }
                } else if (*line && line[0] != '#') {
                    g_ptr_array_add(targets, vo_batch_target_new(line));
                }
            }
        } else if (g_str_has_suffix(src, ".ovf")) {
            /* An OVF's disks are one guest's, serviced together. */
            if (!vo_batch_add_ovf(targets, src, error)) {
                return NULL;
            }
        } else if (g_file_test(src, G_FILE_TEST_IS_DIR)) {
            if (!vo_batch_scan_dir(src, NULL, images, error)) {
                return NULL;
            }
        } else {
            g_ptr_array_add(images, g_strdup(src));
        }
        for (guint j = 0; j < images->len; j++) {
            g_ptr_array_add(targets, vo_batch_target_new(images->pdata[j]));
        }
    }
    return g_steal_pointer(&targets);
}

VoBatchTarget *vo_batch_target_new(const char *path)
{
    VoBatchTarget *t = g_new0(VoBatchTarget, 1);

    t->path = g_strdup(path);
    t->group = -1;
    return t;
}

static void vo_batch_disk_free(VoBatchDisk *d)
{
    g_free(d->path);
    g_free(d->format);
    g_free(d->disk);
    g_free(d);
}

void vo_batch_target_add_disk(VoBatchTarget *t, const char *path,
                              const char *format, const char *disk)
{
    VoBatchDisk *d = g_new0(VoBatchDisk, 1);

    d->path = g_strdup(path);
    d->format = g_strdup(format);
    d->disk = g_strdup(disk);
    if (!t->more) {
        t->more = g_ptr_array_new_with_free_func(
            (GDestroyNotify)vo_batch_disk_free);
    }
    g_ptr_array_add(t->more, d);
}

void vo_batch_target_free(VoBatchTarget *t)
{
    if (t->more) {
        g_ptr_array_unref(t->more);
    }
    g_free(t->path);
    g_free(t->format);
    g_free(t->domain);
    g_free(t->disk);
    g_free(t->skip_status);
    g_free(t->skip_reason);
    if (t->bundles) {
        g_ptr_array_unref(t->bundles);
    }
    g_free(t);
}

GPtrArray *vo_batch_bundles_in(const char *dir, GError **error)
{
    g_autoptr(GPtrArray) bundles = g_ptr_array_new_with_free_func(g_free);

    if (!vo_batch_scan_dir(dir, ".vmab", bundles, error)) {
        return NULL;
    }
    return g_steal_pointer(&bundles);
}

typedef struct {
    const VoBatchOptions *opts;
    GPtrArray *bundles;
    const VoBatchTarget *target;
    char *image;
    guint index;
    guint next_bundle;
    GSubprocess *child;
    GPtrArray *results;     /* JsonNode* per bundle */
    char *status;           /* worst outcome so far */
} VoBatchJob;

typedef struct {
    const VoBatchOptions *opts;
    GMainLoop *loop;
    GPtrArray *jobs;
    guint next_job;
    guint running;
    guint done;
    gboolean all_ok;
} VoBatch;

static void vo_batch_start_next(VoBatch *b);
static void vo_batch_start_bundle(VoBatch *b, VoBatchJob *job);
static JsonNode *vo_batch_image_node(VoBatchJob *job);

static char *vo_batch_report_path(const VoBatchOptions *opts,
                                  VoBatchJob *job, const char *bundle)
{
    g_autofree char *ib = g_path_get_basename(job->image);
    g_autofree char *bb = g_path_get_basename(bundle);
    g_autofree char *name = g_strdup_printf("%u-%s--%s.json", job->index,
                                            ib, bb);

    return g_build_filename(opts->report_dir, name, NULL);
}

static JsonNode *vo_batch_status_node(const char *image, const char *bundle,
                                      const char *status, const char *msg)
{
    g_autoptr(JsonBuilder) jb = json_builder_new();

    json_builder_begin_object(jb);
    json_builder_set_member_name(jb, "image");
    json_builder_add_string_value(jb, image);
    json_builder_set_member_name(jb, "bundle_file");
    json_builder_add_string_value(jb, bundle);
    json_builder_set_member_name(jb, "status");
    json_builder_add_string_value(jb, status);
    if (msg) {
        json_builder_set_member_name(jb, "error");
        json_builder_add_string_value(jb, msg);
    }
    json_builder_end_object(jb);
    return json_builder_get_root(jb);
}

/* N-IMAGE.json: the image's whole report (VoBatchOptions.report_per_image). */
static void vo_batch_image_report(const VoBatchOptions *opts, VoBatchJob *job)
{
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autoptr(JsonNode) node = vo_batch_image_node(job);
    g_autofree char *ib = g_path_get_basename(job->image);
    g_autofree char *name = g_strdup_printf("%u-%s.json", job->index, ib);
    g_autofree char *path = g_build_filename(opts->report_dir, name, NULL);
    g_autoptr(GError) error = NULL;

    json_generator_set_pretty(gen, TRUE);
    json_generator_set_root(gen, node);
    if (!json_generator_to_file(gen, path, &error)) {
        g_warning("cannot write %s: %s", path, error->message);
    }
}

static void vo_batch_job_finish(VoBatch *b, VoBatchJob *job)
{
    if (b->opts->report_dir && b->opts->report_per_image) {
        vo_batch_image_report(b->opts, job);
    }
    b->running--;
    b->done++;
    if (job->target->domain) {
        g_autoptr(GString) disks = g_string_new(job->target->disk);

        /* Target names are letters and digits: '+' joins them plainly. */
        for (guint i = 0; job->target->more && i < job->target->more->len;
             i++) {
            VoBatchDisk *d = job->target->more->pdata[i];

            g_string_append_printf(disks, "+%s", d->disk);
        }
        fprintf(stderr, "[%u/%u] %s %s %s: %s\n", b->done, b->jobs->len,
                job->target->domain, disks->str, job->image, job->status);
    } else {
        fprintf(stderr, "[%u/%u] %s: %s\n", b->done, b->jobs->len,
                job->image, job->status);
    }
    vo_batch_start_next(b);
    if (b->running == 0 && b->next_job >= b->jobs->len) {
        g_main_loop_quit(b->loop);
    }
}

static int vo_batch_rank(const char *status)
{
    static const char *const order[] = {
        "up-to-date", "nothing-to-apply", "not-applicable", "dry-run",
        "already-applied", "applied", "skipped", "skipped-in-use",
        "refused", "error", NULL,
    };

    for (int i = 0; order[i]; i++) {
        if (g_str_equal(status, order[i])) {
            return i;
        }
    }
    return G_N_ELEMENTS(order);
}

static void vo_batch_record(VoBatch *b, VoBatchJob *job, JsonNode *node)
{
    JsonObject *obj = json_node_get_object(node);
    const char *status = json_object_get_string_member_with_default(
        obj, "status", "error");

    g_ptr_array_add(job->results, node);
    /* One status per image: the most significant of its bundles'. */
    if (!job->status ||
        vo_batch_rank(status) > vo_batch_rank(job->status)) {
        g_free(job->status);
        job->status = g_strdup(status);
    }
    if (g_str_equal(status, "error") || g_str_equal(status, "refused")) {
        b->all_ok = FALSE;
    }
    /* A domain's disks are reported together, once all are done. */
    if (b->opts->report_dir && !b->opts->report_per_image &&
        !job->target->domain) {
        g_autoptr(JsonGenerator) gen = json_generator_new();
        g_autofree char *path = vo_batch_report_path(
            b->opts, job, job->bundles->pdata[job->next_bundle - 1]);
        g_autoptr(GError) error = NULL;

        json_generator_set_pretty(gen, TRUE);
        json_generator_set_root(gen, node);
        if (!json_generator_to_file(gen, path, &error)) {
            g_warning("cannot write %s: %s", path, error->message);
        }
    }
}

/* Messages of VO_ERROR_IN_USE, as the child reports them. */
static gboolean vo_batch_in_use(const char *msg)
{
    return strstr(msg, "in use by a running QEMU") ||
           strstr(msg, "being serviced by another vmaugment-offline");
}

static void vo_batch_child_done(GObject *source, GAsyncResult *res,
                                gpointer data)
{
    VoBatchJob *job = data;
    VoBatch *b = g_object_get_data(source, "vo-batch");
    g_autofree char *out = NULL;
    g_autofree char *err = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonParser) parser = json_parser_new();
    const char *bundle = job->bundles->pdata[job->next_bundle - 1];
    JsonNode *node = NULL;

    if (!g_subprocess_communicate_utf8_finish(G_SUBPROCESS(source), res, &out,
                                              &err, &error)) {
        node = vo_batch_status_node(job->image, bundle, "error",
                                    error->message);
    } else if (out && json_parser_load_from_data(parser, out, -1, NULL) &&
               JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser))) {
        node = json_node_copy(json_parser_get_root(parser));
    } else {
        /* No report: the child failed before it had an image to report on
         * (bundle refused, image unreadable). */
        const char *msg = err ? g_strstrip(err) : "no report";

        node = vo_batch_status_node(
            job->image, bundle,
            vo_batch_in_use(msg) ? "skipped-in-use" : "error",
            msg);
    }
    {
        JsonObject *obj = json_node_get_object(node);
        const char *status = json_object_get_string_member_with_default(
            obj, "status", "error");
        const char *msg = json_object_get_string_member_with_default(
            obj, "error", "");

        /* An image in use is skipped, not failed: it is patched next time. */
        if (g_str_equal(status, "error") && vo_batch_in_use(msg)) {
            json_object_set_string_member(obj, "status", "skipped-in-use");
        }
    }
    g_clear_object(&job->child);
    vo_batch_record(b, job, node);
    if (g_str_equal(job->status, "skipped-in-use") ||
        job->next_bundle >= job->bundles->len) {
        vo_batch_job_finish(b, job);
    } else {
        vo_batch_start_bundle(b, job);
    }
}

static void vo_batch_start_bundle(VoBatch *b, VoBatchJob *job)
{
    const char *bundle = job->bundles->pdata[job->next_bundle++];
    g_autoptr(GError) error = NULL;
    g_autoptr(GPtrArray) argv = g_ptr_array_new();

    g_ptr_array_add(argv, (char *)b->opts->self);
    g_ptr_array_add(argv, "--trust-dir");
    g_ptr_array_add(argv, (char *)b->opts->trust_dir);
    if (job->target->format) {
        /* The domain's own format: probing could take a raw disk holding
         * a qcow2 header for a qcow2 with someone else's backing file. */
        g_ptr_array_add(argv, "--format");
        g_ptr_array_add(argv, job->target->format);
    }
    if (b->opts->allow_backing) {
        g_ptr_array_add(argv, "--allow-backing-files");
    }
    if (b->opts->accept_weaker) {
        g_ptr_array_add(argv, "--accept-weaker-sandbox");
    }
    for (guint i = 0; b->opts->keys && b->opts->keys[i]; i++) {
        g_ptr_array_add(argv, "--luks-key");
        g_ptr_array_add(argv, b->opts->keys[i]);
    }
    /* The later disks of the guest, each with its own format: the child
     * pairs the n-th --disk-format with the n-th --disk. */
    for (guint i = 0; job->target->more && i < job->target->more->len;
         i++) {
        VoBatchDisk *d = job->target->more->pdata[i];

        g_ptr_array_add(argv, "--disk");
        g_ptr_array_add(argv, d->path);
        if (job->target->format) {
            g_ptr_array_add(argv, "--disk-format");
            g_ptr_array_add(argv, d->format);
        }
    }
    g_ptr_array_add(argv, "apply");
    g_ptr_array_add(argv, job->image);
    g_ptr_array_add(argv, (char *)bundle);
    if (b->opts->dry_run) {
        g_ptr_array_add(argv, "--dry-run");
    }
    g_ptr_array_add(argv, NULL);

    job->child = g_subprocess_newv((const char *const *)argv->pdata,
                                   G_SUBPROCESS_FLAGS_STDOUT_PIPE |
                                       G_SUBPROCESS_FLAGS_STDERR_PIPE,
                                   &error);
    if (!job->child) {
        vo_batch_record(b, job, vo_batch_status_node(job->image, bundle,
                                                     "error",
                                                     error->message));
        vo_batch_job_finish(b, job);
        return;
    }
    g_object_set_data(G_OBJECT(job->child), "vo-batch", b);
    g_subprocess_communicate_utf8_async(job->child, NULL, NULL,
                                        vo_batch_child_done, job);
}

static void vo_batch_start_next(VoBatch *b)
{
    while (b->running < b->opts->jobs && b->next_job < b->jobs->len) {
        VoBatchJob *job = b->jobs->pdata[b->next_job++];

        b->running++;
        if (job->target->skip_status && b->opts->report_per_image) {
            /* The reason is the image's own, in its report. */
            job->status = g_strdup(job->target->skip_status);
            b->all_ok &= !g_str_equal(job->status, "error") &&
                         !g_str_equal(job->status, "refused");
            vo_batch_job_finish(b, job);
            continue;
        }
        if (job->target->skip_status) {
            g_autoptr(JsonBuilder) jb = json_builder_new();

            json_builder_begin_object(jb);
            json_builder_set_member_name(jb, "image");
            json_builder_add_string_value(jb, job->image);
            json_builder_set_member_name(jb, "status");
            json_builder_add_string_value(jb, job->target->skip_status);
            json_builder_set_member_name(jb, "reason");
            json_builder_add_string_value(jb, job->target->skip_reason);
            json_builder_end_object(jb);
            g_ptr_array_add(job->results, json_builder_get_root(jb));
            job->status = g_strdup(job->target->skip_status);
            vo_batch_job_finish(b, job);
            continue;
        }
        if (job->bundles->len == 0) {
            job->status = g_strdup("nothing-to-do");
            vo_batch_job_finish(b, job);
            continue;
        }
        vo_batch_start_bundle(b, job);
    }
}

static void vo_batch_job_free(VoBatchJob *job)
{
    g_free(job->image);
    g_free(job->status);
    g_ptr_array_unref(job->results);
    g_clear_object(&job->child);
    g_free(job);
}

static JsonNode *vo_batch_image_node(VoBatchJob *job)
{
    g_autoptr(JsonBuilder) jb = json_builder_new();

    json_builder_begin_object(jb);
    json_builder_set_member_name(jb, "image");
    json_builder_add_string_value(jb, job->image);
    if (job->target->domain) {
        json_builder_set_member_name(jb, "domain");
        json_builder_add_string_value(jb, job->target->domain);
        json_builder_set_member_name(jb, "disk");
        json_builder_add_string_value(jb, job->target->disk);
    }
    if (job->target->format) {
        json_builder_set_member_name(jb, "format");
        json_builder_add_string_value(jb, job->target->format);
    }
    if (job->target->more) {
        /* Serviced with the first disk: one status for the guest. */
        json_builder_set_member_name(jb, "more_disks");
        json_builder_begin_array(jb);
        for (guint i = 0; i < job->target->more->len; i++) {
            VoBatchDisk *d = job->target->more->pdata[i];

            /* An OVF's disks have no target device, and are probed. */
            json_builder_begin_object(jb);
            json_builder_set_member_name(jb, "image");
            json_builder_add_string_value(jb, d->path);
            if (d->disk) {
                json_builder_set_member_name(jb, "disk");
                json_builder_add_string_value(jb, d->disk);
            }
            if (d->format) {
                json_builder_set_member_name(jb, "format");
                json_builder_add_string_value(jb, d->format);
            }
            json_builder_end_object(jb);
        }
        json_builder_end_array(jb);
    }
    if (job->opts->report_per_image) {
        json_builder_set_member_name(jb, "group");
        if (job->target->group >= 0) {
            json_builder_add_int_value(jb, job->target->group);
        } else {
            json_builder_add_null_value(jb);
        }
    }
    json_builder_set_member_name(jb, "status");
    json_builder_add_string_value(jb, job->status);
    if (job->opts->report_per_image && job->target->skip_reason) {
        json_builder_set_member_name(jb, "reason");
        json_builder_add_string_value(jb, job->target->skip_reason);
    }
    json_builder_set_member_name(jb, "bundles");
    json_builder_begin_array(jb);
    for (guint k = 0; k < job->results->len; k++) {
        json_builder_add_value(jb, json_node_ref(job->results->pdata[k]));
    }
    json_builder_end_array(jb);
    json_builder_end_object(jb);
    return json_builder_get_root(jb);
}

/* One report per domain, its disks in domain XML order; the targets of a
 * domain are consecutive. */
static void vo_batch_domains(const VoBatchOptions *opts, GPtrArray *jobs,
                             JsonBuilder *out)
{
    for (guint i = 0; i < jobs->len;) {
        VoBatchJob *first = jobs->pdata[i];
        const char *domain = first->target->domain;
        const char *status = NULL;
        const char *aside = NULL;
        g_autoptr(JsonBuilder) jb = json_builder_new();
        g_autoptr(JsonNode) node = NULL;

        if (!domain) {
            i++;
            continue;
        }
        json_builder_begin_object(jb);
        json_builder_set_member_name(jb, "domain");
        json_builder_add_string_value(jb, domain);
        json_builder_set_member_name(jb, "disks");
        json_builder_begin_array(jb);
        for (; i < jobs->len; i++) {
            VoBatchJob *job = jobs->pdata[i];

            if (g_strcmp0(job->target->domain, domain) != 0) {
                break;
            }
            json_builder_add_value(jb, vo_batch_image_node(job));
            if (job->target->aside) {
                if (!aside ||
                    vo_batch_rank(job->status) > vo_batch_rank(aside)) {
                    aside = job->status;
                }
            } else if (!status ||
                       vo_batch_rank(job->status) > vo_batch_rank(status)) {
                status = job->status;
            }
        }
        json_builder_end_array(jb);
        /* The guest's status; a domain with none, its other disks'. */
        json_builder_set_member_name(jb, "status");
        json_builder_add_string_value(jb, status ? status : aside);
        json_builder_end_object(jb);
        node = json_builder_get_root(jb);
        if (opts->report_dir) {
            g_autoptr(JsonGenerator) gen = json_generator_new();
            g_autofree char *safe = g_strdup(domain);
            g_autofree char *name = NULL;
            g_autofree char *path = NULL;
            g_autoptr(GError) error = NULL;

            /* libvirt forbids '/' in names; a leading dot would hide it. */
            g_strdelimit(safe, "/", '_');
            if (safe[0] == '.') {
                safe[0] = '_';
            }
            name = g_strconcat(safe, ".json", NULL);
            path = g_build_filename(opts->report_dir, name, NULL);
            json_generator_set_pretty(gen, TRUE);
            json_generator_set_root(gen, node);
            if (!json_generator_to_file(gen, path, &error)) {
                g_warning("cannot write %s: %s", path, error->message);
            }
        }
        json_builder_add_value(out, g_steal_pointer(&node));
    }
}

JsonNode *vo_batch_run(const VoBatchOptions *opts, GPtrArray *targets,
                       GPtrArray *bundles, gboolean *all_ok)
{
    VoBatch b = {
        .opts = opts,
        .loop = g_main_loop_new(NULL, FALSE),
        .jobs = g_ptr_array_new_with_free_func(
            (GDestroyNotify)vo_batch_job_free),
        .all_ok = TRUE,
    };
    g_autoptr(JsonBuilder) jb = json_builder_new();
    g_autoptr(GHashTable) counts = g_hash_table_new(g_str_hash, g_str_equal);
    gint64 start = g_get_monotonic_time();
    GHashTableIter it;
    gpointer key, value;
    gboolean from_libvirt = FALSE;

    for (guint i = 0; i < targets->len; i++) {
        VoBatchJob *job = g_new0(VoBatchJob, 1);

        job->opts = opts;
        job->target = targets->pdata[i];
        job->bundles = job->target->bundles ? job->target->bundles : bundles;
        job->image = g_strdup(job->target->path);
        from_libvirt |= job->target->domain != NULL;
        job->index = i;
        job->results = g_ptr_array_new_with_free_func(
            (GDestroyNotify)json_node_unref);
        g_ptr_array_add(b.jobs, job);
    }
    vo_batch_start_next(&b);
    if (b.running > 0) {
        g_main_loop_run(b.loop);
    }

    json_builder_begin_object(jb);
    json_builder_set_member_name(jb, "images");
    json_builder_begin_array(jb);
    for (guint i = 0; i < b.jobs->len; i++) {
        VoBatchJob *job = b.jobs->pdata[i];

        json_builder_add_value(jb, vo_batch_image_node(job));
        g_hash_table_insert(counts, job->status,
                            GUINT_TO_POINTER(GPOINTER_TO_UINT(
                                g_hash_table_lookup(counts, job->status)) +
                                             1));
    }
    json_builder_end_array(jb);
    if (from_libvirt) {
        json_builder_set_member_name(jb, "domains");
        json_builder_begin_array(jb);
        vo_batch_domains(opts, b.jobs, jb);
        json_builder_end_array(jb);
    }
    json_builder_set_member_name(jb, "summary");
    json_builder_begin_object(jb);
    g_hash_table_iter_init(&it, counts);
    while (g_hash_table_iter_next(&it, &key, &value)) {
        json_builder_set_member_name(jb, key);
        json_builder_add_int_value(jb, GPOINTER_TO_UINT(value));
    }
    json_builder_end_object(jb);
    json_builder_set_member_name(jb, "seconds");
    json_builder_add_double_value(jb,
                                  (g_get_monotonic_time() - start) / 1e6);
    json_builder_end_object(jb);

    *all_ok = b.all_ok;
    g_ptr_array_unref(b.jobs);
    g_main_loop_unref(b.loop);
    return json_builder_get_root(jb);
}
