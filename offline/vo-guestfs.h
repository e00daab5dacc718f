/*
 * The libguestfs route (vo-guestfs.c): a bundle's file instructions
 * carried out through libguestfs's appliance, for filesystems the native
 * readers do not write (XFS, btrfs).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#pragma once

#include <json-glib/json-glib.h>

#include "vo-bundle.h"

G_BEGIN_DECLS

/*
 * Decides (and, unless @dry_run, patches and verifies) @bundle on @disk
 * in @format, a qcow2 overlay of @image (or, dry run, @image itself,
 * opened read-only).  *@report gets what the worker would report,
 * "status" included, whenever the appliance ran.
 */
gboolean vo_guestfs_run(const char *image, const char *disk,
                        const char *format, VoBundle *bundle,
                        gboolean dry_run, JsonObject **report,
                        GError **error);

G_END_DECLS
