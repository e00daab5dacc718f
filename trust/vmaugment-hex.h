/*
 * Lower-case hexadecimal, the one spelling of digests and fingerprints in
 * vmaugment's files, indexes and manifests (trust-hex.c).  Decoding
 * treats its input as hostile: one length, one case, nothing else.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef VMAUGMENT_HEX_H
#define VMAUGMENT_HEX_H

#include <glib.h>

G_BEGIN_DECLS

#define VMAUG_SHA256_LEN        32

/* @len bytes as 2 * @len lower-case digits. */
gchar *vmaug_hex_encode(const guint8 *data, gsize len);
/* A SHA-256 digest: exactly 64 lower-case hexadecimal digits. */
gboolean vmaug_hex_is_sha256(const gchar *hex);
/* The same, decoded into @out. */
gboolean vmaug_hex_decode_sha256(const gchar *hex,
                                 guint8 out[VMAUG_SHA256_LEN]);

G_END_DECLS

#endif /* VMAUGMENT_HEX_H */
