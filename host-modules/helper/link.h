/*
 * A framed, non-blocking message link over a stream socket: the helper's
 * side of both the device link and the module links.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef VMAUGMENT_LINK_H
#define VMAUGMENT_LINK_H

#include <glib.h>
#include <linux/virtio_vmaugment.h>
#include "vmaugment/host-link.h"

typedef struct _VmaugLink VmaugLink;

/* A complete message; return FALSE (with *why) on a protocol error, and
 * the link is closed. */
typedef gboolean (*VmaugLinkMessageFunc)(VmaugLink *link, guint16 type,
                                         guint64 tag, const guint8 *data,
                                         guint32 len, gpointer user_data,
                                         const gchar **why);
/* The link is closed (peer gone, error, or vmaug_link_close()); called
 * once.  The link may be freed from here. */
typedef void (*VmaugLinkClosedFunc)(VmaugLink *link, const gchar *why,
                                    gpointer user_data);

/*
 * Take @fd.  Messages longer than @max_len, or with another @magic, are
 * protocol errors; the header is checked before any body is buffered.
 * Unsent output beyond @max_queued bytes means the peer stopped reading:
 * the link is closed rather than letting it pin our memory.
 */
VmaugLink *vmaug_link_new(int fd, guint32 magic, guint32 max_len,
                          gsize max_queued, VmaugLinkMessageFunc on_message,
                          VmaugLinkClosedFunc on_closed, gpointer user_data);
/* Queue a message made of two parts; @pass_fd >= 0 travels with it
 * (SCM_RIGHTS) and is closed here once sent. */
void vmaug_link_send(VmaugLink *link, guint16 type, guint64 tag,
                     const void *a, gsize alen, const void *b, gsize blen,
                     int pass_fd);
/* The same with up to two descriptors. */
void vmaug_link_send_fds(VmaugLink *link, guint16 type, guint64 tag,
                         const void *a, gsize alen, const void *b, gsize blen,
                         const int *fds, guint n_fds);
void vmaug_link_close(VmaugLink *link, const gchar *why);
gboolean vmaug_link_is_open(VmaugLink *link);
/* Frees later if called from within a callback of this link. */
void vmaug_link_free(VmaugLink *link);

#endif /* VMAUGMENT_LINK_H */
