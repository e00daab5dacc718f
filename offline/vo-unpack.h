/*
 * A bundle's "packages": Debian packages unpacked into the guest with the
 * semantics of dpkg --unpack (docs/offline.rst, "Packages").  Runs in the
 * offline worker, after the file and registry instructions.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#pragma once

#include <json-glib/json-glib.h>

#include "vo-bundle.h"
#include "vo-guest.h"

G_BEGIN_DECLS

/* Checks every package against the guest (versions installed, paths,
 * owners, preinst) without changing anything, and adds one object per
 * package to @plan, an open array. */
gboolean vo_unpack_plan(VoBundle *bundle, VoGuest *guest, JsonBuilder *plan,
                        GError **error);

/* Unpacks every package and writes the dpkg database back. */
gboolean vo_unpack_execute(VoBundle *bundle, VoGuest *guest, GError **error);

/* Checks each package's unpacked state; adds one object per package to
 * @report (an open array, or NULL).  Returns how many failed; *@first gets
 * the first failure's description. */
guint vo_unpack_verify(VoBundle *bundle, VoGuest *guest, JsonBuilder *report,
                       char **first);

G_END_DECLS
