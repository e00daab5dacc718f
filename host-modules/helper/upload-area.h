/*
 * vmaugment-helper: the upload area shared with one QEMU device
 * (upload-area.c).
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef VMAUGMENT_UPLOAD_AREA_H
#define VMAUGMENT_UPLOAD_AREA_H

#include <glib.h>

typedef struct _UploadArea UploadArea;

/*
 * A new area of VMAUG_HOST_AREA_SLOTS slots, mapped read-only here, and
 * in *@fd a descriptor of it for the device (the caller owns it).
 */
UploadArea *upload_area_new(int *fd, GError **error);
void upload_area_free(UploadArea *area);
/*
 * The @len bytes of @slot, or NULL when they are not within one slot.
 * What they hold is the device's to change at any time: copied, never
 * parsed.
 */
const guint8 *upload_area_slot(UploadArea *area, guint32 slot, gsize len);

#endif /* VMAUGMENT_UPLOAD_AREA_H */
