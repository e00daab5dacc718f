/*
 * A guest's mount map, built from its disk: partitions and LVM volumes
 * (vo-layout.c), their filesystems, the root found by its marks, then
 * /etc/fstab (libmount) on Linux or the drive letters of the SYSTEM hive
 * (vo-registry.c) on Windows.  Above vo-guest.c, which resolves paths
 * through the map, and vo-registry.c, which reads hives through it.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#pragma once

#include "vo-guest.h"

G_BEGIN_DECLS

/* Maps the guest on @disk (taken, also on failure): partitions,
 * filesystems, mounts.  @image names it in messages. */
VoGuest *vo_mounts_open(VoDisk *disk, const char *image, GError **error);
/* The same for a guest of several disks (@n_disks of them, all taken),
 * in the order the guest sees them: its fstab may mount a filesystem of
 * any of them. */
VoGuest *vo_mounts_open_disks(VoDisk *const *disks, guint n_disks,
                              const char *image, GError **error);
/*
 * The same, with LUKS volumes the parent opened (docs/offline.rst,
 * "LUKS"): @n_opened decrypted volumes (taken) after the guest's disks
 * in @disks, each read as a whole disk in place of the container
 * @opened says it came from.
 */
VoGuest *vo_mounts_open_guest(VoDisk *const *disks, guint n_disks,
                              const VoMountsOpened *opened, guint n_opened,
                              const char *image, GError **error);
/* Adds to @guest->mounts what the bytes of its /etc/fstab mount, on the
 * partitions of @guest->layout: the step of vo_mounts_open() that reads
 * fstab, taken apart for the fuzz target. */
gboolean vo_mounts_parse_fstab(VoGuest *guest, GBytes *fstab, GError **error);
/* The same, of the guest's own /etc/fstab (none: nothing but the root). */
gboolean vo_mounts_read_fstab(VoGuest *guest, GError **error);
/* Syncs, then maps the guest again from a read-only view of the same
 * export with every cached page dropped: a fresh read of what was written. */
gboolean vo_mounts_reopen_read_only(VoGuest *guest, GError **error);

G_END_DECLS
