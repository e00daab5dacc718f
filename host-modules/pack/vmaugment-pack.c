/*
 * vmaugment-pack: build, inspect, verify and install module packages.
 *
 *   vmaugment-pack create --manifest M.json --payload mod.so \
 *                         --key admin.key --cert admin.crt -o mod.vmod
 *   vmaugment-pack inspect mod.vmod
 *   vmaugment-pack verify --trust-dir DIR mod.vmod
 *   vmaugment-pack install --store DIR --trust-dir DIR [--policy P] mod.vmod
 *   vmaugment-pack list --store DIR
 *
 * --json reports on stdout, also on failure.  Exit status (docs/cli.rst):
 * 0 done, 1 failed, 2 usage, 4 refused (signature or policy).
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "host-common.h"
#include "store.h"
#include "vmaug-cli.h"

static gchar *opt_manifest;
static gchar *opt_payload;
static gchar *opt_key;
static gchar *opt_cert;
static gchar *opt_output;
static gchar *opt_trust_dir;
static gchar *opt_store;
static gchar *opt_policy;
static gchar *opt_version;
static gboolean opt_json;

static const GOptionEntry entries[] = {
    { "manifest", 'm', 0, G_OPTION_ARG_FILENAME, &opt_manifest,
      "create: manifest template (JSON, payload filled in)", "FILE" },
    { "payload", 'p', 0, G_OPTION_ARG_FILENAME, &opt_payload,
      "create: the module's shared object", "FILE" },
    { "key", 'k', 0, G_OPTION_ARG_FILENAME, &opt_key,
      "create: signing key", "FILE" },
    { "cert", 'c', 0, G_OPTION_ARG_FILENAME, &opt_cert,
      "create: signing certificate", "FILE" },
    { "set-version", 0, 0, G_OPTION_ARG_STRING, &opt_version,
      "create: version to put in the manifest", "VERSION" },
    { "output", 'o', 0, G_OPTION_ARG_FILENAME, &opt_output,
      "create: package to write", "FILE" },
    { "trust-dir", 't', 0, G_OPTION_ARG_FILENAME, &opt_trust_dir,
      "verify/install: trusted certificates and CRLs (default: the "
      "host's)", "DIR" },
    { "store", 's', 0, G_OPTION_ARG_FILENAME, &opt_store,
      "install/list: module store directory", "DIR" },
    { "policy", 0, 0, G_OPTION_ARG_FILENAME, &opt_policy,
      "install: host owner's policy (JSON)", "FILE" },
    { NULL }
};

static GBytes *pack_read(const gchar *path, GError **error)
{
    return vmaug_trust_read_file(path, VMAUG_MAX_UPLOAD_SIZE, error);
}

/* A command line that does not fit the command: exit status 2. */
static gboolean pack_usage(GError **error, const gchar *what)
{
    g_set_error(error, VMAUG_CLI_USAGE_ERROR, VMAUG_CLI_USAGE_ERROR_CODE,
                "%s", what);
    return FALSE;
}

/* {"status": WORD, MEMBER: VALUE...} on stdout for --json. */
static void pack_report(const gchar *status, ...) G_GNUC_NULL_TERMINATED;
static void pack_report(const gchar *status, ...)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    const gchar *name;
    va_list ap;

    json_builder_begin_object(b);
    va_start(ap, status);
    while ((name = va_arg(ap, const gchar *)) != NULL) {
        json_builder_set_member_name(b, name);
        json_builder_add_string_value(b, va_arg(ap, const gchar *));
    }
    va_end(ap);
    vmaug_cli_print_report(b, status, NULL);
}

/* What the helper's loader checks of the payload, before anything is
 * written: a package it would never load is not made. */
static gboolean pack_check_payload(GBytes *pkg, GBytes *payload,
                                   GError **error)
{
    const guint8 *p = g_bytes_get_data(pkg, NULL);
    guint32 mlen = GUINT32_FROM_LE(*(const guint32 *)(p + 12));
    g_autoptr(VmaugManifest) m = NULL;

    m = vmaug_manifest_parse((const gchar *)p + VMAUG_PKG_HEADER_SIZE, mlen,
                             error);
    if (m == NULL) {
        return FALSE;
    }
    if (!vmaug_payload_check(payload, m->arch, error)) {
        g_prefix_error(error, "%s: ", opt_payload);
        return FALSE;
    }
    return TRUE;
}

static gboolean pack_create(GError **error)
{
    g_autoptr(VmaugTrustIdentity) id = NULL;
    g_autoptr(GBytes) manifest = NULL;
    g_autoptr(GBytes) payload = NULL;
    g_autoptr(GBytes) pkg = NULL;
    g_autofree gchar *json = NULL;

    if (opt_manifest == NULL || opt_payload == NULL || opt_key == NULL ||
        opt_cert == NULL || opt_output == NULL) {
        return pack_usage(error, "--manifest --payload --key --cert "
                          "--output are required");
    }
    id = vmaug_trust_identity_load(opt_key, opt_cert, error);
    manifest = id != NULL ? pack_read(opt_manifest, error) : NULL;
    payload = manifest != NULL ? pack_read(opt_payload, error) : NULL;
    if (payload == NULL) {
        return FALSE;
    }
    json = g_strndup(g_bytes_get_data(manifest, NULL),
                     g_bytes_get_size(manifest));
    pkg = vmaug_package_build(json, opt_version, payload, id, error);
    if (pkg == NULL) {
        g_prefix_error(error, "%s: ", opt_manifest);
        return FALSE;
    }
    if (!pack_check_payload(pkg, payload, error) ||
        !g_file_set_contents_full(opt_output, g_bytes_get_data(pkg, NULL),
                                  g_bytes_get_size(pkg),
                                  G_FILE_SET_CONTENTS_CONSISTENT, 0644,
                                  error)) {
        return FALSE;
    }
    if (opt_json) {
        pack_report("created", "package", opt_output, NULL);
    }
    return TRUE;
}

static gboolean pack_inspect(const gchar *path, GError **error)
{
    g_autoptr(GBytes) file = pack_read(path, error);
    const guint8 *p;
    gsize size;
    guint32 mlen;

    if (file == NULL) {
        return FALSE;
    }
    p = g_bytes_get_data(file, &size);
    if (size < VMAUG_PKG_HEADER_SIZE || memcmp(p, VMAUG_PKG_MAGIC, 8) != 0) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "not a vmaugment package");
        return FALSE;
    }
    mlen = GUINT32_FROM_LE(*(const guint32 *)(p + 12));
    if (mlen > VMAUG_PKG_MAX_MANIFEST ||
        mlen > size - VMAUG_PKG_HEADER_SIZE) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "manifest length out of range");
        return FALSE;
    }
    if (opt_json) {
        g_autofree gchar *text = g_strndup((const gchar *)p +
                                           VMAUG_PKG_HEADER_SIZE, mlen);

        /* As text: it is unverified, so it is not interpreted here. */
        pack_report("unverified", "package", path, "manifest", text, NULL);
        return TRUE;
    }
    /* Shown as text, unverified: inspect is for humans. */
    g_print("# unverified manifest\n%.*s\n", (int)mlen,
            (const gchar *)p + VMAUG_PKG_HEADER_SIZE);
    return TRUE;
}

static VmaugTrustStore *pack_trust(GError **error)
{
    const gchar *dir = opt_trust_dir != NULL ? opt_trust_dir :
                       vmaug_cli_default_trust_dir();
    VmaugTrustStore *trust = vmaug_trust_store_new_from_dir(dir, error);

    if (trust == NULL) {
        g_prefix_error(error, "trust store %s: ", dir);
    }
    return trust;
}

static gboolean pack_verify(const gchar *path, GError **error)
{
    g_autoptr(VmaugTrustStore) trust = pack_trust(error);
    g_autoptr(GBytes) file = NULL;
    g_autoptr(VmaugPackage) pkg = NULL;

    if (trust == NULL || (file = pack_read(path, error)) == NULL) {
        return FALSE;
    }
    pkg = vmaug_package_verify(file, trust, VMAUG_MAX_UPLOAD_SIZE, error);
    if (pkg == NULL) {
        return FALSE;
    }
    if (opt_json) {
        pack_report("verified", "package", path,
                    "name", pkg->manifest->name,
                    "version", pkg->manifest->version,
                    "kind", vmaug_kind_to_string(pkg->manifest->kind),
                    "signer", pkg->signer->common_name,
                    "signer_fingerprint", pkg->signer->fingerprint, NULL);
        return TRUE;
    }
    g_print("%s %s (%s) signed by %s [%s]\n", pkg->manifest->name,
            pkg->manifest->version, vmaug_kind_to_string(pkg->manifest->kind),
            pkg->signer->common_name, pkg->signer->fingerprint);
    return TRUE;
}

static VmaugStore *pack_store(VmaugTrustStore *trust, VmaugPolicy *policy,
                              GError **error)
{
    return vmaug_store_open(opt_store != NULL ? opt_store :
                            vmaug_cli_default_store_dir(), trust, policy,
                            error);
}

static gboolean pack_install(const gchar *path, GError **error)
{
    g_autoptr(VmaugTrustStore) trust = pack_trust(error);
    g_autoptr(VmaugPolicy) policy = NULL;
    g_autoptr(VmaugStore) store = NULL;
    g_autoptr(GBytes) file = NULL;
    g_autoptr(VmaugManifest) m = NULL;
    gboolean already;

    if (trust == NULL) {
        return FALSE;
    }
    policy = opt_policy != NULL ? vmaug_policy_load(opt_policy, error) :
             vmaug_policy_new_default();
    if (policy == NULL || (store = pack_store(trust, policy, error)) == NULL) {
        return FALSE;
    }
    file = vmaug_trust_read_file(path, policy->max_package_size, error);
    if (file == NULL) {
        return FALSE;
    }
    m = vmaug_store_install_full(store, file, "vmaugment-pack", &already,
                                 error);
    if (m == NULL) {
        return FALSE;
    }
    if (opt_json) {
        pack_report(already ? "already-stored" : "installed",
                    "package", path, "name", m->name, "version", m->version,
                    NULL);
        return TRUE;
    }
    g_print("%s %s %s\n", already ? "already stored" : "installed", m->name,
            m->version);
    return TRUE;
}

static gboolean pack_list(GError **error)
{
    g_autoptr(VmaugTrustStore) trust = vmaug_trust_store_new();
    g_autoptr(VmaugPolicy) policy = vmaug_policy_new_default();
    g_autoptr(VmaugStore) store = NULL;
    g_autoptr(GPtrArray) list = NULL;
    const gchar *dir = opt_store != NULL ? opt_store :
                       vmaug_cli_default_store_dir();

    /* Only install makes a store: a mistyped --store lists nothing. */
    if (!g_file_test(dir, G_FILE_TEST_IS_DIR)) {
        g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_NOENT,
                    "no module store at %s", dir);
        return FALSE;
    }
    store = pack_store(trust, policy, error);
    if (store == NULL) {
        return FALSE;
    }
    list = vmaug_store_list(store);
    if (opt_json) {
        g_autoptr(JsonBuilder) b = json_builder_new();

        json_builder_begin_object(b);
        json_builder_set_member_name(b, "modules");
        json_builder_begin_array(b);
        for (guint i = 0; i < list->len; i++) {
            VmaugStoreEntry *e = g_ptr_array_index(list, i);

            json_builder_begin_object(b);
            json_builder_set_member_name(b, "name");
            json_builder_add_string_value(b, e->name);
            json_builder_set_member_name(b, "version");
            json_builder_add_string_value(b, e->version);
            json_builder_set_member_name(b, "sha256");
            json_builder_add_string_value(b, e->sha256);
            json_builder_end_object(b);
        }
        json_builder_end_array(b);
        vmaug_cli_print_report(b, "ok", NULL);
        return TRUE;
    }
    for (guint i = 0; i < list->len; i++) {
        VmaugStoreEntry *e = g_ptr_array_index(list, i);

        g_print("%s %s %s\n", e->name, e->version, e->sha256);
    }
    return TRUE;
}

int main(int argc, char **argv)
{
    static const char *const examples[] = {
        "vmaugment-pack create --manifest manifest.json --payload "
        "vmaug-echo.so --key admin.key --cert admin.crt -o echo.vmod",
        "vmaugment-pack inspect echo.vmod",
        "vmaugment-pack verify --trust-dir /etc/vmaugment/trust echo.vmod",
        "vmaugment-pack install --store DIR --json echo.vmod",
        NULL
    };
    g_autoptr(GOptionContext) ctx = NULL;
    g_autoptr(GError) error = NULL;
    const gchar *cmd;
    gboolean ok;
    int status;

    vmaug_cli_init("vmaugment-pack");
    ctx = g_option_context_new("create|inspect|verify|install|list "
                               "[PACKAGE] - vmaugment module packages");
    g_option_context_add_main_entries(ctx, entries, NULL);
    vmaug_cli_setup(ctx, &opt_json, examples);
    if ((status = vmaug_cli_parse(ctx, &argc, &argv)) >= 0) {
        return status;
    }
    if (argc < 2) {
        return vmaug_cli_usage("a command is required");
    }
    cmd = argv[1];
    if (g_strcmp0(cmd, "create") == 0) {
        ok = argc == 2 ? pack_create(&error) :
             pack_usage(&error, "options only");
    } else if (g_strcmp0(cmd, "list") == 0) {
        ok = argc == 2 ? pack_list(&error) :
             pack_usage(&error, "options only");
    } else if (g_strcmp0(cmd, "inspect") != 0 &&
               g_strcmp0(cmd, "verify") != 0 &&
               g_strcmp0(cmd, "install") != 0) {
        return vmaug_cli_usage("unknown command %s", cmd);
    } else if (argc != 3) {
        ok = pack_usage(&error, "takes one package");
    } else if (g_strcmp0(cmd, "inspect") == 0) {
        ok = pack_inspect(argv[2], &error);
    } else if (g_strcmp0(cmd, "verify") == 0) {
        ok = pack_verify(argv[2], &error);
    } else {
        ok = pack_install(argv[2], &error);
    }
    if (!ok) {
        if (opt_json) {
            vmaug_cli_print_failure(error);
        }
        return vmaug_cli_fail(error, "%s", cmd);
    }
    return VMAUG_EXIT_OK;
}
