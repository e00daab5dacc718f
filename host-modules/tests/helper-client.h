/*
 * A client of vmaugment-helper that speaks exactly what the QEMU device
 * speaks on its chardev: the real peer of the helper in tests and
 * benchmarks; and the helper of a test's own that test-helper and
 * test-isolation start.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef VMAUGMENT_HELPER_CLIENT_H
#define VMAUGMENT_HELPER_CLIENT_H

#include <glib.h>
#include <linux/virtio_vmaugment.h>
#include "vmaugment/host-link.h"

#include "link-client.h"
#include "test-common.h"

/* The link itself is the host tools' (link-client.h); a test asserts on
 * what it reports and keeps what arrives out of turn. */
typedef struct {
    VmaugLinkClient *link;
    GQueue events;          /* GBytes: struct virtio_vmaugment_event + data */
    GQueue dones;           /* HelperDone not waited for yet */
    /* IMAGE_ACCESS: each op asked, in order, and the status answered
     * (VMAUG_S_OK unless a test says otherwise), as QEMU would. */
    GArray *accesses;       /* guint32 VMAUG_IMAGE_* */
    guint16 access_status;
} HelperClient;

typedef struct {
    guint16 status;
    GBytes *data;
} HelperReply;

/* Start the helper; returns its pid.  @extra_args may be NULL. */
GPid helper_spawn(const gchar *helper, const gchar *socket,
                  const gchar *store, const gchar *trust_dir,
                  const gchar *const *extra_args);
void helper_kill(GPid pid);

/* A LIFECYCLE_DONE from the helper. */
typedef struct {
    guint64 tag;
    guint32 event;
    guint16 status;
    gchar *message;
} HelperDone;

void helper_done_free(HelperDone *d);
/* Connect (retrying while the helper starts) and exchange HELLOs. */
HelperClient *helper_client_connect(const gchar *socket,
                                    const gchar *store_path);
/* The same, naming a disk image (NULL: none). */
HelperClient *helper_client_connect_image(const gchar *socket,
                                          const gchar *store_path,
                                          const gchar *image_path);
/* The same; with @channel, taking the helper's request channel as the
 * QEMU device does. */
HelperClient *helper_client_connect_full(const gchar *socket_path,
                                         const gchar *store_path,
                                         const gchar *image_path,
                                         gboolean channel);
void helper_client_free(HelperClient *c);
/* Send a LIFECYCLE message, as the device does on a run-state change. */
void helper_client_lifecycle(HelperClient *c, guint64 tag, guint32 event,
                             guint32 flags);
/* Wait for the LIFECYCLE_DONE of @tag (queueing events meanwhile). */
HelperDone *helper_client_wait_done(HelperClient *c, guint64 tag,
                                    guint timeout_ms);
/* Send raw bytes (for hostile-device tests). */
gboolean helper_client_send_raw(HelperClient *c, const void *data, gsize len);
void helper_client_send_msg(HelperClient *c, guint16 type, guint64 tag,
                            const void *data, gsize len);
/* Send one request, not waiting: its tag (0 if it could not be sent),
 * for helper_client_wait_response(). */
guint64 helper_client_request(HelperClient *c, guint16 opcode,
                              const void *a, gsize alen, const void *b,
                              gsize blen);
/* One request; waits for its response, queueing events meanwhile.
 * Returns FALSE if the helper closed the connection or timed out. */
gboolean helper_client_call(HelperClient *c, guint16 opcode,
                            const void *a, gsize alen, const void *b,
                            gsize blen, HelperReply *reply);
/* Wait for the response to @tag (queueing events meanwhile). */
gboolean helper_client_wait_response(HelperClient *c, guint64 tag,
                                     HelperReply *reply);
/* Wait for the next event of @type (0: any), up to @timeout_ms. */
GBytes *helper_client_wait_event(HelperClient *c, guint32 type,
                                 guint timeout_ms);
/* TRUE when the helper closed the connection within @timeout_ms. */
gboolean helper_client_closed(HelperClient *c, guint timeout_ms);

void helper_reply_clear(HelperReply *r);

/* Convenience wrappers. */
void helper_ref(struct vmaug_module_ref *ref, const gchar *name,
                const gchar *version);
guint16 helper_load(HelperClient *c, const gchar *name, const gchar *version,
                    struct vmaug_module_info *info);
guint16 helper_query(HelperClient *c, const gchar *name,
                     const gchar *version, struct vmaug_module_info *info);
guint16 helper_unload(HelperClient *c, const gchar *name);
guint16 helper_upload(HelperClient *c, GBytes *pkg, const gchar *name,
                      const gchar *version, gsize chunk);
/* Where an upload's time went, after the client's own digest of it:
 * UPLOAD_BEGIN's round trip, the chunks', UPLOAD_COMMIT's (the helper's
 * digest, verification and store). */
typedef struct {
    gint64 begin_us;
    gint64 chunks_us;
    gint64 commit_us;
} HelperUploadTimes;
guint16 helper_upload_timed(HelperClient *c, GBytes *pkg, const gchar *name,
                            const gchar *version, gsize chunk,
                            HelperUploadTimes *t);
guint16 helper_invoke(HelperClient *c, const gchar *module,
                      const gchar *function, const void *in, gsize len,
                      GBytes **out);

/*
 * A helper of its own for one test, under the scratch directory of its
 * keys: the layout test-helper and test-isolation share, so that a test
 * of either reads the same store, socket and image paths.
 */
typedef struct {
    TestKeys *keys;
    gchar *store;
    gchar *socket;
    gchar *images;                  /* the helper's --image-dir */
    gchar *image;                   /* <images>/disk.qcow2 */
    GPid pid;                       /* 0 until started */
    HelperClient *c;                /* NULL unless the test connected it */
} HelperFixture;

/* New keys and the paths under them; the helper is not started. */
void helper_fixture_setup(HelperFixture *f);
/* Start $VMAUG_HELPER with --image-dir, then @base (the test file's
 * defaults), then @extra (the test's own); either may be NULL. */
void helper_fixture_start(HelperFixture *f, const gchar *const *base,
                          const gchar *const *extra);
/* Free the client and stop the helper, where there are any. */
void helper_fixture_teardown(HelperFixture *f);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(HelperClient, helper_client_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(HelperDone, helper_done_free)
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(HelperReply, helper_reply_clear)

#endif /* VMAUGMENT_HELPER_CLIENT_H */
