/*
 * Fuzz target: manifests and packages as an attacker could write them.
 * Build with clang -fsanitize=fuzzer; fuzz-run.c replays a corpus in
 * ordinary builds.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <stdint.h>

#include "host-common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_quiet(const gchar *domain, GLogLevelFlags level,
                       const gchar *message, gpointer user_data)
{
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static VmaugTrustStore *trust;
    g_autoptr(VmaugManifest) m = NULL;
    g_autoptr(VmaugPackage) pkg = NULL;
    g_autoptr(GBytes) file = NULL;

    if (trust == NULL) {
        g_log_set_default_handler(fuzz_quiet, NULL);
        trust = vmaug_trust_store_new();
    }
    /* The manifest parser sees only signed input in the helper, but must
     * hold against anything. */
    m = vmaug_manifest_parse((const gchar *)data, size, NULL);
    if (m != NULL) {
        g_assert(vmaug_name_is_valid(m->name));
        g_assert(vmaug_version_is_valid(m->version));
    }
    /* The package layout is checked before any signature. */
    file = g_bytes_new_static(data, size);
    pkg = vmaug_package_verify(file, trust, 1 << 20, NULL);
    g_assert(pkg == NULL);  /* nothing is trusted here */
    return 0;
}
