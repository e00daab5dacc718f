/*
 * vmaugment-verify: check a detached signature against a trust store.
 *
 * Exit status: 0 trusted; 1 usage or I/O error; 2 malformed or bad
 * signature; 3 unknown signer; 4 expired certificate; 5 revoked.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "vmaugment-trust.h"

static gchar *opt_trust_dir;
static gchar *opt_signature;

static const GOptionEntry entries[] = {
    { "trust-dir", 't', 0, G_OPTION_ARG_FILENAME, &opt_trust_dir,
      "Directory of trusted certificates and CRLs", "DIR" },
    { "signature", 's', 0, G_OPTION_ARG_FILENAME, &opt_signature,
      "Signature file (default: FILE.p7s)", "SIG" },
    { NULL }
};

static int verify_exit_code(const GError *error)
{
    if (error->domain != VMAUG_TRUST_ERROR) {
        return 1;
    }
    switch (error->code) {
    case VMAUG_TRUST_ERROR_INVALID:
    case VMAUG_TRUST_ERROR_BAD_SIGNATURE:
        return 2;
    case VMAUG_TRUST_ERROR_UNKNOWN_SIGNER:
        return 3;
    case VMAUG_TRUST_ERROR_EXPIRED:
        return 4;
    case VMAUG_TRUST_ERROR_REVOKED:
        return 5;
    default:
        return 1;
    }
}

int main(int argc, char **argv)
{
    g_autoptr(GOptionContext) ctx = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugTrustStore) store = NULL;
    g_autoptr(VmaugTrustSigner) signer = NULL;
    g_autoptr(GMappedFile) mf = NULL;
    g_autoptr(GBytes) data = NULL;
    g_autoptr(GBytes) sig = NULL;
    g_autofree gchar *sig_path = NULL;

    ctx = g_option_context_new("FILE - verify a vmaugment signature");
    g_option_context_add_main_entries(ctx, entries, NULL);
    if (!g_option_context_parse(ctx, &argc, &argv, &error)) {
        g_printerr("vmaugment-verify: %s\n", error->message);
        return 1;
    }
    if (argc != 2 || opt_trust_dir == NULL) {
        g_printerr("vmaugment-verify: usage: vmaugment-verify --trust-dir "
                   "DIR [--signature SIG] FILE\n");
        return 1;
    }
    store = vmaug_trust_store_new_from_dir(opt_trust_dir, &error);
    if (store == NULL) {
        g_printerr("vmaugment-verify: %s\n", error->message);
        return 1;
    }
    sig_path = opt_signature != NULL ? g_strdup(opt_signature) :
               g_strconcat(argv[1], ".p7s", NULL);
    sig = vmaug_trust_read_file(sig_path, VMAUG_TRUST_MAX_SIGNATURE_SIZE,
                                &error);
    if (sig == NULL) {
        g_printerr("vmaugment-verify: %s\n", error->message);
        return verify_exit_code(error);
    }
    mf = g_mapped_file_new(argv[1], FALSE, &error);
    if (mf == NULL) {
        g_printerr("vmaugment-verify: %s\n", error->message);
        return 1;
    }
    data = g_mapped_file_get_bytes(mf);
    signer = vmaug_trust_store_verify(store, data, sig, &error);
    if (signer == NULL) {
        g_printerr("vmaugment-verify: %s: %s\n", argv[1], error->message);
        return verify_exit_code(error);
    }
    g_print("signer: %s\nsubject: %s\nfingerprint: %s\n",
            signer->common_name, signer->subject, signer->fingerprint);
    return 0;
}
