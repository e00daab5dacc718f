/*
 * vmaugment-admin: the trust store directory (trust list|add|remove).
 *
 * The directory is what vmaug_trust_store_new_from_dir() loads: *.pem,
 * *.crt, *.cer certificates and *.crl revocation lists.  Certificates are
 * read with the trust library's own parsers, so fingerprints are the ones
 * verification reports, and every change is checked by loading the
 * directory the way the helper will.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "admin.h"
#include "trust-private.h"

typedef struct {
    gchar *file;                /* name within the directory */
    gnutls_x509_crt_t crt;      /* owned by the file's array */
    guint n_in_file;            /* certificates the file holds */
    gchar *fingerprint;
    gchar *subject;
    gchar *common_name;
    gint64 not_before, not_after;
    gboolean ca, self_signed, revoked;
} AdminCert;

typedef struct {
    gchar *dir;
    GPtrArray *certs;           /* AdminCert */
    GPtrArray *crl_files;       /* gchar *, with CRLs trusted CAs signed */
    GPtrArray *blobs;           /* GPtrArray of parsed certs/CRLs, owned */
    GPtrArray *problems;        /* gchar *: files that do not load */
} AdminTrustDir;

static void admin_cert_free(AdminCert *c)
{
    g_free(c->file);
    g_free(c->fingerprint);
    g_free(c->subject);
    g_free(c->common_name);
    g_free(c);
}

static void admin_trust_dir_free(AdminTrustDir *t)
{
    if (t == NULL) {
        return;
    }
    /* A directory that does not read leaves the arrays unmade. */
    g_clear_pointer(&t->certs, g_ptr_array_unref);
    g_clear_pointer(&t->crl_files, g_ptr_array_unref);
    g_clear_pointer(&t->blobs, g_ptr_array_unref);
    g_clear_pointer(&t->problems, g_ptr_array_unref);
    g_free(t->dir);
    g_free(t);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(AdminTrustDir, admin_trust_dir_free)

static gchar *admin_crt_subject(gnutls_x509_crt_t crt)
{
    g_auto(gnutls_datum_t) dn = { NULL, 0 };

    if (gnutls_x509_crt_get_dn3(crt, &dn, 0) < 0) {
        return g_strdup("");
    }
    /* Attacker-chosen text on its way to a terminal. */
    return admin_printable((const gchar *)dn.data, dn.size);
}

static gboolean admin_crt_is_ca(gnutls_x509_crt_t crt)
{
    unsigned int ca = 0;

    return gnutls_x509_crt_get_basic_constraints(crt, NULL, &ca, NULL) >= 0
           && ca;
}

/* Issued by itself, and its own signature holds. */
static gboolean admin_crt_is_self_signed(gnutls_x509_crt_t crt)
{
    unsigned int status = 0;

    return gnutls_x509_crt_check_issuer(crt, crt) &&
           gnutls_x509_crt_verify(crt, &crt, 1,
                                  GNUTLS_VERIFY_DISABLE_TIME_CHECKS,
                                  &status) >= 0 && status == 0;
}

static gboolean admin_crt_signs_code(gnutls_x509_crt_t crt)
{
    for (guint i = 0; i < 64; i++) {
        gchar oid[128];
        size_t len = sizeof(oid);

        if (gnutls_x509_crt_get_key_purpose_oid(crt, i, oid, &len,
                                                NULL) < 0) {
            return FALSE;
        }
        if (strcmp(oid, GNUTLS_KP_CODE_SIGNING) == 0) {
            return TRUE;
        }
    }
    return FALSE;
}

static AdminCert *admin_cert_new(const gchar *file, gnutls_x509_crt_t crt,
                                 guint n_in_file)
{
    AdminCert *c = g_new0(AdminCert, 1);
    g_autofree gchar *cn = trust_crt_common_name(crt);

    c->file = g_strdup(file);
    c->crt = crt;
    c->n_in_file = n_in_file;
    c->fingerprint = trust_crt_fingerprint(crt);
    c->subject = admin_crt_subject(crt);
    c->common_name = admin_printable(cn, -1);
    c->not_before = gnutls_x509_crt_get_activation_time(crt);
    c->not_after = gnutls_x509_crt_get_expiration_time(crt);
    c->ca = admin_crt_is_ca(crt);
    c->self_signed = admin_crt_is_self_signed(crt);
    return c;
}

/*
 * Read every certificate and CRL of @dir.  Files that do not parse are
 * recorded as problems, not fatal: the owner needs to see them.
 */
static AdminTrustDir *admin_trust_dir_read(const gchar *dir, GError **error)
{
    g_autoptr(AdminTrustDir) t = g_new0(AdminTrustDir, 1);
    /* Exactly the files the helper's trust store reads, in its order. */
    g_autoptr(GPtrArray) names = trust_store_dir_files(dir, error);
    g_autoptr(GPtrArray) crls = g_ptr_array_new();
    g_autoptr(GPtrArray) crl_names = g_ptr_array_new();
    g_autoptr(GPtrArray) all = g_ptr_array_new();

    if (names == NULL) {
        g_prefix_error(error, "trust directory: ");
        return NULL;
    }
    t->dir = g_strdup(dir);
    t->certs = g_ptr_array_new_with_free_func((GDestroyNotify)admin_cert_free);
    t->crl_files = g_ptr_array_new_with_free_func(g_free);
    t->blobs = g_ptr_array_new_with_free_func(
        (GDestroyNotify)g_ptr_array_unref);
    t->problems = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; i < names->len; i++) {
        const gchar *name = g_ptr_array_index(names, i);
        g_autofree gchar *path = g_build_filename(dir, name, NULL);
        g_autoptr(GError) local = NULL;
        g_autoptr(GBytes) blob = NULL;
        GPtrArray *items = NULL;
        gboolean is_crl = trust_store_file_is_crl(name);

        blob = vmaug_trust_read_file(path, VMAUG_TRUST_MAX_CERT_FILE_SIZE,
                                     &local);
        if (blob != NULL) {
            items = is_crl ?
                trust_import_crls(blob, VMAUG_TRUST_MAX_STORE_FILES, &local) :
                trust_import_certs(blob, VMAUG_TRUST_MAX_STORE_FILES,
                                   &local);
        }
        if (items == NULL) {
            g_ptr_array_add(t->problems,
                            g_strdup_printf("%s: %s", name, local->message));
            continue;
        }
        g_ptr_array_add(t->blobs, items);
        for (guint j = 0; j < items->len; j++) {
            if (is_crl) {
                g_ptr_array_add(crls, g_ptr_array_index(items, j));
                g_ptr_array_add(crl_names, (gpointer)name);
            } else {
                g_ptr_array_add(all, g_ptr_array_index(items, j));
                g_ptr_array_add(t->certs,
                                admin_cert_new(name,
                                               g_ptr_array_index(items, j),
                                               items->len));
            }
        }
    }
    /* As the trust store does: only CRLs a trusted certificate signed
     * count, and an outdated one still revokes what it lists. */
    for (guint i = 0; i < crls->len; i++) {
        gnutls_x509_crl_t crl = g_ptr_array_index(crls, i);
        unsigned int status = 0;
        int rc = gnutls_x509_crl_verify(crl,
                                        (gnutls_x509_crt_t *)all->pdata,
                                        all->len, 0, &status);

        status &= ~(GNUTLS_CERT_REVOCATION_DATA_SUPERSEDED |
                    GNUTLS_CERT_EXPIRED);
        if (rc < 0 || status != 0) {
            g_auto(gnutls_datum_t) why = { NULL, 0 };

            gnutls_certificate_verification_status_print(status,
                                                         GNUTLS_CRT_X509,
                                                         &why, 0);
            g_ptr_array_add(t->problems,
                            g_strdup_printf("%s: ignored, as the helper "
                                            "ignores it: %s",
                                            (gchar *)g_ptr_array_index(
                                                crl_names, i),
                                            rc < 0 ? gnutls_strerror(rc) :
                                            why.data != NULL ?
                                            (const gchar *)why.data : "?"));
            continue;
        }
        g_ptr_array_add(t->crl_files,
                        g_strdup(g_ptr_array_index(crl_names, i)));
        for (guint j = 0; j < t->certs->len; j++) {
            AdminCert *c = g_ptr_array_index(t->certs, j);

            if (gnutls_x509_crt_check_revocation(c->crt, &crl, 1) == 1) {
                c->revoked = TRUE;
            }
        }
    }
    return g_steal_pointer(&t);
}

static const gchar *admin_cert_state(const AdminCert *c)
{
    gint64 now = g_get_real_time() / G_USEC_PER_SEC;

    if (c->revoked) {
        return "revoked";
    }
    if (now > c->not_after) {
        return "expired";
    }
    if (now < c->not_before) {
        return "not-yet-valid";
    }
    return "valid";
}

/* Member @name: an array of the strings in @strings. */
static void admin_json_strings(JsonBuilder *b, const gchar *name,
                               GPtrArray *strings)
{
    json_builder_set_member_name(b, name);
    json_builder_begin_array(b);
    for (guint i = 0; i < strings->len; i++) {
        json_builder_add_string_value(b, g_ptr_array_index(strings, i));
    }
    json_builder_end_array(b);
}

static void admin_cert_json(JsonBuilder *b, const AdminCert *c)
{
    g_autofree gchar *nb = admin_format_time(c->not_before);
    g_autofree gchar *na = admin_format_time(c->not_after);

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "file");
    json_builder_add_string_value(b, c->file);
    json_builder_set_member_name(b, "subject");
    json_builder_add_string_value(b, c->subject);
    json_builder_set_member_name(b, "common_name");
    json_builder_add_string_value(b, c->common_name);
    json_builder_set_member_name(b, "fingerprint");
    json_builder_add_string_value(b, c->fingerprint);
    json_builder_set_member_name(b, "not_before");
    json_builder_add_string_value(b, nb);
    json_builder_set_member_name(b, "expires");
    json_builder_add_string_value(b, na);
    json_builder_set_member_name(b, "ca");
    json_builder_add_boolean_value(b, c->ca);
    json_builder_set_member_name(b, "self_signed");
    json_builder_add_boolean_value(b, c->self_signed);
    json_builder_set_member_name(b, "revoked");
    json_builder_add_boolean_value(b, c->revoked);
    json_builder_set_member_name(b, "state");
    json_builder_add_string_value(b, admin_cert_state(c));
    json_builder_end_object(b);
}

static int admin_trust_list(const gchar *dir, gboolean json)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(AdminTrustDir) t = admin_trust_dir_read(dir, &error);
    g_autoptr(VmaugTrustStore) check = NULL;
    g_autoptr(GError) load_error = NULL;

    if (t == NULL) {
        return admin_fail_error(error);
    }
    /* Whether the helper could start with this directory at all. */
    check = vmaug_trust_store_new_from_dir(dir, &load_error);
    if (json) {
        g_autoptr(JsonBuilder) b = json_builder_new();
        g_autoptr(JsonNode) root = NULL;

        json_builder_begin_object(b);
        json_builder_set_member_name(b, "trust_dir");
        json_builder_add_string_value(b, dir);
        json_builder_set_member_name(b, "certificates");
        json_builder_begin_array(b);
        for (guint i = 0; i < t->certs->len; i++) {
            admin_cert_json(b, g_ptr_array_index(t->certs, i));
        }
        json_builder_end_array(b);
        admin_json_strings(b, "crls", t->crl_files);
        admin_json_strings(b, "problems", t->problems);
        json_builder_set_member_name(b, "loads");
        json_builder_add_boolean_value(b, check != NULL);
        json_builder_end_object(b);
        root = json_builder_get_root(b);
        admin_print_json(root);
    } else {
        if (t->certs->len == 0) {
            g_print("no certificates in %s\n", dir);
        } else {
            g_print("%-64s %-20s %-6s %-13s %s\n", "FINGERPRINT", "EXPIRES",
                    "ROLE", "STATE", "SUBJECT (FILE)");
        }
        for (guint i = 0; i < t->certs->len; i++) {
            AdminCert *c = g_ptr_array_index(t->certs, i);
            g_autofree gchar *na = admin_format_time(c->not_after);
            g_autofree gchar *file = admin_printable(c->file, -1);

            g_print("%-64s %-20s %-6s %-13s %s (%s)\n", c->fingerprint, na,
                    c->ca ? "ca" : "signer", admin_cert_state(c), c->subject,
                    file);
        }
        for (guint i = 0; i < t->crl_files->len; i++) {
            g_autofree gchar *file =
                admin_printable(g_ptr_array_index(t->crl_files, i), -1);

            g_print("revocation list %s\n", file);
        }
        for (guint i = 0; i < t->problems->len; i++) {
            g_autofree gchar *p =
                admin_printable(g_ptr_array_index(t->problems, i), -1);

            g_print("problem: %s\n", p);
        }
    }
    if (check == NULL) {
        return admin_fail(ADMIN_EXIT_FAILED, "%s does not load, the "
                          "helper would refuse to start: %s", dir,
                          load_error->message);
    }
    return ADMIN_EXIT_OK;
}

static void admin_fsync_dir(const gchar *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/*
 * What the directory may trust: a CA certificate, or a self-signed
 * administrator certificate (its own CA) that may sign code.  A signer
 * certificate some CA issued is refused: trusting the CA is the intended
 * way, and the CA's CRLs then apply to it.
 */
static gboolean admin_trust_check_new(gnutls_x509_crt_t crt,
                                      const gchar *path, GError **error)
{
    gint64 now = g_get_real_time() / G_USEC_PER_SEC;
    gboolean ca = admin_crt_is_ca(crt);
    gboolean self_signed = admin_crt_is_self_signed(crt);

    if (!ca && !self_signed) {
        g_set_error(error, VMAUG_TRUST_ERROR, VMAUG_TRUST_ERROR_INVALID,
                    "%s is not a CA certificate nor a self-signed "
                    "administrator certificate: trust the CA that issued "
                    "it instead", path);
        return FALSE;
    }
    if (!ca && !admin_crt_signs_code(crt)) {
        g_set_error(error, VMAUG_TRUST_ERROR, VMAUG_TRUST_ERROR_INVALID,
                    "%s is not a CA certificate and may not sign code "
                    "(no codeSigning key purpose)", path);
        return FALSE;
    }
    if (now > (gint64)gnutls_x509_crt_get_expiration_time(crt)) {
        g_autofree gchar *t =
            admin_format_time(gnutls_x509_crt_get_expiration_time(crt));

        g_set_error(error, VMAUG_TRUST_ERROR, VMAUG_TRUST_ERROR_EXPIRED,
                    "%s expired at %s", path, t);
        return FALSE;
    }
    if (now < (gint64)gnutls_x509_crt_get_activation_time(crt)) {
        g_set_error(error, VMAUG_TRUST_ERROR, VMAUG_TRUST_ERROR_EXPIRED,
                    "%s is not valid yet", path);
        return FALSE;
    }
    return TRUE;
}

static gboolean admin_trust_add(const gchar *dir, const gchar *path,
                                GError **error)
{
    g_autoptr(AdminTrustDir) t = NULL;
    g_autoptr(GBytes) blob = NULL;
    g_autoptr(GPtrArray) crts = NULL;
    g_autoptr(VmaugTrustStore) check = NULL;
    g_autoptr(GBytes) pem_bytes = NULL;
    g_auto(gnutls_datum_t) pem = { NULL, 0 };
    g_autofree gchar *fp = NULL;
    g_autofree gchar *name = NULL;
    g_autofree gchar *dest = NULL;
    g_autofree gchar *subject = NULL;
    gnutls_x509_crt_t crt;
    int rc;

    blob = vmaug_trust_read_file(path, VMAUG_TRUST_MAX_CERT_FILE_SIZE, error);
    if (blob == NULL) {
        g_prefix_error(error, "%s: ", path);
        return FALSE;
    }
    /* Keys do not belong in a directory everyone may read. */
    if (g_strstr_len(g_bytes_get_data(blob, NULL), g_bytes_get_size(blob),
                     "PRIVATE KEY-----") != NULL) {
        g_set_error(error, VMAUG_TRUST_ERROR, VMAUG_TRUST_ERROR_INVALID,
                    "%s holds a private key: give the certificate alone",
                    path);
        return FALSE;
    }
    crts = trust_import_certs(blob, VMAUG_TRUST_MAX_STORE_FILES, error);
    if (crts == NULL) {
        g_prefix_error(error, "%s is not a certificate: ", path);
        return FALSE;
    }
    if (crts->len != 1) {
        g_set_error(error, VMAUG_TRUST_ERROR, VMAUG_TRUST_ERROR_INVALID,
                    "%s holds %u certificates: add them one at a time",
                    path, crts->len);
        return FALSE;
    }
    crt = g_ptr_array_index(crts, 0);
    if (!admin_trust_check_new(crt, path, error)) {
        return FALSE;
    }
    t = admin_trust_dir_read(dir, error);
    if (t == NULL) {
        return FALSE;
    }
    fp = trust_crt_fingerprint(crt);
    for (guint i = 0; i < t->certs->len; i++) {
        AdminCert *c = g_ptr_array_index(t->certs, i);

        if (g_strcmp0(c->fingerprint, fp) == 0) {
            g_set_error(error, VMAUG_TRUST_ERROR, VMAUG_TRUST_ERROR_INVALID,
                        "%s is already trusted (%s)", fp, c->file);
            return FALSE;
        }
    }
    /* Normalised to one PEM certificate, whatever came around it. */
    rc = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &pem);
    if (rc < 0) {
        return trust_gnutls_error(error, VMAUG_TRUST_ERROR_FAILED, rc,
                                  "certificate export");
    }
    pem_bytes = g_bytes_new(pem.data, pem.size);
    /* The directory with the new certificate must load as the helper
     * loads it, or nothing is written. */
    check = vmaug_trust_store_new_from_dir(dir, error);
    if (check == NULL) {
        g_prefix_error(error, "%s does not load, fix it first: ", dir);
        return FALSE;
    }
    if (!vmaug_trust_store_add_certificate(check, pem_bytes, error)) {
        return FALSE;
    }
    name = g_strconcat(fp, ".pem", NULL);
    dest = g_build_filename(dir, name, NULL);
    if (!g_file_set_contents_full(dest, (const gchar *)pem.data, pem.size,
                                  G_FILE_SET_CONTENTS_CONSISTENT |
                                  G_FILE_SET_CONTENTS_DURABLE, 0644,
                                  error)) {
        return FALSE;
    }
    admin_fsync_dir(dir);
    subject = admin_crt_subject(crt);
    g_print("trusted %s [%s] as %s\n", subject, fp, name);
    return TRUE;
}

/* "AB:CD:..." or "abcd..." -> "abcd...", NULL when not hex. */
static gchar *admin_trust_normalise_fp(const gchar *text)
{
    GString *s = g_string_new(NULL);

    for (const gchar *p = text; *p != '\0'; p++) {
        if (*p == ':') {
            continue;
        }
        if (!g_ascii_isxdigit(*p)) {
            g_string_free(s, TRUE);
            return NULL;
        }
        g_string_append_c(s, g_ascii_tolower(*p));
    }
    return g_string_free(s, FALSE);
}

static gboolean admin_trust_remove(const gchar *dir, const gchar *text,
                                   GError **error)
{
    g_autoptr(AdminTrustDir) t = NULL;
    g_autofree gchar *fp = admin_trust_normalise_fp(text);
    g_autofree gchar *path = NULL;
    AdminCert *found = NULL;

    /* A prefix is handy, but too short a one could hit the wrong key. */
    if (fp == NULL || strlen(fp) < 16 || strlen(fp) > 64) {
        g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "%s is not a SHA-256 fingerprint (or a prefix of at "
                    "least 16 hex digits)", text);
        return FALSE;
    }
    t = admin_trust_dir_read(dir, error);
    if (t == NULL) {
        return FALSE;
    }
    for (guint i = 0; i < t->certs->len; i++) {
        AdminCert *c = g_ptr_array_index(t->certs, i);

        if (!g_str_has_prefix(c->fingerprint, fp)) {
            continue;
        }
        if (found != NULL) {
            g_set_error(error, VMAUG_TRUST_ERROR, VMAUG_TRUST_ERROR_INVALID,
                        "%s matches more than one certificate", text);
            return FALSE;
        }
        found = c;
    }
    if (found == NULL) {
        g_set_error(error, VMAUG_TRUST_ERROR, VMAUG_TRUST_ERROR_INVALID,
                    "no certificate %s in %s", text, dir);
        return FALSE;
    }
    if (found->n_in_file != 1) {
        g_set_error(error, VMAUG_TRUST_ERROR, VMAUG_TRUST_ERROR_INVALID,
                    "%s holds %u certificates: edit it by hand",
                    found->file, found->n_in_file);
        return FALSE;
    }
    path = g_build_filename(dir, found->file, NULL);
    if (g_unlink(path) < 0) {
        int saved = errno;

        g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(saved),
                    "cannot remove %s: %s", path, g_strerror(saved));
        return FALSE;
    }
    admin_fsync_dir(dir);
    g_print("removed %s [%s] (%s)\n", found->subject, found->fingerprint,
            found->file);
    return TRUE;
}

int admin_cmd_trust(int argc, char **argv)
{
    g_autoptr(GOptionContext) ctx = g_option_context_new(
        "list | add CERT.pem | remove FINGERPRINT - the trusted "
        "certificates");
    g_autoptr(GError) error = NULL;
    g_autofree gchar *dir = NULL;
    gboolean json = FALSE;
    const GOptionEntry entries[] = {
        { "trust-dir", 't', 0, G_OPTION_ARG_FILENAME, &dir,
          "Trusted certificates and CRLs (default: the host's)", "DIR" },
        { NULL }
    };
    gboolean ok;

    g_option_context_set_description(ctx,
        "add accepts a CA certificate or a self-signed administrator "
        "certificate\n(codeSigning), valid now; it is stored as "
        "<fingerprint>.pem.\n");
    if (!admin_parse(ctx, entries, &json, &argc, &argv)) {
        return admin_parse_exit;
    }
    if (dir == NULL) {
        dir = g_strdup(vmaug_cli_default_trust_dir());
    }
    if (argc == 2 && g_strcmp0(argv[1], "list") == 0) {
        return admin_trust_list(dir, json);
    }
    if (argc == 3 && g_strcmp0(argv[1], "add") == 0) {
        ok = admin_trust_add(dir, argv[2], &error);
    } else if (argc == 3 && g_strcmp0(argv[1], "remove") == 0) {
        ok = admin_trust_remove(dir, argv[2], &error);
    } else {
        return admin_fail(ADMIN_EXIT_USAGE, "trust takes list, add CERT or "
                          "remove FINGERPRINT");
    }
    if (!ok) {
        return admin_fail_error(error);
    }
    return ADMIN_EXIT_OK;
}
