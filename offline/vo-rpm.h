/*
 * rpm guests: the installed packages from the guest's rpm database, and
 * rpm's own version comparison for bundle rules.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#pragma once

#include "vo-guest.h"

G_BEGIN_DECLS

/* One installed package: its name, [EPOCH:]VERSION-RELEASE and
 * architecture (NULL when the header has none). */
typedef void (*VoRpmPackageFunc)(const char *name, const char *evr,
                                 const char *arch, gpointer data);

/*
 * Calls @func for each package of @guest's rpm database.  *@found is
 * FALSE, and @func never called, when the guest has no rpm database.
 */
gboolean vo_rpm_read(VoGuest *guest, VoRpmPackageFunc func, gpointer data,
                     gboolean *found, GError **error);
/* The parsing half on the bytes of an rpmdb.sqlite (the fuzz target's
 * entry). */
gboolean vo_rpm_parse_db(GBytes *db, VoRpmPackageFunc func, gpointer data,
                         GError **error);

/* "@a @op @b" for [EPOCH:]VERSION[-RELEASE], judged by librpm, with the
 * operators of vo_version_relate(). */
gboolean vo_rpm_relate(const char *a, const char *op, const char *b,
                       gboolean *result, GError **error);

G_END_DECLS
