/*
 * Module repository tests against a real HTTPS server on 127.0.0.1 with a
 * CA and server certificates made here by certtool.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <string.h>

#include <gio/gio.h>
#include <glib/gstdio.h>

#include "vmaugment/exit-status.h"
#include "test-common.h"
#include "repo-private.h"

#define DAY (24 * 3600)

typedef struct {
    gchar *url;                     /* https://127.0.0.1:PORT */
    gchar *log;                     /* the paths it was asked for */
    GSubprocess *proc;
} TestServer;

static struct {
    TestKeys *keys;
    gchar *dir;                     /* everything below */
    gchar *root;                    /* the servers' document root */
    gchar *ca_file;                 /* the CA of the server certificates */
    gchar *other_ca_file;           /* a CA that issued nothing here */
    gchar *admin_key, *admin_cert;  /* trusted by keys->trust_dir */
    gchar *stranger_key, *stranger_cert;
    gchar *stranger_trust;          /* a trust store holding the stranger */
    TestServer good;                /* certificate for 127.0.0.1 */
    TestServer wrong_host;          /* certificate for another name */
    guint n;                        /* unique names per test */
    gboolean local;                 /* cases use the directory itself */
} T;

/* ---- Fixtures ---- */

static gchar *test_path(const gchar *name)
{
    return g_build_filename(T.dir, name, NULL);
}

static void test_put(const gchar *path, const gchar *text)
{
    g_autoptr(GError) error = NULL;

    g_file_set_contents(path, text, -1, &error);
    g_assert_no_error(error);
}

static void test_server_start(TestServer *s, const gchar *cert_name)
{
    g_autoptr(GError) error = NULL;
    g_autofree gchar *cert = g_strdup_printf("%s/%s.crt", T.dir, cert_name);
    g_autofree gchar *key = g_strdup_printf("%s/%s.key", T.dir, cert_name);
    g_autoptr(GDataInputStream) out = NULL;
    g_autofree gchar *line = NULL;

    s->log = g_strdup_printf("%s/%s.log", T.dir, cert_name);
    s->proc = g_subprocess_new(G_SUBPROCESS_FLAGS_STDOUT_PIPE |
                               G_SUBPROCESS_FLAGS_STDIN_PIPE, &error,
                               g_getenv("VMAUG_PYTHON"),
                               g_getenv("VMAUG_REPO_SERVER"),
                               "--root", T.root, "--cert", cert,
                               "--key", key, "--log", s->log, NULL);
    g_assert_no_error(error);
    out = g_data_input_stream_new(g_subprocess_get_stdout_pipe(s->proc));
    line = g_data_input_stream_read_line(out, NULL, NULL, &error);
    g_assert_no_error(error);
    g_assert_nonnull(line);
    g_assert_cmpint(atoi(line), >, 0);
    s->url = g_strdup_printf("https://127.0.0.1:%d", atoi(line));
}

static void test_server_stop(TestServer *s)
{
    g_subprocess_force_exit(s->proc);
    g_subprocess_wait(s->proc, NULL, NULL);
    g_clear_object(&s->proc);
    g_free(s->url);
    g_free(s->log);
}

static void test_setup(void)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugTrustIdentity) dummy = NULL;
    g_autoptr(GBytes) stranger_pem = NULL;
    g_autofree gchar *p = NULL;

    T.keys = test_keys_new();
    T.dir = g_build_filename(T.keys->dir, "repo", NULL);
    T.root = test_path("www");
    g_assert_cmpint(g_mkdir_with_parents(T.root, 0700), ==, 0);

    test_certtool(T.dir, "ca", "cn = \"Repository test CA\"\nca\n"
                  "cert_signing_key\nexpiration_days = 2\n", NULL);
    test_certtool(T.dir, "other-ca", "cn = \"Other CA\"\nca\n"
                  "cert_signing_key\nexpiration_days = 2\n", NULL);
    test_certtool(T.dir, "server", "cn = \"127.0.0.1\"\n"
                  "ip_address = \"127.0.0.1\"\ntls_www_server\nsigning_key\n"
                  "encryption_key\nexpiration_days = 2\n", "ca");
    test_certtool(T.dir, "wrong-host", "cn = \"repo.example.invalid\"\n"
                  "dns_name = \"repo.example.invalid\"\ntls_www_server\n"
                  "signing_key\nencryption_key\nexpiration_days = 2\n", "ca");
    T.ca_file = test_path("ca.crt");
    T.other_ca_file = test_path("other-ca.crt");

    T.admin_key = test_path("admin.key");
    T.admin_cert = test_path("admin.crt");
    vmaug_trust_identity_save(T.keys->admin, T.admin_key, T.admin_cert,
                              &error);
    g_assert_no_error(error);
    T.stranger_key = test_path("stranger.key");
    T.stranger_cert = test_path("stranger.crt");
    vmaug_trust_identity_save(T.keys->stranger, T.stranger_key,
                              T.stranger_cert, &error);
    g_assert_no_error(error);
    T.stranger_trust = test_path("stranger-trust");
    g_assert_cmpint(g_mkdir(T.stranger_trust, 0700), ==, 0);
    stranger_pem = vmaug_trust_identity_get_certificate(T.keys->stranger,
                                                        &error);
    g_assert_no_error(error);
    p = g_build_filename(T.stranger_trust, "stranger.crt", NULL);
    g_file_set_contents(p, g_bytes_get_data(stranger_pem, NULL),
                        g_bytes_get_size(stranger_pem), &error);
    g_assert_no_error(error);

    test_server_start(&T.good, "server");
    test_server_start(&T.wrong_host, "wrong-host");
}

static void test_teardown(void)
{
    test_server_stop(&T.good);
    test_server_stop(&T.wrong_host);
    g_free(T.root);
    g_free(T.ca_file);
    g_free(T.other_ca_file);
    g_free(T.admin_key);
    g_free(T.admin_cert);
    g_free(T.stranger_key);
    g_free(T.stranger_cert);
    g_free(T.stranger_trust);
    g_free(T.dir);
    test_keys_free(T.keys);
}

/* One test's repository, client state and destination. */
typedef struct {
    gchar *name;                    /* the repository's directory name */
    gchar *dir;                     /* below the document root */
    gchar *state;
    gchar *dest;
    gchar *url;
    VmaugRepoOptions opts;
} Case;

static Case *case_new(const gchar *mode)
{
    Case *c = g_new0(Case, 1);

    c->name = g_strdup_printf("r%u", T.n++);
    c->dir = g_build_filename(T.root, c->name, NULL);
    c->state = g_strdup_printf("%s/state-%s", T.dir, c->name);
    c->dest = g_strdup_printf("%s/dest-%s", T.dir, c->name);
    g_assert_cmpint(g_mkdir(c->dest, 0700), ==, 0);
    /* A local repository is the directory itself; the server's
     * misbehaviours (modes) do not apply to it. */
    c->url = T.local ? g_strdup(c->dir) :
             g_strdup_printf("%s/%s/%s/", T.good.url, mode, c->name);
    vmaug_repo_options_init(&c->opts);
    c->opts.url = c->url;
    c->opts.trust_dir = T.keys->trust_dir;
    c->opts.state_dir = c->state;
    c->opts.ca_file = T.ca_file;
    c->opts.timeout_ms = 20000;
    return c;
}

static void case_free(Case *c)
{
    g_free(c->name);
    g_free(c->dir);
    g_free(c->state);
    g_free(c->dest);
    g_free(c->url);
    g_free(c);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(Case, case_free)

/* Switch the case to another misbehaviour of the same repository. */
static void case_mode(Case *c, const gchar *mode)
{
    g_free(c->url);
    c->url = g_strdup_printf("%s/%s/%s/", T.good.url, mode, c->name);
    c->opts.url = c->url;
}

/* A real signed package file with an arbitrary payload. */
static gchar *test_pkg_file(VmaugTrustIdentity *signer, const gchar *name,
                            const gchar *version)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(GString) body = g_string_new(NULL);
    g_autoptr(GBytes) payload = NULL;
    g_autoptr(GBytes) pkg = NULL;
    gchar *path = g_strdup_printf("%s/%s-%s-%u.vmod", T.dir, name, version,
                                  T.n++);

    for (guint i = 0; i < 256; i++) {
        g_string_append_printf(body, "%s %s payload line %u\n", name, version,
                               i);
    }
    payload = g_bytes_new(body->str, body->len);
    pkg = test_package(signer, name, version, payload);
    g_file_set_contents(path, g_bytes_get_data(pkg, NULL),
                        g_bytes_get_size(pkg), &error);
    g_assert_no_error(error);
    return path;
}

static VmaugRepoIndex *case_publish_full(Case *c, const gchar *key,
                                         const gchar *cert,
                                         const gchar *trust, gint64 expires,
                                         const gchar *const *pkgs)
{
    g_autoptr(GError) error = NULL;
    VmaugRepoPublishOptions p = {
        .dir = c->dir, .key_path = key, .cert_path = cert,
        .trust_dir = trust, .expires = expires,
    };
    VmaugRepoIndex *index = vmaug_repo_publish(&p, pkgs, &error);

    g_assert_no_error(error);
    return index;
}

/* Publish echo @version (signed by the trusted admin) in the case's
 * repository, signed by the admin, valid for a day. */
static void case_publish(Case *c, const gchar *version)
{
    g_autofree gchar *pkg = test_pkg_file(T.keys->admin, "echo", version);
    const gchar *pkgs[] = { pkg, NULL };
    g_autoptr(VmaugRepoIndex) index =
        case_publish_full(c, T.admin_key, T.admin_cert, NULL,
                          g_get_real_time() / G_USEC_PER_SEC + DAY, pkgs);
}

static gchar *case_file(Case *c, const gchar *rel)
{
    return g_build_filename(c->dir, rel, NULL);
}

/* Nothing at all, not even a temporary file, is left in the destination. */
static void case_assert_empty(Case *c)
{
    g_autoptr(GDir) d = g_dir_open(c->dest, 0, NULL);

    g_assert_nonnull(d);
    g_assert_null(g_dir_read_name(d));
}

/* The fetch fails with @code and stores nothing. */
static void case_refused(Case *c, const gchar *version, gint code,
                         const gchar *reason)
{
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugRepoResult) r = vmaug_repo_fetch(&c->opts, "echo", version,
                                                    c->dest, &error);

    g_assert_null(r);
    g_assert_error(error, VMAUG_REPO_ERROR, code);
    g_test_message("refused: %s", error->message);
    if (reason != NULL) {
        g_assert_nonnull(strstr(error->message, reason));
    }
    case_assert_empty(c);
}

static VmaugRepoResult *case_fetch_ok(Case *c, const gchar *version)
{
    g_autoptr(GError) error = NULL;
    VmaugRepoResult *r = vmaug_repo_fetch(&c->opts, "echo", version, c->dest,
                                          &error);

    g_assert_no_error(error);
    g_assert_nonnull(r);
    return r;
}

/* ---- Tests ---- */

static void test_success(void)
{
    g_autoptr(Case) c = case_new("ok");
    g_autoptr(VmaugRepoResult) r = NULL;
    g_autoptr(VmaugRepoResult) r2 = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(GBytes) got = NULL;
    g_autoptr(GDir) d = NULL;
    g_autofree gchar *pub = NULL;
    g_autofree gchar *sha = NULL;
    g_autofree gchar *want = NULL;
    guint files = 0;

    case_publish(c, "1.0");
    case_publish(c, "1.10");
    case_publish(c, "1.9");

    /* The newest by version order, not by listing order. */
    r = case_fetch_ok(c, NULL);
    g_assert_cmpstr(r->version, ==, "1.10");
    g_assert_cmpint(r->index_version, ==, 3);
    g_assert_cmpstr(r->signer, ==, "Test admin");
    want = g_strdup_printf("%s/echo-1.10.vmod", c->dest);
    g_assert_cmpstr(r->path, ==, want);
    got = vmaug_trust_read_file(r->path, G_MAXSIZE, &error);
    g_assert_no_error(error);
    sha = repo_sha256_hex(g_bytes_get_data(got, NULL), g_bytes_get_size(got));
    g_assert_cmpstr(sha, ==, r->sha256);
    pub = case_file(c, "packages/echo-1.10.vmod");
    g_assert_true(g_file_test(pub, G_FILE_TEST_IS_REGULAR));

    /* A named version; the same metadata again is no rollback. */
    r2 = case_fetch_ok(c, "1.0");
    g_assert_cmpstr(r2->version, ==, "1.0");

    d = g_dir_open(c->dest, 0, NULL);
    while (g_dir_read_name(d) != NULL) {
        files++;
    }
    g_assert_cmpuint(files, ==, 2);
}

static void test_not_found(void)
{
    g_autoptr(Case) c = case_new("ok");

    case_publish(c, "1.0");
    case_refused(c, "2.0", VMAUG_REPO_ERROR_NOT_FOUND, "no module echo");
}

static void test_expired(void)
{
    g_autoptr(Case) c = case_new("ok");
    g_autofree gchar *pkg = test_pkg_file(T.keys->admin, "echo", "1.0");
    const gchar *pkgs[] = { pkg, NULL };
    g_autoptr(VmaugRepoIndex) index =
        case_publish_full(c, T.admin_key, T.admin_cert, NULL,
                          g_get_real_time() / G_USEC_PER_SEC - 60, pkgs);

    case_refused(c, NULL, VMAUG_REPO_ERROR_EXPIRED, "expired");
    /* An expired index is not remembered either. */
    g_assert_false(g_file_test(c->state, G_FILE_TEST_EXISTS));
}

static void test_copy(const gchar *from, const gchar *to)
{
    g_autoptr(GError) error = NULL;
    g_autofree gchar *data = NULL;
    gsize len;

    g_file_get_contents(from, &data, &len, &error);
    g_assert_no_error(error);
    g_file_set_contents(to, data, len, &error);
    g_assert_no_error(error);
}

static gchar *case_sig_path(Case *c, const gchar *sha)
{
    g_autofree gchar *rel = g_strdup_printf("signatures/index-%s.p7s", sha);

    return case_file(c, rel);
}

static void test_rollback(void)
{
    g_autoptr(Case) c = case_new("ok");
    g_autoptr(VmaugRepoResult) r = NULL;
    g_autofree gchar *index = case_file(c, "index.json");
    g_autofree gchar *saved = g_strdup_printf("%s.saved", c->dir);
    g_autofree gchar *saved_sig = g_strdup_printf("%s.saved-sig", c->dir);
    g_autofree gchar *sig1 = NULL;
    g_autofree gchar *sha1 = NULL;
    g_autoptr(GBytes) b = NULL;

    case_publish(c, "1.0");
    b = vmaug_trust_read_file(index, G_MAXSIZE, NULL);
    sha1 = repo_sha256_hex(g_bytes_get_data(b, NULL), g_bytes_get_size(b));
    sig1 = case_sig_path(c, sha1);
    test_copy(index, saved);
    test_copy(sig1, saved_sig);

    case_publish(c, "1.1");
    case_publish(c, "1.2");
    r = case_fetch_ok(c, NULL);
    g_assert_cmpint(r->index_version, ==, 3);
    g_assert_cmpint(g_unlink(r->path), ==, 0);

    /* A mirror replays version 1 with its valid signature. */
    test_copy(saved, index);
    test_copy(saved_sig, sig1);
    case_refused(c, "1.0", VMAUG_REPO_ERROR_ROLLBACK,
                 "metadata version 1 is older than version 3");
}

/* The same version number signed twice with different content. */
static void test_version_reuse(void)
{
    g_autoptr(Case) c = case_new("ok");
    g_autoptr(Case) other = case_new("ok");
    g_autoptr(VmaugRepoResult) r = NULL;
    g_autofree gchar *index = case_file(c, "index.json");
    g_autofree gchar *other_index = case_file(other, "index.json");
    g_autoptr(GBytes) b = NULL;
    g_autofree gchar *sha = NULL;
    g_autofree gchar *sig = NULL;
    g_autofree gchar *dst_sig = NULL;

    case_publish(c, "1.0");
    r = case_fetch_ok(c, NULL);
    g_assert_cmpint(g_unlink(r->path), ==, 0);

    /* Another version-1 index of other content, validly signed. */
    case_publish(other, "2.0");
    b = vmaug_trust_read_file(other_index, G_MAXSIZE, NULL);
    sha = repo_sha256_hex(g_bytes_get_data(b, NULL), g_bytes_get_size(b));
    sig = case_sig_path(other, sha);
    dst_sig = case_sig_path(c, sha);
    test_copy(other_index, index);
    test_copy(sig, dst_sig);
    case_refused(c, NULL, VMAUG_REPO_ERROR_ROLLBACK, "differs");
}

/* Rewrite the published package of echo 1.0 in @c. */
static void case_tamper(Case *c, gssize new_size, gsize flip_at)
{
    g_autoptr(GError) error = NULL;
    g_autofree gchar *p = case_file(c, "packages/echo-1.0.vmod");
    g_autofree gchar *data = NULL;
    g_autofree gchar *bigger = NULL;
    gsize len;

    g_file_get_contents(p, &data, &len, &error);
    g_assert_no_error(error);
    if (new_size < 0) {
        data[flip_at] ^= 1;
        g_file_set_contents(p, data, len, &error);
    } else {
        bigger = g_malloc0(new_size);
        memcpy(bigger, data, MIN(len, (gsize)new_size));
        g_file_set_contents(p, bigger, new_size, &error);
    }
    g_assert_no_error(error);
}

static void test_hash_mismatch(void)
{
    g_autoptr(Case) c = case_new("ok");

    case_publish(c, "1.0");
    /* One bit of the payload, same size. */
    case_tamper(c, -1, 200);
    case_refused(c, NULL, VMAUG_REPO_ERROR_MISMATCH, "SHA-256");
}

static void test_size_mismatch(void)
{
    g_autoptr(Case) c = case_new("ok");
    g_autofree gchar *p = case_file(c, "packages/echo-1.0.vmod");
    goffset size;
    GStatBuf st;

    case_publish(c, "1.0");
    g_assert_cmpint(g_stat(p, &st), ==, 0);
    size = st.st_size;

    case_tamper(c, size - 10, 0);
    case_refused(c, NULL, VMAUG_REPO_ERROR_MISMATCH, "bytes received");
    /* Longer than the index says: stopped while streaming. */
    case_tamper(c, size + 10, 0);
    case_refused(c, NULL, VMAUG_REPO_ERROR_TOO_BIG, "the index says");
}

static void test_oversize_body(void)
{
    g_autoptr(Case) c = case_new("pad");

    case_publish(c, "1.0");
    /* No Content-Length: the body is cut while it streams. */
    case_refused(c, NULL, VMAUG_REPO_ERROR_TOO_BIG, "larger than");
    /* A Content-Length above the index's size: refused before the body. */
    case_mode(c, "padlen");
    case_refused(c, NULL, VMAUG_REPO_ERROR_TOO_BIG, NULL);
    /* The hard cap wins over what the index says. */
    case_mode(c, "ok");
    c->opts.max_package_size = 1024;
    case_refused(c, NULL, VMAUG_REPO_ERROR_TOO_BIG, "more than the limit");
}

static void test_oversize_index(void)
{
    g_autoptr(Case) c = case_new("endless");

    case_publish(c, "1.0");
    case_refused(c, NULL, VMAUG_REPO_ERROR_TOO_BIG, "index of");
}

/* The good server was asked for @rel of the case's repository, in the
 * case's current mode, exactly once. */
static void case_assert_requested(Case *c, const gchar *mode,
                                  const gchar *rel)
{
    g_autofree gchar *path = g_strdup_printf("/%s/%s/%s", mode, c->name, rel);
    g_autofree gchar *data = NULL;
    g_auto(GStrv) lines = NULL;
    guint n = 0;

    g_assert_true(g_file_get_contents(T.good.log, &data, NULL, NULL));
    lines = g_strsplit(data, "\n", -1);
    for (guint i = 0; lines[i] != NULL; i++) {
        n += g_strcmp0(lines[i], path) == 0;
    }
    g_assert_cmpuint(n, ==, 1);
}

/*
 * The overall time bound, without measuring it: a server that stalls
 * before the package's body until the client leaves can only be left by
 * the bound, so the fetch must end with TIMEOUT, on the package, after the
 * server saw that request; a pause well within the bound is waited out.
 */
static void test_slow_server(void)
{
    g_autoptr(Case) c = case_new("slow");
    g_autoptr(Case) p = case_new("pause");
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugRepoResult) r = NULL;

    case_publish(c, "1.0");
    /* Small, but far above a loopback index and signature fetch. */
    c->opts.timeout_ms = 1000;
    r = vmaug_repo_fetch(&c->opts, "echo", NULL, c->dest, &error);
    g_assert_null(r);
    g_assert_error(error, VMAUG_REPO_ERROR, VMAUG_REPO_ERROR_TIMEOUT);
    g_test_message("refused: %s", error->message);
    g_assert_true(g_str_has_prefix(error->message, "package echo 1.0 "));
    g_assert_nonnull(strstr(error->message, "Operation timed out after "));
    case_assert_requested(c, "slow", "packages/echo-1.0.vmod");
    case_assert_empty(c);

    /* The same repository, served after a pause: within the bound. */
    case_publish(p, "1.0");
    p->opts.timeout_ms = 20000;
    r = case_fetch_ok(p, NULL);
    g_assert_cmpstr(r->version, ==, "1.0");
    case_assert_requested(p, "pause", "packages/echo-1.0.vmod");
}

/*
 * The low-speed bound: a package trickling one byte every 0.3 s with an
 * overall bound (30 s) that is not reached first; the error must be the
 * low-speed one, not the overall bound's.
 */
static void test_trickle_server(void)
{
    g_autoptr(Case) c = case_new("trickle");
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugRepoResult) r = NULL;

    case_publish(c, "1.0");
    c->opts.timeout_ms = 30000;
    c->opts.low_speed_bps = 1000;
    c->opts.low_speed_s = 1;
    r = vmaug_repo_fetch(&c->opts, "echo", NULL, c->dest, &error);
    g_assert_null(r);
    g_assert_error(error, VMAUG_REPO_ERROR, VMAUG_REPO_ERROR_TIMEOUT);
    g_test_message("refused: %s", error->message);
    g_assert_true(g_str_has_prefix(error->message, "package echo 1.0 "));
    g_assert_nonnull(strstr(error->message, "Operation too slow. Less than "
                            "1000 bytes/sec transferred the last 1 seconds"));
    case_assert_requested(c, "trickle", "packages/echo-1.0.vmod");
    case_assert_empty(c);
}

static void test_tls_wrong_ca(void)
{
    g_autoptr(Case) c = case_new("ok");

    case_publish(c, "1.0");
    c->opts.ca_file = T.other_ca_file;
    case_refused(c, NULL, VMAUG_REPO_ERROR_TLS, "TLS connection refused");
    /* The system's CAs do not know the test CA either. */
    c->opts.ca_file = NULL;
    case_refused(c, NULL, VMAUG_REPO_ERROR_TLS, "TLS connection refused");
}

static void test_tls_wrong_host(void)
{
    g_autoptr(Case) c = case_new("ok");

    case_publish(c, "1.0");
    g_free(c->url);
    c->url = g_strdup_printf("%s/ok/%s/", T.wrong_host.url, c->name);
    c->opts.url = c->url;
    case_refused(c, NULL, VMAUG_REPO_ERROR_TLS, "does not match");
}

static void test_unknown_signer(void)
{
    g_autoptr(Case) c = case_new("ok");
    g_autofree gchar *pkg = test_pkg_file(T.keys->admin, "echo", "1.0");
    const gchar *pkgs[] = { pkg, NULL };
    /* A key the host does not trust, same common name as the admin. */
    g_autoptr(VmaugRepoIndex) index =
        case_publish_full(c, T.stranger_key, T.stranger_cert,
                          T.keys->trust_dir,
                          g_get_real_time() / G_USEC_PER_SEC + DAY, pkgs);

    case_refused(c, NULL, VMAUG_REPO_ERROR_SIGNATURE, "signature refused");
}

static void test_bad_signature(void)
{
    g_autoptr(Case) c = case_new("ok");
    g_autofree gchar *index = case_file(c, "index.json");
    g_autoptr(GBytes) b = NULL;
    g_autofree gchar *sha = NULL;
    g_autofree gchar *sig = NULL;
    g_autofree gchar *text = NULL;
    g_autofree gchar *new_sha = NULL;
    g_autofree gchar *new_sig = NULL;
    gchar *at;

    case_publish(c, "1.0");
    b = vmaug_trust_read_file(index, G_MAXSIZE, NULL);
    sha = repo_sha256_hex(g_bytes_get_data(b, NULL), g_bytes_get_size(b));
    sig = case_sig_path(c, sha);

    /* The index altered (a later expiry) with the old signature beside. */
    text = g_strndup(g_bytes_get_data(b, NULL), g_bytes_get_size(b));
    at = strstr(text, "\"expires\" : \"");
    g_assert_nonnull(at);
    at[strlen("\"expires\" : \"")] = '3';
    test_put(index, text);
    new_sha = repo_sha256_hex(text, strlen(text));
    new_sig = case_sig_path(c, new_sha);
    test_copy(sig, new_sig);
    case_refused(c, NULL, VMAUG_REPO_ERROR_SIGNATURE, "signature refused");

    /* No signature at all. */
    g_assert_cmpint(g_unlink(new_sig), ==, 0);
    case_refused(c, NULL, VMAUG_REPO_ERROR_SIGNATURE, "not signed");
}

/* The index is fine, the package's own signature is not trusted. */
static void test_package_signer(void)
{
    g_autoptr(Case) c = case_new("ok");
    g_autofree gchar *pkg = test_pkg_file(T.keys->stranger, "echo", "1.0");
    const gchar *pkgs[] = { pkg, NULL };
    g_autoptr(VmaugRepoIndex) index =
        case_publish_full(c, T.admin_key, T.admin_cert, T.stranger_trust,
                          g_get_real_time() / G_USEC_PER_SEC + DAY, pkgs);

    case_refused(c, NULL, VMAUG_REPO_ERROR_PACKAGE, "refused");
}

/* Hostile indexes, checked by the parser (their signature aside). */
static void test_index_parse(void)
{
    static const struct {
        const gchar *json;
        const gchar *reason;
    } bad[] = {
        { "[]", "root" },
        { "", "UTF-8" },
        { "{\"format\": 1, \"version\": \"2\", \"expires\": "
          "\"2099-01-01T00:00:00Z\", \"packages\": []}", "not an integer" },
        { "{\"format\": 2, \"version\": 2, \"expires\": "
          "\"2099-01-01T00:00:00Z\", \"packages\": []}", "format" },
        { "{\"format\": 1, \"version\": 0, \"expires\": "
          "\"2099-01-01T00:00:00Z\", \"packages\": []}", "positive" },
        { "{\"format\": 1, \"version\": 2, \"expires\": "
          "\"2099-01-01T00:00:00\", \"packages\": []}", "zone" },
        { "{\"format\": 1, \"version\": 2, \"expires\": "
          "\"2099-01-01T00:00:00Z\", \"packages\": {}}", "array" },
        { "{\"format\": 1, \"version\": 2, \"expires\": "
          "\"2099-01-01T00:00:00Z\", \"packages\": [], \"x\": 1}",
          "unknown member" },
        { "{\"format\": 1, \"version\": 2, \"expires\": "
          "\"2099-01-01T00:00:00Z\", \"packages\": [[[]]]}", "deeper" },
        /* json-glib reads comments: a quote in one hides no nesting */
        { "/* \" */ {\"format\": 1, \"version\": 2, \"expires\": "
          "\"2099-01-01T00:00:00Z\", \"packages\": [[[]]]} /* \" */",
          "deeper" },
        { "{\"format\": 1, \"version\": 2, \"expires\": '\"', "
          "\"packages\": [[[]]], \"x\": '\"'}", "deeper" },
        { "{\"format\": 1, \"version\": 2, \"expires\": "
          "\"2099-01-01T00:00:00Z\", \"packages\": [7]}", "not an object" },
        { "{\"format\": 1, \"version\": 2, \"expires\": "
          "\"2099-01-01T00:00:00Z\", \"packages\": [{\"name\": \"echo\", "
          "\"version\": \"1\", \"size\": 5, \"path\": \"../x\", \"sha256\": "
          "\"" "0123456789abcdef0123456789abcdef"
          "0123456789abcdef0123456789abcdef" "\"}]}", "invalid path" },
        { "{\"format\": 1, \"version\": 2, \"expires\": "
          "\"2099-01-01T00:00:00Z\", \"packages\": [{\"name\": \"echo\", "
          "\"version\": \"1\", \"size\": -5, \"path\": \"x\", \"sha256\": "
          "\"" "0123456789abcdef0123456789abcdef"
          "0123456789abcdef0123456789abcdef" "\"}]}", "invalid size" },
        { "{\"format\": 1, \"version\": 2, \"expires\": "
          "\"2099-01-01T00:00:00Z\", \"packages\": [{\"name\": \"Echo/..\", "
          "\"version\": \"1\", \"size\": 5, \"path\": \"x\", \"sha256\": "
          "\"" "0123456789abcdef0123456789abcdef"
          "0123456789abcdef0123456789abcdef" "\"}]}", "invalid name" },
        { "{\"format\": 1, \"version\": 2, \"expires\": "
          "\"2099-01-01T00:00:00Z\", \"packages\": [{\"name\": \"echo\", "
          "\"version\": \"1\", \"size\": 5, \"path\": \"x\", \"sha256\": "
          "\"0123\"}]}", "invalid sha256" },
        { "{\"format\": 1, \"version\": 2, \"expires\": "
          "\"2099-01-01T00:00:00Z\", \"packages\": [{\"name\": \"echo\", "
          "\"version\": \"1\", \"size\": 5, \"path\": \"x\", \"sha256\": "
          "\"" "0123456789abcdef0123456789abcdef"
          "0123456789abcdef0123456789abcdef" "\"}, {\"name\": \"echo\", "
          "\"version\": \"1.0\", \"size\": 5, \"path\": \"y\", \"sha256\": "
          "\"" "0123456789abcdef0123456789abcdef"
          "0123456789abcdef0123456789abcdef" "\"}]}", "listed twice" },
    };
    g_autoptr(GString) deep = g_string_new("{\"a\":\"\\\"[[[\", \"b\":");

    for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_autoptr(GError) error = NULL;
        g_autoptr(GBytes) b = g_bytes_new_static(bad[i].json,
                                                 strlen(bad[i].json));
        g_autoptr(VmaugRepoIndex) index = repo_index_parse(b, &error);

        g_assert_null(index);
        g_assert_error(error, VMAUG_REPO_ERROR, VMAUG_REPO_ERROR_INVALID);
        if (strstr(error->message, bad[i].reason) == NULL) {
            g_error("case %zu: \"%s\" lacks \"%s\"", i, error->message,
                    bad[i].reason);
        }
    }
    /* A stack-breaking nest is refused before json-glib recurses. */
    for (guint i = 0; i < 100000; i++) {
        g_string_append_c(deep, '[');
    }
    {
        g_autoptr(GError) error = NULL;
        g_autoptr(GBytes) b = g_bytes_new(deep->str, deep->len);
        g_autoptr(VmaugRepoIndex) index = repo_index_parse(b, &error);

        g_assert_error(error, VMAUG_REPO_ERROR, VMAUG_REPO_ERROR_INVALID);
        g_assert_nonnull(strstr(error->message, "deeper"));
    }
}

/* Plain HTTP and odd URLs are refused before any connection. */
static void test_url(void)
{
    static const gchar *const bad[] = {
        "http://127.0.0.1:1/", "https://", "https://127.0.0.1/a?b",
        "file://host/etc", "file:///", "/tmp/a%2e", "relative/dir",
        "127.0.0.1",
    };
    g_autoptr(Case) c = case_new("ok");

    for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
        c->opts.url = bad[i];
        case_refused(c, NULL, VMAUG_REPO_ERROR_INVALID, "URL");
    }
}

/* Run a tool; its exit status. */
static gint test_tool(const gchar *const *argv, gchar **out)
{
    g_autoptr(GError) error = NULL;
    gint status;

    g_spawn_sync(NULL, (gchar **)argv, NULL, out ? G_SPAWN_DEFAULT :
                 G_SPAWN_STDOUT_TO_DEV_NULL, NULL, NULL, out, NULL, &status,
                 &error);
    g_assert_no_error(error);
    g_assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

/*
 * The command-line tools end to end: vmaugment-pack builds a real package
 * of the echo module, vmaugment-repo publishes and fetches it, and
 * vmaugment-pack verifies what arrived.
 */
static void test_cli(void)
{
    g_autoptr(Case) c = case_new("ok");
    g_autofree gchar *pkg = g_strdup_printf("%s/echo-cli.vmod", T.dir);
    g_autofree gchar *out = NULL;
    g_autofree gchar *got = g_strdup_printf("%s/echo-2.0.vmod", c->dest);
    g_autofree gchar *other = test_pkg_file(T.keys->admin, "echo", "2.0");
    const gchar *tool = g_getenv("VMAUG_REPO_TOOL");
    const gchar *pack = g_getenv("VMAUG_PACK");
    const gchar *create[] = {
        pack, "create", "--manifest", g_getenv("VMAUG_ECHO_MANIFEST"),
        "--payload", g_getenv("VMAUG_ECHO_SO"), "--key", T.admin_key,
        "--cert", T.admin_cert, "--set-version", "2.0", "-o", pkg, NULL
    };
    const gchar *publish[] = {
        tool, "publish", "--dir", c->dir, "--key", T.admin_key,
        "--cert", T.admin_cert, "--expires-days", "1", pkg, NULL
    };
    const gchar *conflict[] = {
        tool, "publish", "--dir", c->dir, "--key", T.admin_key,
        "--cert", T.admin_cert, other, NULL
    };
    const gchar *past[] = {
        tool, "publish", "--dir", c->dir, "--key", T.admin_key,
        "--cert", T.admin_cert, "--expires", "2020-01-01T00:00:00Z", NULL
    };
    const gchar *fetch[] = {
        tool, "fetch", "--url", c->url, "--trust-dir", T.keys->trust_dir,
        "--state-dir", c->state, "--ca-file", T.ca_file, "--dest", c->dest,
        "echo", NULL
    };
    const gchar *verify[] = {
        pack, "verify", "--trust-dir", T.keys->trust_dir, got, NULL
    };
    const gchar *list[] = {
        tool, "list", "--url", c->url, "--trust-dir", T.keys->trust_dir,
        "--state-dir", c->state, "--ca-file", T.ca_file, NULL
    };
    const gchar *wrong_ca[] = {
        tool, "fetch", "--url", c->url, "--trust-dir", T.keys->trust_dir,
        "--state-dir", c->state, "--ca-file", T.other_ca_file, "--dest",
        c->dest, "echo", NULL
    };

    test_run(create);
    test_run(publish);
    /* Another package under a published name and version is refused. */
    g_assert_cmpint(test_tool(conflict, NULL), ==, VMAUG_EXIT_REFUSED);
    /* An index that would be born expired is a mistake of the command. */
    g_assert_cmpint(test_tool(past, NULL), ==, VMAUG_EXIT_USAGE);

    g_assert_cmpint(test_tool(fetch, &out), ==, 0);
    g_assert_nonnull(strstr(out, "echo 2.0 "));
    g_assert_true(g_file_test(got, G_FILE_TEST_IS_REGULAR));
    g_assert_cmpint(test_tool(verify, NULL), ==, 0);
    g_clear_pointer(&out, g_free);
    g_assert_cmpint(test_tool(list, &out), ==, 0);
    g_assert_nonnull(strstr(out, "metadata version 1, expires "));
    g_assert_nonnull(strstr(out, "echo 2.0 "));
    g_assert_cmpint(g_unlink(got), ==, 0);

    g_assert_cmpint(test_tool(wrong_ca, NULL), ==, VMAUG_EXIT_REFUSED);
    case_assert_empty(c);
}

/* Nobody listening: the start of an image needing it fails clearly. */
static void test_unreachable(void)
{
    g_autoptr(Case) c = case_new("ok");
    g_autoptr(GSocket) sock = NULL;
    g_autoptr(GInetAddress) lo =
        g_inet_address_new_loopback(G_SOCKET_FAMILY_IPV4);
    g_autoptr(GSocketAddress) addr = g_inet_socket_address_new(lo, 0);
    g_autoptr(GSocketAddress) bound = NULL;
    g_autoptr(GError) error = NULL;
    guint port;

    /* A port that was free a moment ago, and is closed again. */
    sock = g_socket_new(G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM,
                        G_SOCKET_PROTOCOL_TCP, &error);
    g_assert_no_error(error);
    g_socket_bind(sock, addr, FALSE, &error);
    g_assert_no_error(error);
    bound = g_socket_get_local_address(sock, &error);
    g_assert_no_error(error);
    port = g_inet_socket_address_get_port(G_INET_SOCKET_ADDRESS(bound));
    g_socket_close(sock, NULL);

    g_free(c->url);
    c->url = g_strdup_printf("https://127.0.0.1:%u/", port);
    c->opts.url = c->url;
    case_refused(c, NULL, VMAUG_REPO_ERROR_NETWORK, "127.0.0.1");
}

/* Straight into the module store, every decision audited. */
static void test_install(void)
{
    g_autoptr(Case) c = case_new("ok");
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugPolicy) policy = vmaug_policy_new_default();
    g_autofree gchar *store_dir = g_strdup_printf("%s-store", c->dest);
    g_autofree gchar *audit = g_build_filename(store_dir, "audit.log", NULL);
    g_autofree gchar *downloads = g_build_filename(c->state, "downloads",
                                                   NULL);
    g_autoptr(VmaugStore) store = NULL;
    g_autoptr(VmaugRepoResult) r = NULL;
    g_autoptr(VmaugStoreEntry) entry = NULL;
    g_autoptr(GDir) d = NULL;

    store = vmaug_store_open(store_dir, T.keys->trust, policy, &error);
    g_assert_no_error(error);
    case_publish(c, "1.0");
    r = vmaug_repo_install(&c->opts, store, "echo", NULL, "test-host",
                           &error);
    g_assert_no_error(error);
    g_assert_cmpstr(r->version, ==, "1.0");
    g_assert_null(r->path);
    entry = vmaug_store_lookup(store, "echo", "1.0", &error);
    g_assert_no_error(error);
    g_assert_cmpstr(entry->sha256, ==, r->sha256);
    g_assert_cmpuint(test_count_lines(audit, "\"action\":\"repo-fetch\""),
                     ==, 1);
    g_assert_cmpuint(test_count_lines(audit, "\"action\":\"install\""),
                     ==, 1);
    /* The download served and is gone. */
    d = g_dir_open(downloads, 0, NULL);
    g_assert_nonnull(d);
    g_assert_null(g_dir_read_name(d));

    /* A refusal is audited with its reason and installs nothing. */
    case_tamper(c, -1, 200);
    g_clear_pointer(&r, vmaug_repo_result_free);
    r = vmaug_repo_install(&c->opts, store, "echo", "1.0", "test-host",
                           &error);
    g_assert_null(r);
    g_assert_error(error, VMAUG_REPO_ERROR, VMAUG_REPO_ERROR_MISMATCH);
    g_assert_cmpuint(test_count_lines(audit, "differs from the index"), ==,
                     1);
    g_assert_cmpuint(test_count_lines(audit, "\"action\":\"install\""),
                     ==, 1);
}

/* Throughput of a large package over loopback HTTPS (-m perf only). */
static void test_perf_large(void)
{
    g_autoptr(Case) c = case_new("ok");
    g_autoptr(GError) error = NULL;
    g_autoptr(GBytes) payload = NULL;
    g_autoptr(GBytes) pkg = NULL;
    g_autoptr(VmaugRepoResult) r = NULL;
    g_autoptr(VmaugRepoIndex) index = NULL;
    g_autofree gchar *path = g_strdup_printf("%s/big.vmod", T.dir);
    g_autofree gchar *m = test_manifest("echo", "9.0");
    const gchar *pkgs[] = { path, NULL };
    gsize size = 32 * 1024 * 1024;
    guint32 *buf = g_malloc(size);
    GRand *rand = g_rand_new_with_seed(7);
    gdouble secs;

    for (gsize i = 0; i < size / 4; i++) {
        buf[i] = g_rand_int(rand);
    }
    g_rand_free(rand);
    payload = g_bytes_new_take(buf, size);
    pkg = vmaug_package_build(m, NULL, payload, T.keys->admin, &error);
    g_assert_no_error(error);
    g_file_set_contents(path, g_bytes_get_data(pkg, NULL),
                        g_bytes_get_size(pkg), &error);
    g_assert_no_error(error);
    index = case_publish_full(c, T.admin_key, T.admin_cert, NULL,
                              g_get_real_time() / G_USEC_PER_SEC + DAY, pkgs);

    g_test_timer_start();
    r = case_fetch_ok(c, "9.0");
    secs = g_test_timer_elapsed();
    g_test_minimized_result(secs, "fetch of %" G_GUINT64_FORMAT " bytes: "
                            "%.3f s, %.1f MiB/s (index, signature, package, "
                            "hash, package signature, fsync)", r->size, secs,
                            r->size / secs / (1024 * 1024));
    g_unlink(path);
}

/*
 * The checks that do not depend on a server's misbehaviour, again on a
 * local repository (a directory, docs/repository.rst): the same
 * signature, expiry, rollback and hash checks must hold without HTTPS.
 */
struct LocalTest {
    const gchar *name;
    void (*fn)(void);
};

static const struct LocalTest local_tests[] = {
    { "success", test_success },
    { "not-found", test_not_found },
    { "expired", test_expired },
    { "rollback", test_rollback },
    { "version-reuse", test_version_reuse },
    { "hash-mismatch", test_hash_mismatch },
    { "unknown-signer", test_unknown_signer },
    { "bad-signature", test_bad_signature },
    { "package-signer", test_package_signer },
};

static void test_local(gconstpointer data)
{
    const struct LocalTest *t = data;

    T.local = TRUE;
    t->fn();
    T.local = FALSE;
}

int main(int argc, char **argv)
{
    int rc;

    g_test_init(&argc, &argv, NULL);
    if (g_getenv("VMAUG_REPO_SERVER") == NULL) {
        g_printerr("run through meson test\n");
        return 1;
    }
    test_setup();
    for (gsize i = 0; i < G_N_ELEMENTS(local_tests); i++) {
        g_autofree gchar *path = g_strdup_printf("/repo/local/%s",
                                                 local_tests[i].name);

        g_test_add_data_func(path, &local_tests[i], test_local);
    }
    g_test_add_func("/repo/success", test_success);
    g_test_add_func("/repo/not-found", test_not_found);
    g_test_add_func("/repo/expired", test_expired);
    g_test_add_func("/repo/rollback", test_rollback);
    g_test_add_func("/repo/version-reuse", test_version_reuse);
    g_test_add_func("/repo/hash-mismatch", test_hash_mismatch);
    g_test_add_func("/repo/size-mismatch", test_size_mismatch);
    g_test_add_func("/repo/oversize-body", test_oversize_body);
    g_test_add_func("/repo/oversize-index", test_oversize_index);
    g_test_add_func("/repo/slow-server", test_slow_server);
    g_test_add_func("/repo/trickle-server", test_trickle_server);
    g_test_add_func("/repo/tls-wrong-ca", test_tls_wrong_ca);
    g_test_add_func("/repo/tls-wrong-host", test_tls_wrong_host);
    g_test_add_func("/repo/unknown-signer", test_unknown_signer);
    g_test_add_func("/repo/bad-signature", test_bad_signature);
    g_test_add_func("/repo/package-signer", test_package_signer);
    g_test_add_func("/repo/index-parse", test_index_parse);
    g_test_add_func("/repo/url", test_url);
    g_test_add_func("/repo/unreachable", test_unreachable);
    g_test_add_func("/repo/install", test_install);
    g_test_add_func("/repo/cli", test_cli);
    if (g_test_perf()) {
        g_test_add_func("/repo/perf/large", test_perf_large);
    }
    rc = g_test_run();
    test_teardown();
    return rc;
}
