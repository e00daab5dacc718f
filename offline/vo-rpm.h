/*
 * rpm guests: the installed packages from the guest's rpm database, and
 * rpm's own version comparison for bundle rules.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#pragma once

#include "vo-inventory.h"

G_BEGIN_DECLS

/*
 * Adds the packages of @guest's rpm database to @inv and sets its
 * package_format to "rpm".  *@found is FALSE, and nothing is added, when
 * the guest has no rpm database.
 */
gboolean vo_rpm_read(VoGuest *guest, VoInventory *inv, gboolean *found,
                     GError **error);
/* The parsing half on the bytes of an rpmdb.sqlite (the fuzz target's
 * entry). */
gboolean vo_rpm_parse_db(GBytes *db, VoInventory *inv, GError **error);

/* "@a @op @b" for [EPOCH:]VERSION[-RELEASE], judged by librpm, with the
 * operators of vo_version_relate(). */
gboolean vo_rpm_relate(const char *a, const char *op, const char *b,
                       gboolean *result, GError **error);

G_END_DECLS
