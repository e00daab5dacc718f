/*
 * The --host-kernel route (vo-hostkernel.c): XFS and btrfs guests of
 * images their owner trusts, mounted by the host's own kernel from a copy
 * of the filesystem's partition.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#pragma once

#include <json-glib/json-glib.h>

#include "vo-bundle.h"
#include "vo-layout.h"

G_BEGIN_DECLS

typedef enum {
    VO_HOSTKERNEL_CHECK,    /* decide: "rules", "plan", "status" */
    VO_HOSTKERNEL_APPLY,    /* ... patch @disk and verify: "verify" */
    VO_HOSTKERNEL_VERIFY,   /* "instructions", "verified" */
} VoHostKernelJob;

/*
 * Runs @job for @bundle on @disk in @format (an apply: the qcow2 overlay
 * of the image; otherwise the image itself, only read).  @disk_fd, unless
 * -1, is the overlay held open: every QEMU tool opens it through that
 * descriptor, not by the name, which may have been swapped meanwhile.
 * @name names the image in messages; the temporary copy of the
 * filesystem is kept next to @owner (the image, canonical), where
 * vo_hostkernel_clean() finds it.  *@report gets what a worker would
 * report, "status" included, whenever the filesystem was mounted.
 */
gboolean vo_hostkernel_run(VoHostKernelJob job, const char *name,
                           const char *owner, const char *disk, int disk_fd,
                           const char *format, VoBundle *bundle,
                           JsonObject **report, GError **error);

/*
 * The volumes a worker's locate job reported in @result, each checked by
 * vo_worker_volumes() (a guest of one disk of virtual @size), and in
 * *@root the index of the one the route mounts: the only XFS or btrfs
 * filesystem.  NULL with @error otherwise.
 */
VoLayout *vo_hostkernel_volumes(JsonObject *result, guint64 size,
                                guint *root, GError **error);

/*
 * Removes the temporary copies that runs on @image (canonical) which
 * ended without cleaning up left next to it; a copy a live run still
 * holds is left alone.  *@any says whether one was removed.
 */
gboolean vo_hostkernel_clean(const char *image, gboolean *any,
                             GError **error);

G_END_DECLS
