/*
 * Fuzz target: offline bundles.  Each input is read twice: as a bundle
 * file (a tar archive, whose members are read before any signature is
 * checked, against an empty trust store, so nothing is ever accepted) and
 * as a manifest parsed as if its signature had verified, with two fixed
 * payloads, since a trusted signer's mistake must not crash the tool
 * either (docs/offline.rst).
 * Build with clang -fsanitize=fuzzer; fuzz-run.c replays a corpus in
 * ordinary builds.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <stdint.h>

#include "vo-bundle.h"
#include "vo-guest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_quiet(const gchar *domain, GLogLevelFlags level,
                       const gchar *message, gpointer user_data)
{
}

/* What an accepted manifest promises the code that applies it. */
static void fuzz_check_bundle(const VoBundle *b)
{
    g_assert(b->id != NULL && b->version != NULL);
    for (guint i = 0; i < b->files->len; i++) {
        const VoFileOp *op = b->files->pdata[i];

        g_assert(vo_guest_check_path(op->path, NULL));
        if (op->kind == VO_FILE_OP_ADD || op->kind == VO_FILE_OP_REPLACE) {
            g_autofree char *sha = vo_sha256(op->data);

            g_assert(op->data != NULL);
            g_assert_cmpstr(sha, ==, op->new_sha256);
        }
    }
    for (guint i = 0; i < b->packages->len; i++) {
        const VoPackageOp *op = b->packages->pdata[i];

        g_assert(op->data != NULL && op->package && op->architecture &&
                 op->version);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static GHashTable *payloads;
    static char *trust_dir;
    g_autoptr(GBytes) manifest = g_bytes_new_static(data, size);
    g_autoptr(VoBundle) bundle = NULL;
    g_autoptr(VoBundle) parsed = NULL;
    g_autoptr(GError) error = NULL;

    if (payloads == NULL) {
        g_log_set_default_handler(fuzz_quiet, NULL);
        /* An empty trust store: no signature can verify. */
        trust_dir = g_dir_make_tmp("vmaugment-fuzz-trust-XXXXXX", NULL);
        g_assert(trust_dir != NULL);
        payloads = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                         (GDestroyNotify)g_bytes_unref);
        g_hash_table_insert(payloads, g_strdup("motd"),
                            g_bytes_new_static("patched\n", 8));
        g_hash_table_insert(payloads, g_strdup("empty"),
                            g_bytes_new_static("", 0));
    }

    bundle = vo_bundle_load_data(data, size, "fuzz.vmab", trust_dir, &error);
    g_assert(bundle == NULL && error != NULL);
    g_clear_error(&error);

    if (size > VO_BUNDLE_MAX_MANIFEST) {
        return 0;   /* vo_bundle_load() refuses it unread */
    }
    parsed = vo_bundle_parse_unverified(manifest, payloads, &error);
    if (parsed == NULL) {
        g_assert(error != NULL);
    } else {
        fuzz_check_bundle(parsed);
    }
    return 0;
}
