/*
 * The disks of libvirt's domains, as batch targets: inactive domains'
 * file-backed disks are serviced together as one guest, everything else
 * is reported skipped.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#pragma once

#include "vo-batch.h"

G_BEGIN_DECLS

/* Appends, for every domain that @uri knows in domain name order, one
 * VoBatchTarget for its serviceable disks (the first in target order,
 * the others its VoBatchTarget.more) and one per disk it leaves out. */
gboolean vo_libvirt_collect(const char *uri, GPtrArray *targets,
                            GError **error);

G_END_DECLS
