/*
 * vmaugment-sign: write a detached PKCS#7 signature of a file.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "vmaugment-trust.h"

static gchar *opt_key;
static gchar *opt_cert;
static gchar *opt_output;

static const GOptionEntry entries[] = {
    { "key", 'k', 0, G_OPTION_ARG_FILENAME, &opt_key,
      "Signing private key", "FILE" },
    { "cert", 'c', 0, G_OPTION_ARG_FILENAME, &opt_cert,
      "Certificate of the signing key", "FILE" },
    { "output", 'o', 0, G_OPTION_ARG_FILENAME, &opt_output,
      "Signature file (default: FILE.p7s)", "SIG" },
    { NULL }
};

int main(int argc, char **argv)
{
    g_autoptr(GOptionContext) ctx = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugTrustIdentity) id = NULL;
    g_autoptr(GMappedFile) mf = NULL;
    g_autoptr(GBytes) data = NULL;
    g_autoptr(GBytes) sig = NULL;
    g_autofree gchar *out = NULL;

    ctx = g_option_context_new("FILE - sign a file for vmaugment");
    g_option_context_add_main_entries(ctx, entries, NULL);
    if (!g_option_context_parse(ctx, &argc, &argv, &error)) {
        g_printerr("vmaugment-sign: %s\n", error->message);
        return 1;
    }
    if (argc != 2 || opt_key == NULL || opt_cert == NULL) {
        g_printerr("vmaugment-sign: usage: vmaugment-sign --key KEY "
                   "--cert CERT [--output SIG] FILE\n");
        return 1;
    }
    id = vmaug_trust_identity_load(opt_key, opt_cert, &error);
    if (id == NULL) {
        g_printerr("vmaugment-sign: %s\n", error->message);
        return 1;
    }
    mf = g_mapped_file_new(argv[1], FALSE, &error);
    if (mf == NULL) {
        g_printerr("vmaugment-sign: %s\n", error->message);
        return 1;
    }
    data = g_mapped_file_get_bytes(mf);
    sig = vmaug_trust_identity_sign(id, data, &error);
    if (sig == NULL) {
        g_printerr("vmaugment-sign: %s\n", error->message);
        return 1;
    }
    out = opt_output != NULL ? g_strdup(opt_output) :
          g_strconcat(argv[1], ".p7s", NULL);
    if (!g_file_set_contents_full(out, g_bytes_get_data(sig, NULL),
                                  g_bytes_get_size(sig),
                                  G_FILE_SET_CONTENTS_CONSISTENT, 0644,
                                  &error)) {
        g_printerr("vmaugment-sign: %s\n", error->message);
        return 1;
    }
    return 0;
}
