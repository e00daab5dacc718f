/*
 * Lower-case hexadecimal for digests and fingerprints (vmaugment-hex.h).
 * Inputs to the decoders are hostile: lengths and digits are checked
 * before anything is written.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <string.h>

#include "vmaugment-hex.h"

gchar *vmaug_hex_encode(const guint8 *data, gsize len)
{
    static const gchar digits[] = "0123456789abcdef";
    gchar *s = g_malloc(len * 2 + 1);

    for (gsize i = 0; i < len; i++) {
        s[2 * i] = digits[data[i] >> 4];
        s[2 * i + 1] = digits[data[i] & 0xf];
    }
    s[len * 2] = '\0';
    return s;
}

gboolean vmaug_hex_decode_sha256(const gchar *hex,
                                 guint8 out[VMAUG_SHA256_LEN])
{
    guint8 buf[VMAUG_SHA256_LEN];

    if (strlen(hex) != 2 * VMAUG_SHA256_LEN) {
        return FALSE;
    }
    for (guint i = 0; i < VMAUG_SHA256_LEN; i++) {
        gint hi = g_ascii_xdigit_value(hex[2 * i]);
        gint lo = g_ascii_xdigit_value(hex[2 * i + 1]);

        /* Lower case only: one digest, one spelling. */
        if (hi < 0 || lo < 0 || g_ascii_isupper(hex[2 * i]) ||
            g_ascii_isupper(hex[2 * i + 1])) {
            return FALSE;
        }
        buf[i] = (guint8)(hi << 4 | lo);
    }
    if (out != NULL) {
        memcpy(out, buf, sizeof(buf));
    }
    return TRUE;
}

gboolean vmaug_hex_is_sha256(const gchar *hex)
{
    return vmaug_hex_decode_sha256(hex, NULL);
}
