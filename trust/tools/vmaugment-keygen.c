/*
 * vmaugment-keygen: create administrator keys and certificates, and CRLs.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <stdio.h>
#include <stdlib.h>

#include "vmaug-cli.h"
#include "vmaugment-trust.h"

static gchar *opt_name;
static gboolean opt_ca;
static gint opt_days = 365;
static gchar *opt_key;
static gchar *opt_cert;
static gchar *opt_issuer_key;
static gchar *opt_issuer_cert;
static gchar *opt_crl;
static gchar **opt_revoke;

static const GOptionEntry entries[] = {
    { "name", 'n', 0, G_OPTION_ARG_STRING, &opt_name,
      "Common name of the new certificate", "CN" },
    { "ca", 0, 0, G_OPTION_ARG_NONE, &opt_ca,
      "Make a CA certificate (issues signer certificates and CRLs)", NULL },
    { "days", 'd', 0, G_OPTION_ARG_INT, &opt_days,
      "Validity in days (default 365)", "DAYS" },
    { "key", 'k', 0, G_OPTION_ARG_FILENAME, &opt_key,
      "Write the new private key (PKCS#8 PEM) here", "FILE" },
    { "cert", 'c', 0, G_OPTION_ARG_FILENAME, &opt_cert,
      "Write the new certificate (PEM) here", "FILE" },
    { "issuer-key", 0, 0, G_OPTION_ARG_FILENAME, &opt_issuer_key,
      "Key of the issuing CA (default: self-signed)", "FILE" },
    { "issuer-cert", 0, 0, G_OPTION_ARG_FILENAME, &opt_issuer_cert,
      "Certificate of the issuing CA", "FILE" },
    { "crl", 0, 0, G_OPTION_ARG_FILENAME, &opt_crl,
      "Instead of a key, write a CRL signed by the issuer here", "FILE" },
    { "revoke", 'r', 0, G_OPTION_ARG_FILENAME_ARRAY, &opt_revoke,
      "Certificate to list in the CRL (repeatable)", "FILE" },
    { NULL }
};

static gboolean keygen_crl(VmaugTrustIdentity *issuer, GError **error)
{
    g_autoptr(GPtrArray) revoked =
        g_ptr_array_new_with_free_func((GDestroyNotify)g_bytes_unref);
    g_autoptr(GBytes) crl = NULL;
    gint64 now = g_get_real_time() / G_USEC_PER_SEC;

    for (guint i = 0; opt_revoke != NULL && opt_revoke[i] != NULL; i++) {
        GBytes *b = vmaug_trust_read_file(opt_revoke[i],
                                          VMAUG_TRUST_MAX_CERT_FILE_SIZE,
                                          error);
        if (b == NULL) {
            return FALSE;
        }
        g_ptr_array_add(revoked, b);
    }
    crl = vmaug_trust_identity_create_crl(issuer, revoked, now,
                                          now + (gint64)opt_days * 86400,
                                          error);
    if (crl == NULL) {
        return FALSE;
    }
    return g_file_set_contents_full(opt_crl, g_bytes_get_data(crl, NULL),
                                    g_bytes_get_size(crl),
                                    G_FILE_SET_CONTENTS_CONSISTENT, 0644,
                                    error);
}

int main(int argc, char **argv)
{
    static const char *const examples[] = {
        "vmaugment-keygen --name 'Admin' --key admin.key --cert admin.crt",
        "vmaugment-keygen --ca --name 'Site CA' --key ca.key --cert ca.crt",
        "vmaugment-keygen --name 'Alice' --issuer-key ca.key "
        "--issuer-cert ca.crt --key alice.key --cert alice.crt",
        "vmaugment-keygen --crl site.crl --issuer-key ca.key "
        "--issuer-cert ca.crt --revoke alice.crt",
        NULL
    };
    g_autoptr(GOptionContext) ctx = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugTrustIdentity) issuer = NULL;
    g_autoptr(VmaugTrustIdentity) id = NULL;
    gint64 now = g_get_real_time() / G_USEC_PER_SEC;
    int status;

    vmaug_cli_init("vmaugment-keygen");
    ctx = g_option_context_new("- create vmaugment signing identities");
    g_option_context_add_main_entries(ctx, entries, NULL);
    vmaug_cli_setup(ctx, NULL, examples);
    if ((status = vmaug_cli_parse(ctx, &argc, &argv)) >= 0) {
        return status;
    }
    if (argc != 1) {
        return vmaug_cli_usage("no arguments expected, only options");
    }
    if (opt_days <= 0 || opt_days > 36500) {
        return vmaug_cli_usage("--days must be 1..36500");
    }
    if ((opt_issuer_key == NULL) != (opt_issuer_cert == NULL)) {
        return vmaug_cli_usage("--issuer-key and --issuer-cert go together");
    }
    if (opt_crl != NULL && opt_issuer_key == NULL) {
        return vmaug_cli_usage("--crl needs --issuer-key and --issuer-cert");
    }
    if (opt_crl == NULL &&
        (opt_name == NULL || opt_key == NULL || opt_cert == NULL)) {
        return vmaug_cli_usage("--name, --key and --cert are required");
    }
    if (opt_issuer_key != NULL) {
        issuer = vmaug_trust_identity_load(opt_issuer_key, opt_issuer_cert,
                                           &error);
        if (issuer == NULL) {
            return vmaug_cli_fail(error, "issuer %s", opt_issuer_cert);
        }
    }
    if (opt_crl != NULL) {
        if (!keygen_crl(issuer, &error)) {
            return vmaug_cli_fail(error, "CRL %s", opt_crl);
        }
        return VMAUG_EXIT_OK;
    }
    if (g_file_test(opt_key, G_FILE_TEST_EXISTS)) {
        g_printerr("vmaugment-keygen: %s: exists; not overwriting a key\n",
                   opt_key);
        return VMAUG_EXIT_FAILURE;
    }
    id = vmaug_trust_identity_generate(opt_name,
                                       opt_ca ? VMAUG_TRUST_ROLE_CA :
                                       VMAUG_TRUST_ROLE_SIGNER,
                                       now - 60,
                                       now + (gint64)opt_days * 86400,
                                       issuer, &error);
    if (id == NULL ||
        !vmaug_trust_identity_save(id, opt_key, opt_cert, &error)) {
        return vmaug_cli_fail(error, "key %s", opt_key);
    }
    return VMAUG_EXIT_OK;
}
