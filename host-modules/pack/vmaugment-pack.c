/*
 * vmaugment-pack: build, inspect, verify and install module packages.
 *
 *   vmaugment-pack create --manifest M.json --payload mod.so \
 *                         --key admin.key --cert admin.crt -o mod.vmod
 *   vmaugment-pack inspect mod.vmod
 *   vmaugment-pack verify --trust-dir DIR mod.vmod
 *   vmaugment-pack install --store DIR --trust-dir DIR [--policy P] mod.vmod
 *   vmaugment-pack list --store DIR --trust-dir DIR
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <stdio.h>

#include "host-common.h"
#include "store.h"

static gchar *opt_manifest;
static gchar *opt_payload;
static gchar *opt_key;
static gchar *opt_cert;
static gchar *opt_output;
static gchar *opt_trust_dir;
static gchar *opt_store;
static gchar *opt_policy;
static gchar *opt_version;

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
      "verify/install/list: trusted certificates and CRLs", "DIR" },
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

static gboolean pack_create(GError **error)
{
    g_autoptr(VmaugTrustIdentity) id = NULL;
    g_autoptr(GBytes) manifest = NULL;
    g_autoptr(GBytes) payload = NULL;
    g_autoptr(GBytes) pkg = NULL;
    g_autofree gchar *json = NULL;

    if (opt_manifest == NULL || opt_payload == NULL || opt_key == NULL ||
        opt_cert == NULL || opt_output == NULL) {
        g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_FAILED,
                    "create needs --manifest --payload --key --cert "
                    "--output");
        return FALSE;
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
        return FALSE;
    }
    return g_file_set_contents_full(opt_output, g_bytes_get_data(pkg, NULL),
                                    g_bytes_get_size(pkg),
                                    G_FILE_SET_CONTENTS_CONSISTENT, 0644,
                                    error);
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
    /* Shown as text, unverified: inspect is for humans. */
    g_print("# unverified manifest\n%.*s\n", (int)mlen,
            (const gchar *)p + VMAUG_PKG_HEADER_SIZE);
    return TRUE;
}

static VmaugTrustStore *pack_trust(GError **error)
{
    if (opt_trust_dir == NULL) {
        g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_FAILED,
                    "--trust-dir is required");
        return NULL;
    }
    return vmaug_trust_store_new_from_dir(opt_trust_dir, error);
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
    g_print("%s %s (%s) signed by %s [%s]\n", pkg->manifest->name,
            pkg->manifest->version, vmaug_kind_to_string(pkg->manifest->kind),
            pkg->signer->common_name, pkg->signer->fingerprint);
    return TRUE;
}

static VmaugStore *pack_store(VmaugTrustStore *trust, VmaugPolicy *policy,
                              GError **error)
{
    if (opt_store == NULL) {
        g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_FAILED,
                    "--store is required");
        return NULL;
    }
    return vmaug_store_open(opt_store, trust, policy, error);
}

static gboolean pack_install(const gchar *path, GError **error)
{
    g_autoptr(VmaugTrustStore) trust = pack_trust(error);
    g_autoptr(VmaugPolicy) policy = NULL;
    g_autoptr(VmaugStore) store = NULL;
    g_autoptr(GBytes) file = NULL;
    g_autoptr(VmaugManifest) m = NULL;

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
    m = vmaug_store_install(store, file, "vmaugment-pack", error);
    if (m == NULL) {
        return FALSE;
    }
    g_print("installed %s %s\n", m->name, m->version);
    return TRUE;
}

static gboolean pack_list(GError **error)
{
    g_autoptr(VmaugTrustStore) trust = vmaug_trust_store_new();
    g_autoptr(VmaugPolicy) policy = vmaug_policy_new_default();
    g_autoptr(VmaugStore) store = pack_store(trust, policy, error);
    g_autoptr(GPtrArray) list = NULL;

    if (store == NULL) {
        return FALSE;
    }
    list = vmaug_store_list(store);
    for (guint i = 0; i < list->len; i++) {
        VmaugStoreEntry *e = g_ptr_array_index(list, i);

        g_print("%s %s %s\n", e->name, e->version, e->sha256);
    }
    return TRUE;
}

int main(int argc, char **argv)
{
    g_autoptr(GOptionContext) ctx = NULL;
    g_autoptr(GError) error = NULL;
    const gchar *cmd;
    gboolean ok;

    ctx = g_option_context_new("create|inspect|verify|install|list "
                               "[PACKAGE] - vmaugment module packages");
    g_option_context_add_main_entries(ctx, entries, NULL);
    if (!g_option_context_parse(ctx, &argc, &argv, &error)) {
        g_printerr("vmaugment-pack: %s\n", error->message);
        return 1;
    }
    if (argc < 2) {
        g_printerr("vmaugment-pack: a command is required (--help)\n");
        return 1;
    }
    cmd = argv[1];
    if (g_strcmp0(cmd, "create") == 0 && argc == 2) {
        ok = pack_create(&error);
    } else if (g_strcmp0(cmd, "list") == 0 && argc == 2) {
        ok = pack_list(&error);
    } else if (argc != 3) {
        g_printerr("vmaugment-pack: %s takes one package\n", cmd);
        return 1;
    } else if (g_strcmp0(cmd, "inspect") == 0) {
        ok = pack_inspect(argv[2], &error);
    } else if (g_strcmp0(cmd, "verify") == 0) {
        ok = pack_verify(argv[2], &error);
    } else if (g_strcmp0(cmd, "install") == 0) {
        ok = pack_install(argv[2], &error);
    } else {
        g_printerr("vmaugment-pack: unknown command %s\n", cmd);
        return 1;
    }
    if (!ok) {
        g_printerr("vmaugment-pack: %s\n", error->message);
        return error->domain == VMAUG_HOST_ERROR &&
               error->code == VMAUG_HOST_ERROR_DENIED ? 3 : 2;
    }
    return 0;
}
