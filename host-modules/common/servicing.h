/*
 * vmaugment host side: the offline-servicing record of a disk image.
 *
 * vmaugment-offline keeps, next to every image it patched with a bundle
 * that leaves a record in the guest ("marker"), a sidecar
 * "<image>.vmaugment-servicing.json" naming what it applied.  The guest
 * reports at its next boot (VMAUG_OP_SERVICING_REPORT); the helper checks
 * the report against this record and keeps the outcome in it, and
 * "vmaugment-offline status" reads it (docs/offline.rst, "Confirmation at
 * the next boot").
 *
 * Trust: the file is the host's; a guest report is hostile.  A report
 * counts only for a bundle the host applied to this image, only once, and
 * its text is kept length-capped and with every unprintable character
 * replaced.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef VMAUGMENT_SERVICING_H
#define VMAUGMENT_SERVICING_H

#include <glib.h>
#include <json-glib/json-glib.h>
#include <linux/virtio_vmaugment.h>

G_BEGIN_DECLS

#define VMAUG_SERVICING_SIDECAR_SUFFIX  ".vmaugment-servicing.json"
/* Bundles one record keeps (the oldest are dropped beyond), largest file. */
#define VMAUG_SERVICING_MAX_ENTRIES     256
#define VMAUG_SERVICING_MAX_FILE        (1024 * 1024)

typedef enum {
    VMAUG_SERVICING_STATE_APPLIED,  /* applied offline, not reported yet */
    VMAUG_SERVICING_STATE_CONFIRMED,
    VMAUG_SERVICING_STATE_FAILED,
} VmaugServicingState;

typedef struct {
    gchar *bundle;
    gchar *version;
    gchar *manifest_sha256;         /* lower-case hex */
    gchar *applied;                 /* ISO 8601, UTC */
    guint32 starts;                 /* image starts since the apply */
    VmaugServicingState state;
    guint32 boot;                   /* the start the guest reported at */
    gchar *reported;                /* ISO 8601, UTC; NULL before */
    gchar *message;                 /* cleaned guest text; NULL for none */
} VmaugServicingEntry;

typedef struct {
    gchar *path;                    /* the sidecar */
    GPtrArray *entries;             /* of VmaugServicingEntry, oldest first */
} VmaugServicing;

void vmaug_servicing_free(VmaugServicing *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmaugServicing, vmaug_servicing_free)

/* "<image>.vmaugment-servicing.json" */
gchar *vmaug_servicing_path(const gchar *image);
/* "applied-offline", "confirmed", "failed" */
const gchar *vmaug_servicing_state_name(VmaugServicingState state);

/*
 * Read the record of @image; a missing file is an empty record.  A file
 * that is not a well-formed record is VMAUG_HOST_ERROR_INVALID.
 */
VmaugServicing *vmaug_servicing_load(const gchar *image, GError **error);
gboolean vmaug_servicing_save(VmaugServicing *s, GError **error);

/*
 * The members of entry @e that the record and `vmaugment-offline status`
 * both show, into the object @b has open.
 */
void vmaug_servicing_entry_build(JsonBuilder *b,
                                 const VmaugServicingEntry *e);

/* vmaugment-offline applied @bundle @version (manifest @sha256, hex):
 * its report is now awaited, replacing any earlier entry of it. */
void vmaug_servicing_applied(VmaugServicing *s, const gchar *bundle,
                             const gchar *version, const gchar *sha256);

/* The image started (not a reconnect): counts for every bundle awaiting
 * its report.  Returns whether one was. */
gboolean vmaug_servicing_note_start(VmaugServicing *s);

/*
 * The guest's report @rep with @text_len bytes of @text.  Refused:
 * malformed fields or outcome (VMAUG_HOST_ERROR_INVALID), text longer than
 * VMAUG_SERVICING_MESSAGE_MAX (TOO_BIG) or not UTF-8 (INVALID), a bundle
 * never applied to the image (NOT_FOUND), applied with another manifest
 * (DENIED), already reported (EXISTS).  Otherwise the entry, updated.
 */
VmaugServicingEntry *vmaug_servicing_report(
    VmaugServicing *s, const struct vmaug_servicing_report *rep,
    const guint8 *text, gsize text_len, GError **error);

/* Guest text made fit to show and keep: UTF-8 required, every
 * unprintable character becomes '?'. */
gchar *vmaug_servicing_clean_text(const guint8 *text, gsize len,
                                  GError **error);

G_END_DECLS

#endif /* VMAUGMENT_SERVICING_H */
