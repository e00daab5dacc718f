/*
 * 'batch --apt-source' (vo-batch-apt.h): the plan, the bundles and the
 * applies of one run, each by the code that does it alone (vo_plan_run,
 * vo_plan_bundle_build, vo_batch_run); here only which image goes where,
 * and why an image is left alone.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <errno.h>

#include <glib/gstdio.h>

#include "vo-batch-apt.h"
#include "vo-image.h"
#include "vo-plan-bundle.h"
#include "vo-plan.h"

/* @t is reported with @status and @reason instead of being applied. */
static void vo_batch_apt_skip(VoBatchTarget *t, const char *status,
                              char *reason)
{
    g_free(t->skip_status);
    g_free(t->skip_reason);
    t->skip_status = g_strdup(status);
    t->skip_reason = reason;
}

/* The group objects of the plan, in order. */
static JsonArray *vo_batch_apt_groups(JsonNode *plan)
{
    return json_object_get_array_member(json_node_get_object(plan),
                                        "groups");
}

/* A reason naming the packages apt chose but offline unpack refuses. */
static char *vo_batch_apt_refused(JsonObject *group)
{
    JsonArray *refused = json_object_get_array_member(group, "refused");
    g_autoptr(GString) s = g_string_new(NULL);

    for (guint i = 0; i < json_array_get_length(refused); i++) {
        JsonObject *p = json_array_get_object_element(refused, i);

        g_string_append_printf(s, "%s%s (%s)", i ? ", " : "",
                               json_object_get_string_member(p, "name"),
                               json_object_get_string_member(p, "reason"));
    }
    return g_strdup_printf("apt's only upgrades cannot be unpacked "
                           "offline: %s", s->str);
}

/* Gives each planned target its group and that group's bundle, built
 * here; a group with nothing to unpack leaves its images alone. */
static void vo_batch_apt_bundles(const VoBatchAptOptions *opts,
                                 GPtrArray *targets, GPtrArray *planned,
                                 JsonNode *plan, const char *plan_path,
                                 const char *debs)
{
    JsonArray *groups = vo_batch_apt_groups(plan);

    for (guint gi = 0; gi < json_array_get_length(groups); gi++) {
        JsonObject *g = json_array_get_object_element(groups, gi);
        JsonArray *images = json_object_get_array_member(g, "images");
        g_autofree char *name = g_strdup_printf("group-%u.vmab", gi);
        g_autofree char *bundle = g_build_filename(opts->batch.report_dir,
                                                   name, NULL);
        g_autoptr(GPtrArray) bundles = NULL;
        g_autoptr(GError) local = NULL;
        const char *status = NULL;
        g_autofree char *reason = NULL;

        guint n_packages = json_array_get_length(
            json_object_get_array_member(g, "packages"));
        guint n_refused = json_array_get_length(
            json_object_get_array_member(g, "refused"));

        if (n_packages == 0 && (n_refused == 0 || !opts->stage_preinst)) {
            status = n_refused == 0 ? "up-to-date" : "nothing-to-apply";
            reason = n_refused == 0
                         ? g_strdup("apt has no upgrade for this image")
                         : vo_batch_apt_refused(g);
        } else if (!vo_plan_bundle_build(plan_path, gi, opts->stage_preinst,
                                         debs, opts->key_path,
                                         opts->cert_path, bundle, &local)) {
            status = "error";
            reason = g_strdup_printf("cannot build %s: %s", name,
                                     local->message);
        } else {
            bundles = g_ptr_array_new_with_free_func(g_free);
            g_ptr_array_add(bundles, g_strdup(bundle));
        }
        for (guint k = 0; k < json_array_get_length(images); k++) {
            const char *image = json_array_get_string_element(images, k);

            /* The plan names each image as it was given. */
            for (guint i = 0; i < planned->len; i++) {
                VoBatchTarget *t = targets->pdata[GPOINTER_TO_UINT(
                    planned->pdata[i])];

                if (!g_str_equal(t->path, image) || t->group >= 0) {
                    continue;
                }
                t->group = gi;
                if (bundles) {
                    t->bundles = g_ptr_array_ref(bundles);
                } else {
                    vo_batch_apt_skip(t, status, g_strdup(reason));
                }
                break;
            }
        }
    }
}

JsonNode *vo_batch_apt_run(const VoBatchAptOptions *opts, GPtrArray *targets,
                           gboolean *all_ok, GError **error)
{
    const char *dir = opts->batch.report_dir;
    g_autofree char *debs = g_build_filename(dir, "debs", NULL);
    g_autofree char *plan_path = g_build_filename(dir, "plan.json", NULL);
    g_autoptr(GPtrArray) guests = g_ptr_array_new_with_free_func(
        (GDestroyNotify)vo_plan_guest_free);
    g_autoptr(GPtrArray) planned = g_ptr_array_new();  /* target indexes */
    g_autoptr(GPtrArray) none = g_ptr_array_new();
    g_autoptr(JsonNode) plan = NULL;
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autoptr(GError) plan_error = NULL;
    g_autofree char **unread = NULL;
    VoPlanOptions popts = {
        .sources = opts->sources,
        .keyring = opts->keyring,
        .security_only = opts->security_only,
        .download_dir = debs,
    };
    VoBatchOptions bopts = opts->batch;
    JsonNode *summary;

    /* Images that cannot be opened now are reported, not planned. */
    for (guint i = 0; i < targets->len; i++) {
        VoBatchTarget *t = targets->pdata[i];
        g_autoptr(GError) local = NULL;
        g_autoptr(VoPlanGuest) guest = NULL;
        char *format;

        if (t->skip_status) {
            continue;
        }
        format = vo_image_open_format(t->path,
                                      t->format ? t->format : opts->format,
                                      FALSE, &local);
        guest = format ? vo_plan_guest_new(t->path, format) : NULL;
        /* The /var with the package set may be on any of the guest's
         * disks: each is checked as the first is. */
        for (guint k = 0; guest && t->more && k < t->more->len; k++) {
            VoBatchDisk *d = t->more->pdata[k];

            format = vo_image_open_format(
                d->path, d->format ? d->format : opts->format, FALSE, &local);
            if (!format) {
                g_clear_pointer(&guest, vo_plan_guest_free);
                break;
            }
            vo_plan_guest_add_disk(guest, d->path, format);
        }
        if (!guest) {
            gboolean in_use = g_error_matches(local, VO_ERROR,
                                              VO_ERROR_IN_USE);

            vo_batch_apt_skip(t, in_use ? "skipped-in-use" : "error",
                              g_strdup(local->message));
            continue;
        }
        g_ptr_array_add(guests, g_steal_pointer(&guest));
        g_ptr_array_add(planned, GUINT_TO_POINTER(i));
    }
    unread = g_new0(char *, guests->len + 1);
    popts.guests = guests;
    popts.unread = unread;
    plan = guests->len ? vo_plan_run(&popts, &plan_error) : NULL;
    for (guint i = 0; i < guests->len; i++) {
        VoBatchTarget *t = targets->pdata[GPOINTER_TO_UINT(
            planned->pdata[i])];

        if (unread[i]) {
            vo_batch_apt_skip(t, "error", g_strdup_printf(
                "cannot read the package set: %s", unread[i]));
            g_free(unread[i]);
        } else if (!plan && plan_error) {
            vo_batch_apt_skip(t, "error", g_strdup_printf(
                "no plan: %s", plan_error->message));
        }
    }
    if (plan) {
        json_generator_set_pretty(gen, TRUE);
        json_generator_set_root(gen, plan);
        if (!json_generator_to_file(gen, plan_path, error)) {
            return NULL;
        }
        vo_batch_apt_bundles(opts, targets, planned, plan, plan_path, debs);
    }
    bopts.report_per_image = TRUE;
    summary = vo_batch_run(&bopts, targets, none, all_ok);
    if (plan_error) {
        json_node_unref(summary);
        g_propagate_error(error, g_steal_pointer(&plan_error));
        return NULL;
    }
    return summary;
}
