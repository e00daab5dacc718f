/*
 * The device's side of the host helper link: what QEMU's vmaugment device
 * speaks to vmaugment-helper on its chardev (framing, HELLO, requests and
 * their responses), for the host tools and tests that talk to a real
 * helper in its place.  The helper is trusted no further than its
 * framing: every message is checked against the size limits of the link
 * before it is used.  docs/protocol.rst ("Host helper link") is normative.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef VMAUGMENT_LINK_CLIENT_H
#define VMAUGMENT_LINK_CLIENT_H

#include <gio/gio.h>
#include <linux/virtio_vmaugment.h>
#include "vmaugment/host-link.h"

G_BEGIN_DECLS

typedef struct VmaugLinkClient VmaugLinkClient;

/*
 * An EVENT or LIFECYCLE_DONE that arrived while the client waited for
 * something else.  @body is at least the size of its fixed part (struct
 * virtio_vmaugment_event or struct vmaug_host_lifecycle_done, the latter
 * with at most VMAUG_HOST_MESSAGE_MAX bytes of text after it).
 */
typedef void (*VmaugLinkClientOtherFunc)(guint16 type, guint64 tag,
                                         GBytes *body, gpointer user);

/*
 * Connect to the helper at @socket_path, retrying for @retry_ms while it
 * starts (0: one attempt), and exchange HELLOs under the device name
 * @name.  @store and @image may be NULL (the helper's default store, no
 * image).  Errors are G_IO_ERROR.
 */
VmaugLinkClient *vmaug_link_client_connect(const gchar *socket_path,
                                           const gchar *name,
                                           const gchar *store,
                                           const gchar *image,
                                           guint retry_ms, GError **error);
/* The same; with @channel, taking the request channel the helper passes
 * with its HELLO, as the QEMU device does: guest requests and their
 * answers then travel on it (docs/protocol.rst). */
VmaugLinkClient *vmaug_link_client_connect_full(const gchar *socket_path,
                                                const gchar *name,
                                                const gchar *store,
                                                const gchar *image,
                                                guint retry_ms,
                                                gboolean channel,
                                                GError **error);
void vmaug_link_client_free(VmaugLinkClient *c);
/* What the helper's HELLO named itself (its version). */
const gchar *vmaug_link_client_get_peer(VmaugLinkClient *c);
int vmaug_link_client_get_fd(VmaugLinkClient *c);
/* The request channel's descriptor, -1 without one. */
int vmaug_link_client_get_channel_fd(VmaugLinkClient *c);
/*
 * Wait up to @timeout_ms for the upload area the helper shares with a
 * client that takes the channel; upload chunks then carry their data in
 * it, as the device's do.  What else comes meanwhile goes to the
 * other-message function.
 */
gboolean vmaug_link_client_wait_area(VmaugLinkClient *c, guint timeout_ms,
                                     GError **error);
/* How many chunks went through the upload area so far. */
guint vmaug_link_client_area_chunks(VmaugLinkClient *c);
/* Whether chunks use the upload area once there is one (the default);
 * without, they travel in their REQUEST on the channel (benchmarks
 * compare the two). */
void vmaug_link_client_use_area(VmaugLinkClient *c, gboolean use);
void vmaug_link_client_set_other_func(VmaugLinkClient *c,
                                      VmaugLinkClientOtherFunc func,
                                      gpointer user);

/* Whether the requests that follow are the host owner's (tag bit 63,
 * docs/protocol.rst) rather than a guest's. */
void vmaug_link_client_set_host_owner(VmaugLinkClient *c, gboolean owner);

/* Raw bytes, for tests of a hostile device. */
gboolean vmaug_link_client_send_raw(VmaugLinkClient *c, const void *data,
                                    gsize len, GError **error);
gboolean vmaug_link_client_send_msg(VmaugLinkClient *c, guint16 type,
                                    guint64 tag, const void *data, gsize len,
                                    GError **error);
/* Receive one EVENT or LIFECYCLE_DONE within @timeout_ms and hand it to
 * the other-message function; G_IO_ERROR_TIMED_OUT when none came. */
gboolean vmaug_link_client_pump(VmaugLinkClient *c, guint timeout_ms,
                                GError **error);

/* Send one REQUEST (@a then @b as its payload) and return its tag. */
guint64 vmaug_link_client_request(VmaugLinkClient *c, guint16 opcode,
                                  const void *a, gsize alen,
                                  const void *b, gsize blen, GError **error);
/* Wait up to @timeout_ms for the RESPONSE to @tag, passing other
 * messages on meanwhile: its VMAUG_S_* status and payload. */
gboolean vmaug_link_client_wait_response(VmaugLinkClient *c, guint64 tag,
                                         guint timeout_ms, guint16 *status,
                                         GBytes **data, GError **error);
/* vmaug_link_client_request() and vmaug_link_client_wait_response(). */
gboolean vmaug_link_client_call(VmaugLinkClient *c, guint16 opcode,
                                const void *a, gsize alen,
                                const void *b, gsize blen, guint timeout_ms,
                                guint16 *status, GBytes **data,
                                GError **error);

/* A struct vmaug_module_ref for @name and @version (NULL: any). */
void vmaug_link_client_ref(struct vmaug_module_ref *ref, const gchar *name,
                           const gchar *version);
/* LOAD, QUERY or UNLOAD of @name: @info (may be NULL) is filled when
 * the status is VMAUG_S_OK. */
gboolean vmaug_link_client_ref_call(VmaugLinkClient *c, guint16 opcode,
                                    const gchar *name, const gchar *version,
                                    guint timeout_ms, guint16 *status,
                                    struct vmaug_module_info *info,
                                    GError **error);
/* INVOKE @function of @module with @in; @out (may be NULL) gets what the
 * module answered. */
gboolean vmaug_link_client_invoke(VmaugLinkClient *c, const gchar *module,
                                  const gchar *function, const void *in,
                                  gsize len, guint timeout_ms,
                                  guint16 *status, GBytes **out,
                                  GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmaugLinkClient, vmaug_link_client_free)

G_END_DECLS

#endif /* VMAUGMENT_LINK_CLIENT_H */
