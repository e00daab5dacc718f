/*
 * Fuzz target: the deb822 paragraphs of a guest's /var/lib/dpkg/status as
 * the package unpacker reads them and writes them back (vo-deb822.c): the
 * guest wrote the bytes and may have crafted them (docs/threat-model.rst).
 * Whatever parses must write back to text that parses to the same fields,
 * and unchanged paragraphs must come back byte for byte.  Build with clang
 * -fsanitize=fuzzer; fuzz-run.c replays a corpus in ordinary builds.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <stdint.h>
#include <string.h>

#include "vo-deb822.h"
#include "vo-disk.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_same_fields(VoStanza *a, VoStanza *b)
{
    g_assert_cmpuint(a->fields->len, ==, b->fields->len);
    for (guint i = 0; i < a->fields->len; i++) {
        VoField *fa = a->fields->pdata[i], *fb = b->fields->pdata[i];

        g_assert_cmpstr(fa->name, ==, fb->name);
        g_assert_cmpstr(fa->value, ==, fb->value);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g_autoptr(GPtrArray) first = g_ptr_array_new_with_free_func(
        (GDestroyNotify)vo_stanza_free);
    g_autoptr(GPtrArray) again = g_ptr_array_new_with_free_func(
        (GDestroyNotify)vo_stanza_free);
    g_autoptr(GString) raw = g_string_new(NULL);
    g_autoptr(GString) rebuilt = g_string_new(NULL);
    g_autoptr(GError) error = NULL;

    if (!vo_deb822_parse((const char *)data, size, "fuzz", 1000, first,
                         &error)) {
        g_assert(error && error->domain == VO_ERROR &&
                 error->code == VO_ERROR_CORRUPT);
        return 0;
    }
    for (guint i = 0; i < first->len; i++) {
        VoStanza *st = first->pdata[i];
        g_autoptr(VoStanza) copy = vo_stanza_copy(st);

        g_assert(st->fields->len > 0 && st->raw);
        vo_stanza_write(st, raw);
        g_string_append_c(raw, '\n');
        /* A changed paragraph is written from its fields. */
        vo_stanza_set(copy, "X-Fuzz", "1");
        vo_stanza_remove(copy, "X-Fuzz");
        g_assert_null(copy->raw);
        vo_stanza_write(copy, rebuilt);
        g_string_append_c(rebuilt, '\n');
    }
    g_assert_true(vo_deb822_parse(raw->str, raw->len, "raw", 1000, again,
                                  NULL));
    g_assert_cmpuint(again->len, ==, first->len);
    for (guint i = 0; i < first->len; i++) {
        fuzz_same_fields(first->pdata[i], again->pdata[i]);
    }
    g_ptr_array_set_size(again, 0);
    g_assert_true(vo_deb822_parse(rebuilt->str, rebuilt->len, "rebuilt",
                                  1000, again, NULL));
    g_assert_cmpuint(again->len, ==, first->len);
    for (guint i = 0; i < first->len; i++) {
        fuzz_same_fields(first->pdata[i], again->pdata[i]);
    }
    return 0;
}
