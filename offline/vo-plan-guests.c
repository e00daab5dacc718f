/*
 * The guests a plan is made for, read and grouped (vo-plan-guests.h).
 *
 * Trust: each guest is read by the confined worker; what the group key
 * is made of is the reader's (vo-plan.c, vo-msu.c) to check.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include "vo-plan-guests.h"

VoPlanGuest *vo_plan_guest_new(const char *image, char *format)
{
    VoPlanGuest *guest = g_new0(VoPlanGuest, 1);

    guest->image = g_strdup(image);
    guest->format = format;
    guest->more = g_ptr_array_new_null_terminated(0, g_free, TRUE);
    guest->more_formats = g_ptr_array_new_null_terminated(0, g_free, TRUE);
    return guest;
}

void vo_plan_guest_add_disk(VoPlanGuest *guest, const char *path,
                            char *format)
{
    g_ptr_array_add(guest->more, g_strdup(path));
    g_ptr_array_add(guest->more_formats, format);
}

void vo_plan_guest_free(VoPlanGuest *guest)
{
    if (!guest) {
        return;
    }
    g_free(guest->image);
    g_free(guest->format);
    g_ptr_array_unref(guest->more);
    g_ptr_array_unref(guest->more_formats);
    g_free(guest);
}

void vo_plan_guests_group_free(VoPlanGroup *group)
{
    if (group->free_data) {
        group->free_data(group->data);
    }
    g_ptr_array_unref(group->images);
    g_free(group);
}

/* What @read makes of @guest, read by a worker running @job. */
static gpointer vo_plan_guests_read(VoPlanGuest *guest, VoWorkerJob job,
                                    VoPlanGuestRead read, const char **key,
                                    GError **error)
{
    g_autoptr(JsonObject) result = NULL;
    VoWorkerRequest req = {
        .job = job,
        .image = guest->image,
        .disk = guest->image,
        .format = guest->format,
        .n_more = guest->more->len,
        .more_images = (const char *const *)guest->more->pdata,
        .more_disks = (const char *const *)guest->more->pdata,
        .more_formats = (const char *const *)guest->more_formats->pdata,
    };

    if (!vo_worker_run(&req, &result, error)) {
        return NULL;
    }
    return read(guest->image, result, key, error);
}

GPtrArray *vo_plan_guests_group(GPtrArray *guests, VoWorkerJob job,
                                VoPlanGuestRead read,
                                GDestroyNotify free_data, char **unread,
                                GError **error)
{
    g_autoptr(GPtrArray) groups = g_ptr_array_new_with_free_func(
        (GDestroyNotify)vo_plan_guests_group_free);
    g_autoptr(GHashTable) by_key = g_hash_table_new(g_str_hash, g_str_equal);

    for (guint i = 0; i < guests->len; i++) {
        VoPlanGuest *guest = guests->pdata[i];
        g_autoptr(GError) local = NULL;
        const char *key = NULL;
        gpointer data = vo_plan_guests_read(guest, job, read, &key, &local);
        VoPlanGroup *g;

        if (!data && unread) {
            unread[i] = g_strdup(local->message);
            continue;
        }
        if (!data) {
            g_propagate_error(error, g_steal_pointer(&local));
            return NULL;
        }
        g = g_hash_table_lookup(by_key, key);
        if (g) {
            free_data(data);
        } else {
            g = g_new0(VoPlanGroup, 1);
            g->data = data;
            g->free_data = free_data;
            g->images = g_ptr_array_new();
            g_ptr_array_add(groups, g);
            /* The key lives as long as the group's data. */
            g_hash_table_insert(by_key, (gpointer)key, g);
        }
        g_ptr_array_add(g->images, guest->image);
    }
    return g_steal_pointer(&groups);
}
