/*
 * The guests a plan is made for ('plan', 'plan --msu-catalog', 'batch
 * --apt-source'): each one's disks, read by a confined worker, and the
 * guests grouped by what the plan decides from (a package set, a build
 * and its updates), so that each group is decided once.
 * docs/offline.rst ("Planning updates with apt") is normative.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#pragma once

#include <json-glib/json-glib.h>

#include "vo-worker.h"

G_BEGIN_DECLS

/* A guest: its first disk (the name plans and reports give the guest)
 * and its later disks in the order the guest sees them. */
typedef struct {
    char *image;            /* resolved to a disk file */
    char *format;           /* probed or given, never probed again */
    GPtrArray *more;        /* char*, NULL-terminated */
    GPtrArray *more_formats; /* char*, NULL-terminated, one per @more */
} VoPlanGuest;

/* A guest of the disk @image in @format (taken). */
VoPlanGuest *vo_plan_guest_new(const char *image, char *format);
/* Appends a later disk in @format (taken). */
void vo_plan_guest_add_disk(VoPlanGuest *guest, const char *path,
                            char *format);
void vo_plan_guest_free(VoPlanGuest *guest);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VoPlanGuest, vo_plan_guest_free)

/* Guests alike: the first one's @data and every one's image. */
typedef struct {
    gpointer data;
    GDestroyNotify free_data;
    GPtrArray *images;      /* const char*, borrowed from the guests */
} VoPlanGroup;

void vo_plan_guests_group_free(VoPlanGroup *group);

/* What the plan decides from in the worker's @result for @image, and
 * *@key (owned by it) naming it: guests of equal keys form one group. */
typedef gpointer (*VoPlanGuestRead)(const char *image, JsonObject *result,
                                    const char **key, GError **error);

/*
 * Runs @job for each of @guests (VoPlanGuest*) in a worker and groups
 * them by the key @read gives, in the order of their first guests:
 * VoPlanGroup*s.  With @unread (one slot per guest), a guest that cannot
 * be read gets the message there and is left out; without, it fails the
 * whole.
 */
GPtrArray *vo_plan_guests_group(GPtrArray *guests, VoWorkerJob job,
                                VoPlanGuestRead read,
                                GDestroyNotify free_data, char **unread,
                                GError **error);

G_END_DECLS
