/*
 * Planning updates for images with apt ('vmaugment-offline plan'): each
 * image's package set read by the confined worker, images with the same
 * set grouped, apt deciding and downloading once per group, the result a
 * plan (JSON) that 'bundle-build --plan' turns into bundles
 * (vo-plan-bundle.h).
 * docs/offline.rst ("Planning updates with apt") is normative.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#pragma once

#include <json-glib/json-glib.h>

#include "vo-plan-guests.h"

G_BEGIN_DECLS

#define VO_PLAN_FORMAT 1

typedef struct {
    /* VoPlanGuest*: each guest's disks, read together so that a /var of
     * its own is found. */
    GPtrArray *guests;
    char **sources;         /* --apt-source, as written */
    const char *keyring;
    gboolean security_only;
    const char *download_dir;
    /* NULL, or one slot per guest: a guest whose package set cannot be
     * read gets the message here and is left out of the plan instead of
     * failing it. */
    char **unread;
} VoPlanOptions;

/* The plan, or NULL with @error; nothing is written but the .deb files
 * in @opts->download_dir. */
JsonNode *vo_plan_run(const VoPlanOptions *opts, GError **error);

/* Copies @src into @dir under its own name, returned; its SHA-256 in
 * *@sha256. */
char *vo_plan_keep_file(const char *src, const char *dir, char **sha256,
                        GError **error);

G_END_DECLS
