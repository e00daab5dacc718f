/*
 * Fuzz target: the report of the image scan process (image-scan.c), as
 * hostile as the image it read.  The first byte is the exit status (its
 * low two bits: 0 clean, 1 infected, 2 incomplete, 3 a status the parser
 * is never given for a report), or with bit 2 set the report is a
 * quarantine's apply (its status 0); the rest the JSON.  Build with clang
 * -fsanitize=fuzzer; fuzz-run.c replays a corpus in ordinary builds.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <stdint.h>

#include "image-scan.h"
#include "vmaugment-module.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_autoptr(GString) report = g_string_new(NULL);
    g_autoptr(GString) summary = g_string_new(NULL);
    g_autoptr(GError) error = NULL;
    gint status, r;

    if (size < 1 || size - 1 > IMAGE_SCAN_MAX_JSON) {
        return 0;   /* the helper reads no more */
    }
    status = data[0] & 3;
    if (data[0] & 4) {
        r = image_scan_parse_quarantine((const gchar *)data + 1, size - 1,
                                        report, summary, &error);
    } else {
        r = image_scan_parse((const gchar *)data + 1, size - 1, status,
                             report, summary, &error);
    }
    if (r < 0) {
        g_assert(error != NULL);
        return 0;
    }
    /* What the module and the audit log get of any accepted report. */
    g_assert((data[0] & 4) || r == status);
    g_assert(report->len <= VMAUG_MODULE_MAX_SCAN_REPORT);
    g_assert(g_utf8_validate(report->str, report->len, NULL));
    g_assert(g_utf8_validate(summary->str, summary->len, NULL));
    for (gsize i = 0; i < report->len; i++) {
        guchar c = (guchar)report->str[i];

        g_assert(c >= 0x20 || c == '\t' || c == '\n');
        g_assert(c != 0x7f);
    }
    for (gsize i = 0; i < summary->len; i++) {
        g_assert((guchar)summary->str[i] >= 0x20);
    }
    g_assert(report->len > 0 && report->str[report->len - 1] == '\n');
    return 0;
}
