/*
 * A bundle's applicability rules (docs/offline.rst, "Rules").
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#pragma once

#include "vo-bundle.h"
#include "vo-inventory.h"

G_BEGIN_DECLS

/* Appends one {rule, holds} per rule to @report (an array); FALSE with
 * VO_ERROR_NOT_APPLICABLE when one does not hold. */
gboolean vo_rules_check(VoBundle *bundle, VoInventory *inv, VoGuest *guest,
                        JsonBuilder *report, GError **error);

G_END_DECLS
