/*
 * What a .deb file's control archive holds, read with libarchive (the
 * .deb's "ar" container, then its control.tar.*).  Used on files apt
 * downloaded and verified against the operator's signed repository.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Whether the .deb at @path has the control member @name ("preinst"). */
gboolean vo_deb_has_control_member(const char *path, const char *name,
                                   gboolean *has, GError **error);

G_END_DECLS
