/*
 * The disks of libvirt's domains, as batch targets: inactive domains'
 * file-backed disks are serviced, everything else is reported skipped.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#pragma once

#include "vo-batch.h"

G_BEGIN_DECLS

/* Appends a VoBatchTarget per disk of every domain that @uri knows, in
 * domain name order. */
gboolean vo_libvirt_collect(const char *uri, GPtrArray *targets,
                            GError **error);

G_END_DECLS
