/*
 * LVM2 logical volumes read from their on-disk metadata, without
 * device-mapper: each volume the offline library can service becomes a
 * VoPartition at its place on the disk.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#pragma once

#include "vo-layout.h"

G_BEGIN_DECLS

/*
 * Reads the LVM2 physical volume @pv of @disk and appends to @parts one
 * VoPartition (volume "VG/LV", offset and size on @disk, no filesystem
 * probed yet) per visible logical volume.  Fails with VO_ERROR_CORRUPT
 * for malformed labels or metadata and VO_ERROR_UNSUPPORTED for volume
 * kinds it does not map (docs/offline.rst, "LVM").
 */
gboolean vo_lvm_scan(VoDisk *disk, const VoPartition *pv, GPtrArray *parts,
                     GError **error);

G_END_DECLS
