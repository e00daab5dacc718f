/*
 * Fuzz target: a repository's index.json.  The client parses an index
 * only after its signature verified, but the publisher reads the index it
 * finds in the repository directory, and a compromised or careless signer
 * is no reason to crash: the parser must hold against anything.  A parsed
 * index is also written back as the publisher does, and must read back
 * the same (docs/repository.rst).
 * Build with clang -fsanitize=fuzzer; fuzz-run.c replays a corpus in
 * ordinary builds.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <stdint.h>
#include <string.h>

#include "repo-private.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_quiet(const gchar *domain, GLogLevelFlags level,
                       const gchar *message, gpointer user_data)
{
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static gboolean quiet;
    g_autoptr(GBytes) json = g_bytes_new(data, size);
    g_autoptr(VmaugRepoIndex) index = NULL;
    g_autoptr(VmaugRepoIndex) again = NULL;
    g_autoptr(GBytes) written = NULL;
    g_autoptr(GError) error = NULL;
    g_autofree gchar *text = NULL;
    g_autofree gchar *text2 = NULL;

    if (!quiet) {
        g_log_set_default_handler(fuzz_quiet, NULL);
        quiet = TRUE;
    }
    index = repo_index_parse(json, &error);
    if (index == NULL) {
        g_assert(error != NULL);
        return 0;
    }
    g_assert(index->version >= 1);
    g_assert(index->entries->len <= VMAUG_REPO_MAX_INDEX_ENTRIES);
    for (guint i = 0; i < index->entries->len; i++) {
        const VmaugRepoEntry *e = g_ptr_array_index(index->entries, i);

        g_assert(vmaug_repo_index_lookup(index, e->name, e->version) == e);
        g_assert(strlen(e->sha256) == 64);
        g_assert(e->size >= 1);
    }

    /* What the publisher writes back reads back as the same index. */
    text = repo_index_to_json(index);
    written = g_bytes_new(text, strlen(text));
    again = repo_index_parse(written, &error);
    g_assert_no_error(error);
    g_assert(again->version == index->version);
    g_assert(again->expires == index->expires);
    g_assert(again->entries->len == index->entries->len);
    text2 = repo_index_to_json(again);
    g_assert_cmpstr(text, ==, text2);
    return 0;
}
