/*
 * vmaugment-verify: check a detached signature against a trust store.
 *
 * Exit status (docs/cli.rst): 0 trusted; 1 a file cannot be read;
 * 2 usage; 4 refused: a bad signature, an unknown signer, an expired or
 * revoked certificate.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "vmaug-cli.h"
#include "vmaugment-trust.h"

static gchar *opt_trust_dir;
static gchar *opt_signature;
static gboolean opt_json;

static const GOptionEntry entries[] = {
    { "trust-dir", 't', 0, G_OPTION_ARG_FILENAME, &opt_trust_dir,
      "Trusted certificates and CRLs (default: the host's)", "DIR" },
    { "signature", 's', 0, G_OPTION_ARG_FILENAME, &opt_signature,
      "Signature file (default: FILE.p7s)", "SIG" },
    { NULL }
};

/* "tool: FILE: why", and the JSON report when it was asked for. */
static int verify_fail(const char *file, const GError *error)
{
    if (opt_json) {
        g_autoptr(JsonBuilder) b = json_builder_new();

        json_builder_begin_object(b);
        json_builder_set_member_name(b, "file");
        json_builder_add_string_value(b, file);
        vmaug_cli_print_report(b, NULL, error);
    }
    return vmaug_cli_fail(error, "%s", file);
}

int main(int argc, char **argv)
{
    static const char *const examples[] = {
        "vmaugment-verify --trust-dir /etc/vmaugment/trust index.json",
        "vmaugment-verify -t trust --signature index.sig --json index.json",
        NULL
    };
    g_autoptr(GOptionContext) ctx = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugTrustStore) store = NULL;
    g_autoptr(VmaugTrustSigner) signer = NULL;
    g_autoptr(GMappedFile) mf = NULL;
    g_autoptr(GBytes) data = NULL;
    g_autoptr(GBytes) sig = NULL;
    g_autofree gchar *sig_path = NULL;
    int status;

    vmaug_cli_init("vmaugment-verify");
    ctx = g_option_context_new("FILE - verify a vmaugment signature");
    g_option_context_add_main_entries(ctx, entries, NULL);
    vmaug_cli_setup(ctx, &opt_json, examples);
    if ((status = vmaug_cli_parse(ctx, &argc, &argv)) >= 0) {
        return status;
    }
    if (argc != 2) {
        return vmaug_cli_usage("vmaugment-verify [--trust-dir DIR] "
                               "[--signature SIG] FILE");
    }
    if (opt_trust_dir == NULL) {
        opt_trust_dir = g_strdup(vmaug_cli_default_trust_dir());
    }
    store = vmaug_trust_store_new_from_dir(opt_trust_dir, &error);
    if (store == NULL) {
        g_prefix_error(&error, "trust store %s: ", opt_trust_dir);
        return verify_fail(argv[1], error);
    }
    sig_path = opt_signature != NULL ? g_strdup(opt_signature) :
               g_strconcat(argv[1], ".p7s", NULL);
    sig = vmaug_trust_read_file(sig_path, VMAUG_TRUST_MAX_SIGNATURE_SIZE,
                                &error);
    if (sig == NULL) {
        return verify_fail(sig_path, error);
    }
    mf = g_mapped_file_new(argv[1], FALSE, &error);
    if (mf == NULL) {
        return verify_fail(argv[1], error);
    }
    data = g_mapped_file_get_bytes(mf);
    signer = vmaug_trust_store_verify(store, data, sig, &error);
    if (signer == NULL) {
        return verify_fail(argv[1], error);
    }
    if (opt_json) {
        g_autoptr(JsonBuilder) b = json_builder_new();

        json_builder_begin_object(b);
        json_builder_set_member_name(b, "file");
        json_builder_add_string_value(b, argv[1]);
        json_builder_set_member_name(b, "signer");
        json_builder_add_string_value(b, signer->common_name);
        json_builder_set_member_name(b, "subject");
        json_builder_add_string_value(b, signer->subject);
        json_builder_set_member_name(b, "fingerprint");
        json_builder_add_string_value(b, signer->fingerprint);
        vmaug_cli_print_report(b, "trusted", NULL);
        return VMAUG_EXIT_OK;
    }
    g_print("signer: %s\nsubject: %s\nfingerprint: %s\n",
            signer->common_name, signer->subject, signer->fingerprint);
    return VMAUG_EXIT_OK;
}
