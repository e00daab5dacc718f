/*
 * LVM2 logical volumes read from their on-disk metadata, without
 * device-mapper: where on the disk each volume the offline library can
 * service lies (vo-layout.c makes them volumes of the layout).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#pragma once

#include "vo-disk.h"

G_BEGIN_DECLS

/* One logical volume: "VG/LV", and its bytes' place on the disk. */
typedef void (*VoLvmVolumeFunc)(const char *name, guint64 offset,
                                guint64 size, gpointer data);

/*
 * Reads the LVM2 physical volume at @pv_offset (@pv_size bytes) of @disk
 * and calls @func once per visible logical volume, each inside the PV.
 * Fails with VO_ERROR_CORRUPT for malformed labels or metadata and
 * VO_ERROR_UNSUPPORTED for volume kinds it does not map
 * (docs/offline.rst, "LVM"); @func may have been called before.
 */
gboolean vo_lvm_scan(VoDisk *disk, guint64 pv_offset, guint64 pv_size,
                     VoLvmVolumeFunc func, gpointer data, GError **error);

G_END_DECLS
