/*
 * A filesystem the host kernel mounted, seen through its root directory
 * (vo-hostfs.c): the --host-kernel route's VoFs.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#pragma once

#include "vo-fs.h"

G_BEGIN_DECLS

/* The tree below @root (a descriptor of the mount's root, borrowed: it
 * must outlive the VoFs), of filesystem @type. */
VoFs *vo_hostfs_open_root(int root, const char *type, gboolean writable);

G_END_DECLS
