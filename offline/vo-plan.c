/*
 * 'vmaugment-offline plan' (vo-plan.h): workers read the images, apt
 * decides per group of identical package sets, the .deb files land in the
 * operator's directory, the plan says what and why.
 *
 * Trust: the images' package sets come through the worker's report and
 * vo_dpkg_status_from_report(); apt and the .deb files it verified come
 * from the operator's signed repositories.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <errno.h>

#include <glib/gstdio.h>

#include "vo-apt.h"
#include "vo-deb.h"
#include "vo-dpkg-status.h"
#include "vo-plan.h"
#include "vo-worker.h"

/* A guest's package set (VoPlanGuestRead), keyed by its hash. */
static gpointer vo_plan_read_status(const char *image, JsonObject *result,
                                    const char **key, GError **error)
{
    JsonNode *dpkg = json_object_get_member(result, "dpkg");
    VoDpkgStatus *st;

    if (!dpkg) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "the worker reported no package set for %s", image);
        return NULL;
    }
    st = vo_dpkg_status_from_report(dpkg, error);
    if (st) {
        *key = st->sha256;
    }
    return st;
}

char *vo_plan_keep_file(const char *src, const char *dir, char **sha256,
                        GError **error)
{
    g_autoptr(GMappedFile) map = g_mapped_file_new(src, FALSE, error);
    g_autofree char *name = g_path_get_basename(src);
    g_autofree char *dest = g_build_filename(dir, name, NULL);

    if (!map) {
        return NULL;
    }
    *sha256 = g_compute_checksum_for_data(
        G_CHECKSUM_SHA256, (const guchar *)g_mapped_file_get_contents(map),
        g_mapped_file_get_length(map));
    if (!g_file_set_contents_full(dest, g_mapped_file_get_contents(map),
                                  g_mapped_file_get_length(map),
                                  G_FILE_SET_CONTENTS_CONSISTENT, 0644,
                                  error)) {
        g_clear_pointer(sha256, g_free);
        return NULL;
    }
    return g_steal_pointer(&dest);
}

static void vo_plan_member(JsonBuilder *b, const char *name,
                           const char *value)
{
    json_builder_set_member_name(b, name);
    if (value) {
        json_builder_add_string_value(b, value);
    } else {
        json_builder_add_null_value(b);
    }
}

/* apt's decision for one group, its .deb files kept in the download
 * directory, as the group's object of the plan. */
static gboolean vo_plan_group(const VoPlanOptions *opts, GPtrArray *sources,
                              VoPlanGroup *g, JsonBuilder *b, GError **error)
{
    g_autoptr(VoApt) apt = NULL;
    g_autoptr(GPtrArray) changes = NULL;
    g_autoptr(JsonBuilder) refused = json_builder_new();
    VoDpkgStatus *status = g->data;

    apt = vo_apt_new(sources, opts->keyring, status, opts->security_only,
                     error);
    if (!apt || !vo_apt_update(apt, error)) {
        return FALSE;
    }
    changes = vo_apt_plan(apt, error);
    if (!changes || !vo_apt_download(apt, changes, error)) {
        return FALSE;
    }

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "images");
    json_builder_begin_array(b);
    for (guint i = 0; i < g->images->len; i++) {
        json_builder_add_string_value(b, g->images->pdata[i]);
    }
    json_builder_end_array(b);
    vo_plan_member(b, "status_sha256", status->sha256);
    json_builder_set_member_name(b, "os");
    json_builder_begin_object(b);
    vo_plan_member(b, "id", status->os_id);
    vo_plan_member(b, "version_id", status->os_version_id);
    json_builder_end_object(b);
    vo_plan_member(b, "release", status->release);
    vo_plan_member(b, "architecture", status->architecture);
    json_builder_set_member_name(b, "packages");
    json_builder_begin_array(b);
    json_builder_begin_array(refused);
    for (guint i = 0; i < changes->len; i++) {
        VoAptChange *c = changes->pdata[i];
        g_autofree char *sha = NULL;
        g_autofree char *kept = vo_plan_keep_file(c->deb, opts->download_dir,
                                                 &sha, error);
        g_autofree char *name = g_path_get_basename(c->deb);
        gboolean preinst;
        JsonBuilder *to;

        if (!kept ||
            !vo_deb_has_control_member(kept, "preinst", &preinst, error)) {
            return FALSE;
        }
        /* Offline unpack cannot run a preinst, which dpkg runs before
         * unpacking: such packages are listed, not planned. */
        to = preinst ? refused : b;
        json_builder_begin_object(to);
        vo_plan_member(to, "name", c->package);
        vo_plan_member(to, "architecture", c->architecture);
        vo_plan_member(to, "old_version", c->old_version);
        vo_plan_member(to, "new_version", c->new_version);
        vo_plan_member(to, "reason", preinst ? "preinst"
                                     : c->security ? "security" : "updates");
        vo_plan_member(to, "deb", name);
        vo_plan_member(to, "sha256", sha);
        json_builder_end_object(to);
    }
    json_builder_end_array(b);
    json_builder_end_array(refused);
    json_builder_set_member_name(b, "refused");
    json_builder_add_value(b, json_builder_get_root(refused));
    json_builder_end_object(b);
    return TRUE;
}

JsonNode *vo_plan_run(const VoPlanOptions *opts, GError **error)
{
    g_autoptr(GPtrArray) sources = g_ptr_array_new_with_free_func(
        (GDestroyNotify)vo_apt_source_free);
    g_autoptr(GPtrArray) groups = NULL;
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(GDateTime) now = g_date_time_new_now_utc();
    g_autofree char *created = g_date_time_format(now,
                                                  "%Y-%m-%dT%H:%M:%SZ");

    for (guint i = 0; opts->sources[i]; i++) {
        VoAptSource *src = vo_apt_source_parse(opts->sources[i], error);

        if (!src) {
            return NULL;
        }
        g_ptr_array_add(sources, src);
    }
    if (g_mkdir_with_parents(opts->download_dir, 0755) < 0) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "cannot create %s: %s",
                    opts->download_dir, g_strerror(errno));
        return NULL;
    }
    groups = vo_plan_guests_group(opts->guests, VO_WORKER_PACKAGES,
                                  vo_plan_read_status,
                                  (GDestroyNotify)vo_dpkg_status_free,
                                  opts->unread, error);
    if (!groups) {
        return NULL;
    }

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "format");
    json_builder_add_int_value(b, VO_PLAN_FORMAT);
    vo_plan_member(b, "created", created);
    json_builder_set_member_name(b, "security_only");
    json_builder_add_boolean_value(b, opts->security_only);
    json_builder_set_member_name(b, "sources");
    json_builder_begin_array(b);
    for (guint i = 0; i < sources->len; i++) {
        VoAptSource *src = sources->pdata[i];

        json_builder_begin_object(b);
        vo_plan_member(b, "source", src->text);
        json_builder_set_member_name(b, "security");
        json_builder_add_boolean_value(b, src->security);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    json_builder_set_member_name(b, "groups");
    json_builder_begin_array(b);
    for (guint i = 0; i < groups->len; i++) {
        if (!vo_plan_group(opts, sources, groups->pdata[i], b, error)) {
            return NULL;
        }
    }
    json_builder_end_array(b);
    json_builder_end_object(b);
    return json_builder_get_root(b);
}
