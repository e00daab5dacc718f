/*
 * Fixtures shared by the host-side tests.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <fcntl.h>
#include <linux/fs.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "test-common.h"

#define DAY (24 * 3600)

static VmaugTrustIdentity *test_id(const gchar *cn, VmaugTrustRole role,
                                   gint64 from, gint64 to,
                                   VmaugTrustIdentity *issuer)
{
    g_autoptr(GError) error = NULL;
    VmaugTrustIdentity *id = vmaug_trust_identity_generate(cn, role, from, to,
                                                           issuer, &error);

    g_assert_no_error(error);
    return id;
}

static void test_write(const gchar *dir, const gchar *name, GBytes *b)
{
    g_autoptr(GError) error = NULL;
    g_autofree gchar *p = g_build_filename(dir, name, NULL);

    g_file_set_contents(p, g_bytes_get_data(b, NULL), g_bytes_get_size(b),
                        &error);
    g_assert_no_error(error);
}

TestKeys *test_keys_new(void)
{
    TestKeys *k = g_new0(TestKeys, 1);
    g_autoptr(GError) error = NULL;
    g_autoptr(GBytes) admin_pem = NULL;
    g_autoptr(GBytes) ca_pem = NULL;
    g_autoptr(GBytes) crl = NULL;
    g_autoptr(GPtrArray) revoke =
        g_ptr_array_new_with_free_func((GDestroyNotify)g_bytes_unref);
    gint64 now = g_get_real_time() / G_USEC_PER_SEC;

    k->dir = g_dir_make_tmp("vmaug-test-XXXXXX", &error);
    g_assert_no_error(error);
    k->trust_dir = g_build_filename(k->dir, "trust", NULL);
    g_assert_cmpint(g_mkdir(k->trust_dir, 0700), ==, 0);

    k->admin = test_id("Test admin", VMAUG_TRUST_ROLE_SIGNER, now - DAY,
                       now + DAY, NULL);
    k->ca = test_id("Test CA", VMAUG_TRUST_ROLE_CA, now - DAY, now + DAY,
                    NULL);
    k->leaf = test_id("Site admin", VMAUG_TRUST_ROLE_SIGNER, now - DAY,
                      now + DAY, k->ca);
    k->revoked = test_id("Revoked admin", VMAUG_TRUST_ROLE_SIGNER, now - DAY,
                         now + DAY, k->ca);
    k->expired = test_id("Expired admin", VMAUG_TRUST_ROLE_SIGNER,
                         now - 3 * DAY, now - DAY, k->ca);
    k->stranger = test_id("Test admin", VMAUG_TRUST_ROLE_SIGNER, now - DAY,
                          now + DAY, NULL);

    admin_pem = vmaug_trust_identity_get_certificate(k->admin, &error);
    ca_pem = vmaug_trust_identity_get_certificate(k->ca, &error);
    g_ptr_array_add(revoke,
                    vmaug_trust_identity_get_certificate(k->revoked, &error));
    crl = vmaug_trust_identity_create_crl(k->ca, revoke, now - 60, now + DAY,
                                          &error);
    g_assert_no_error(error);
    test_write(k->trust_dir, "admin.crt", admin_pem);
    test_write(k->trust_dir, "ca.crt", ca_pem);
    test_write(k->trust_dir, "ca.crl", crl);
    k->trust = vmaug_trust_store_new_from_dir(k->trust_dir, &error);
    g_assert_no_error(error);
    return k;
}

void test_keys_free(TestKeys *k)
{
    if (k == NULL) {
        return;
    }
    test_rm_rf(k->dir);
    g_free(k->dir);
    g_free(k->trust_dir);
    vmaug_trust_identity_free(k->admin);
    vmaug_trust_identity_free(k->ca);
    vmaug_trust_identity_free(k->leaf);
    vmaug_trust_identity_free(k->revoked);
    vmaug_trust_identity_free(k->expired);
    vmaug_trust_identity_free(k->stranger);
    vmaug_trust_store_free(k->trust);
    g_free(k);
}

gchar *test_manifest(const gchar *name, const gchar *version)
{
    return g_strdup_printf("{\"name\": \"%s\", \"version\": \"%s\", "
                           "\"kind\": \"communication\", \"events\": [], "
                           "\"functions\": [\"echo\", \"notify\"], "
                           "\"capabilities\": [\"log\", \"events\"]}",
                           name, version);
}

GBytes *test_package(VmaugTrustIdentity *signer, const gchar *name,
                     const gchar *version, GBytes *payload)
{
    g_autoptr(GError) error = NULL;
    g_autofree gchar *m = test_manifest(name, version);
    GBytes *pkg = vmaug_package_build(m, NULL, payload, signer, &error);

    g_assert_no_error(error);
    return pkg;
}

GBytes *test_package_raw(VmaugTrustIdentity *signer, const gchar *manifest,
                         GBytes *payload)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(GByteArray) signed_bytes = g_byte_array_new();
    g_autoptr(GBytes) sb = NULL;
    g_autoptr(GBytes) sig = NULL;
    GByteArray *out = g_byte_array_new();
    guint8 hdr[VMAUG_PKG_HEADER_SIZE] = { 0 };
    gsize mlen = strlen(manifest);

    g_byte_array_append(signed_bytes,
                        (const guint8 *)VMAUG_PKG_SIGNING_CONTEXT,
                        strlen(VMAUG_PKG_SIGNING_CONTEXT));
    g_byte_array_append(signed_bytes, (const guint8 *)manifest, mlen);
    sb = g_bytes_new(signed_bytes->data, signed_bytes->len);
    sig = vmaug_trust_identity_sign(signer, sb, &error);
    g_assert_no_error(error);
    memcpy(hdr, VMAUG_PKG_MAGIC, 8);
    *(guint32 *)(hdr + 8) = GUINT32_TO_LE(VMAUG_PKG_FORMAT);
    *(guint32 *)(hdr + 12) = GUINT32_TO_LE((guint32)mlen);
    *(guint32 *)(hdr + 16) = GUINT32_TO_LE((guint32)g_bytes_get_size(sig));
    *(guint64 *)(hdr + 24) = GUINT64_TO_LE(g_bytes_get_size(payload));
    g_byte_array_append(out, hdr, sizeof(hdr));
    g_byte_array_append(out, (const guint8 *)manifest, mlen);
    g_byte_array_append(out, g_bytes_get_data(payload, NULL),
                        g_bytes_get_size(payload));
    g_byte_array_append(out, g_bytes_get_data(sig, NULL),
                        g_bytes_get_size(sig));
    return g_byte_array_free_to_bytes(out);
}

GBytes *test_flip_bit(GBytes *in, gsize bit)
{
    gsize len;
    const guint8 *p = g_bytes_get_data(in, &len);
    guint8 *copy = g_memdup2(p, len);

    copy[(bit / 8) % len] ^= 1u << (bit % 8);
    return g_bytes_new_take(copy, len);
}

const gchar *test_env(const gchar *name)
{
    const gchar *v = g_getenv(name);

    g_assert_nonnull(v);
    return v;
}

GBytes *test_read(const gchar *path)
{
    g_autoptr(GError) error = NULL;
    gchar *data = NULL;
    gsize len = 0;

    g_assert_nonnull(path);
    g_file_get_contents(path, &data, &len, &error);
    g_assert_no_error(error);
    return g_bytes_new_take(data, len);
}

static gint test_cmp_names(gconstpointer a, gconstpointer b)
{
    return strcmp(*(const gchar *const *)a, *(const gchar *const *)b);
}

static void test_snapshot_dir(GString *out, const gchar *root,
                              const gchar *rel, const gchar *skip)
{
    g_autofree gchar *path = g_build_filename(root, rel, NULL);
    g_autoptr(GDir) d = g_dir_open(path, 0, NULL);
    g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
    const gchar *n;

    while (d != NULL && (n = g_dir_read_name(d)) != NULL) {
        g_ptr_array_add(names, g_strdup(n));
    }
    g_ptr_array_sort(names, test_cmp_names);
    for (guint i = 0; i < names->len; i++) {
        const gchar *name = g_ptr_array_index(names, i);
        g_autofree gchar *r = g_build_filename(rel, name, NULL);
        g_autofree gchar *full = g_build_filename(root, r, NULL);
        g_autofree gchar *data = NULL;
        gsize len;

        if (skip != NULL && g_strcmp0(r, skip) == 0) {
            continue;
        }
        if (g_file_test(full, G_FILE_TEST_IS_DIR)) {
            g_string_append_printf(out, "%s/\n", r);
            test_snapshot_dir(out, root, r, skip);
        } else if (g_file_get_contents(full, &data, &len, NULL)) {
            g_autofree gchar *sum =
                g_compute_checksum_for_data(G_CHECKSUM_SHA256,
                                            (const guchar *)data, len);
            g_string_append_printf(out, "%s %s\n", r, sum);
        }
    }
}

gchar *test_snapshot(const gchar *dir, const gchar *skip)
{
    GString *out = g_string_new(NULL);

    test_snapshot_dir(out, dir, "", skip);
    return g_string_free(out, FALSE);
}

guint test_count_lines(const gchar *path, const gchar *needle)
{
    g_autofree gchar *data = NULL;
    g_auto(GStrv) lines = NULL;
    guint n = 0;

    if (!g_file_get_contents(path, &data, NULL, NULL)) {
        return 0;
    }
    lines = g_strsplit(data, "\n", -1);
    for (guint i = 0; lines[i] != NULL; i++) {
        if (lines[i][0] != '\0' &&
            (needle == NULL || strstr(lines[i], needle) != NULL)) {
            n++;
        }
    }
    return n;
}

gboolean test_audit_tally(const gchar *path, const gchar *action,
                          const gchar *decision, guint *single,
                          guint64 *counted)
{
    g_autofree gchar *text = NULL;
    g_auto(GStrv) lines = NULL;

    *single = 0;
    *counted = 0;
    if (!g_file_get_contents(path, &text, NULL, NULL)) {
        return FALSE;
    }
    lines = g_strsplit(text, "\n", -1);
    for (guint i = 0; lines[i] != NULL; i++) {
        g_autoptr(JsonParser) p = json_parser_new();
        JsonObject *o;

        if (*lines[i] == '\0') {
            continue;
        }
        /* Every line is one record: anything else is a broken log. */
        g_assert_true(json_parser_load_from_data(p, lines[i], -1, NULL));
        o = json_node_get_object(json_parser_get_root(p));
        if (g_strcmp0(json_object_get_string_member(o, "action"),
                      action) != 0 ||
            (decision != NULL &&
             g_strcmp0(json_object_get_string_member(o, "decision"),
                       decision) != 0)) {
            continue;
        }
        if (json_object_has_member(o, "count")) {
            *counted += json_object_get_int_member(o, "count");
        } else {
            (*single)++;
        }
    }
    return TRUE;
}

void test_rm_rf(const gchar *dir)
{
    g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
    const gchar *n;

    while (d != NULL && (n = g_dir_read_name(d)) != NULL) {
        g_autofree gchar *p = g_build_filename(dir, n, NULL);

        if (g_file_test(p, G_FILE_TEST_IS_DIR) &&
            !g_file_test(p, G_FILE_TEST_IS_SYMLINK)) {
            test_rm_rf(p);
        } else {
            /* The store makes its audit log append-only where it can. */
            int fd = open(p, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
            int flags;

            if (fd >= 0) {
                if (ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0 &&
                    (flags & FS_APPEND_FL)) {
                    flags &= ~FS_APPEND_FL;
                    ioctl(fd, FS_IOC_SETFLAGS, &flags);
                }
                close(fd);
            }
            g_unlink(p);
        }
    }
    g_rmdir(dir);
}

void test_run(const gchar *const *argv)
{
    g_autoptr(GError) error = NULL;
    g_autofree gchar *err = NULL;
    gint status;

    g_spawn_sync(NULL, (gchar **)argv, NULL, G_SPAWN_SEARCH_PATH |
                 G_SPAWN_STDOUT_TO_DEV_NULL, NULL, NULL, NULL, &err,
                 &status, &error);
    g_assert_no_error(error);
    if (!g_spawn_check_wait_status(status, NULL)) {
        g_error("%s failed: %s", argv[0], err);
    }
}

void test_certtool(const gchar *dir, const gchar *name, const gchar *tmpl,
                   const gchar *ca)
{
    g_autoptr(GError) error = NULL;
    g_autofree gchar *key = g_strdup_printf("%s/%s.key", dir, name);
    g_autofree gchar *crt = g_strdup_printf("%s/%s.crt", dir, name);
    g_autofree gchar *tpl = g_strdup_printf("%s/%s.tmpl", dir, name);
    g_autofree gchar *ca_key = g_strdup_printf("%s/%s.key", dir, ca);
    g_autofree gchar *ca_crt = g_strdup_printf("%s/%s.crt", dir, ca);
    const gchar *certtool = test_env("VMAUG_CERTTOOL");
    const gchar *genkey[] = {
        certtool, "--generate-privkey", "--key-type=ecdsa", "--outfile", key,
        NULL
    };
    const gchar *self[] = {
        certtool, "--generate-self-signed", "--load-privkey", key,
        "--template", tpl, "--outfile", crt, NULL
    };
    const gchar *issued[] = {
        certtool, "--generate-certificate", "--load-privkey", key,
        "--load-ca-certificate", ca_crt, "--load-ca-privkey", ca_key,
        "--template", tpl, "--outfile", crt, NULL
    };

    g_file_set_contents(tpl, tmpl, -1, &error);
    g_assert_no_error(error);
    test_run(genkey);
    test_run(ca != NULL ? issued : self);
}

int test_listen_loopback(guint16 *port)
{
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(sa);
    int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    g_assert_cmpint(s, >=, 0);
    g_assert_cmpint(bind(s, (struct sockaddr *)&sa, sizeof(sa)), ==, 0);
    g_assert_cmpint(listen(s, 8), ==, 0);
    g_assert_cmpint(getsockname(s, (struct sockaddr *)&sa, &len), ==, 0);
    *port = ntohs(sa.sin_port);
    return s;
}

gchar *test_sha256sum(const gchar *path)
{
    const gchar *argv[] = { "sha256sum", "--", path, NULL };
    g_autoptr(GError) error = NULL;
    g_autofree gchar *out = NULL;
    g_autofree gchar *err = NULL;
    gint status;

    g_spawn_sync(NULL, (gchar **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL,
                 &out, &err, &status, &error);
    g_assert_no_error(error);
    if (!g_spawn_check_wait_status(status, NULL)) {
        g_error("sha256sum %s failed: %s", path, err);
    }
    g_assert_cmpuint(strlen(out), >, 64);
    return g_strndup(out, 64);
}

GBytes *test_module_package(VmaugTrustIdentity *signer, const gchar *name,
                            const gchar *version)
{
    g_autoptr(GError) error = NULL;
    g_autofree gchar *so = NULL;
    g_autofree gchar *manifest_path = NULL;
    g_autofree gchar *manifest = NULL;
    g_autoptr(GBytes) payload = NULL;
    GBytes *pkg;

    if (g_strcmp0(name, "hostile") == 0) {
        so = g_strdup(test_env("VMAUG_TEST_HOSTILE_SO"));
        manifest_path = g_strdup(test_env("VMAUG_TEST_HOSTILE_MANIFEST"));
    } else {
        g_autofree gchar *base = g_strconcat("vmaug-", name, ".so", NULL);

        so = g_build_filename(test_env("VMAUG_TEST_MODULES_BUILD"), name,
                              base, NULL);
        manifest_path = g_build_filename(test_env("VMAUG_TEST_MODULES_SRC"),
                                         name, "manifest.json", NULL);
    }
    payload = test_read(so);
    g_assert_true(g_file_get_contents(manifest_path, &manifest, NULL, NULL));
    pkg = vmaug_package_build(manifest, version, payload, signer, &error);
    g_assert_no_error(error);
    return pkg;
}
