/*
 * vmaugment-sign: write a detached PKCS#7 signature of a file.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "vmaug-cli.h"
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
    static const char *const examples[] = {
        "vmaugment-sign --key admin.key --cert admin.crt index.json",
        "vmaugment-sign -k admin.key -c admin.crt -o index.sig index.json",
        NULL
    };
    g_autoptr(GOptionContext) ctx = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugTrustIdentity) id = NULL;
    g_autoptr(GMappedFile) mf = NULL;
    g_autoptr(GBytes) data = NULL;
    g_autoptr(GBytes) sig = NULL;
    g_autofree gchar *out = NULL;
    int status;

    vmaug_cli_init("vmaugment-sign");
    ctx = g_option_context_new("FILE - sign a file for vmaugment");
    g_option_context_add_main_entries(ctx, entries, NULL);
    vmaug_cli_setup(ctx, NULL, examples);
    if ((status = vmaug_cli_parse(ctx, &argc, &argv)) >= 0) {
        return status;
    }
    if (argc != 2 || opt_key == NULL || opt_cert == NULL) {
        return vmaug_cli_usage("vmaugment-sign --key KEY --cert CERT "
                               "[--output SIG] FILE");
    }
    id = vmaug_trust_identity_load(opt_key, opt_cert, &error);
    if (id == NULL) {
        return vmaug_cli_fail(error, "key %s", opt_key);
    }
    mf = g_mapped_file_new(argv[1], FALSE, &error);
    if (mf == NULL) {
        return vmaug_cli_fail(error, "%s", argv[1]);
    }
    data = g_mapped_file_get_bytes(mf);
    sig = vmaug_trust_identity_sign(id, data, &error);
    if (sig == NULL) {
        return vmaug_cli_fail(error, "%s", argv[1]);
    }
    out = opt_output != NULL ? g_strdup(opt_output) :
          g_strconcat(argv[1], ".p7s", NULL);
    if (!g_file_set_contents_full(out, g_bytes_get_data(sig, NULL),
                                  g_bytes_get_size(sig),
                                  G_FILE_SET_CONTENTS_CONSISTENT, 0644,
                                  &error)) {
        return vmaug_cli_fail(error, "%s", out);
    }
    return VMAUG_EXIT_OK;
}
