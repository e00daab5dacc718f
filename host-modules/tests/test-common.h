/*
 * Fixtures shared by the host-side tests: administrators, packages built
 * the honest way and the hostile way, and store snapshots.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef VMAUGMENT_TEST_COMMON_H
#define VMAUGMENT_TEST_COMMON_H

#include "host-common.h"
#include "store.h"

typedef struct {
    gchar *dir;                     /* scratch directory */
    gchar *trust_dir;               /* certificates the host trusts */
    VmaugTrustIdentity *admin;      /* trusted, self-signed */
    VmaugTrustIdentity *ca;         /* trusted CA */
    VmaugTrustIdentity *leaf;       /* issued by ca, valid */
    VmaugTrustIdentity *revoked;    /* issued by ca, revoked by its CRL */
    VmaugTrustIdentity *expired;    /* issued by ca, expired */
    VmaugTrustIdentity *stranger;   /* not trusted */
    VmaugTrustStore *trust;
} TestKeys;

TestKeys *test_keys_new(void);
void test_keys_free(TestKeys *k);

/* A manifest template for @name @version exporting "echo". */
gchar *test_manifest(const gchar *name, const gchar *version);
/* An honest package. */
GBytes *test_package(VmaugTrustIdentity *signer, const gchar *name,
                     const gchar *version, GBytes *payload);
/* A package from raw parts, whatever the manifest says: for hostile
 * manifests a signer could still have signed. */
GBytes *test_package_raw(VmaugTrustIdentity *signer, const gchar *manifest,
                         GBytes *payload);
GBytes *test_flip_bit(GBytes *in, gsize bit);
/* A variable meson.build sets in the test's environment, or fail the
 * test: without it the build is misconfigured, not the test skippable. */
const gchar *test_env(const gchar *name);
/* Read a file the build produced, or fail the test. */
GBytes *test_read(const gchar *path);
/* A listing of every file under @dir with its size and SHA-256: equal
 * snapshots mean the directory did not change. */
gchar *test_snapshot(const gchar *dir, const gchar *skip);
/* Lines of @path (the audit log). */
guint test_count_lines(const gchar *path, const gchar *needle);
/*
 * The records of @action (and @decision, unless NULL) in the audit log at
 * @path: in @single those written one by one, in @counted the sum of the
 * "count" of those that stand for several.  FALSE, both 0, when the log
 * cannot be read (no record was ever written).
 */
gboolean test_audit_tally(const gchar *path, const gchar *action,
                          const gchar *decision, guint *single,
                          guint64 *counted);
void test_rm_rf(const gchar *dir);
/* Run a program (searched in PATH), failing the test with its stderr
 * unless it exits 0. */
void test_run(const gchar *const *argv);
/*
 * @dir/@name.key and @dir/@name.crt made by certtool ($VMAUG_CERTTOOL)
 * from the template text @tmpl: issued by @dir/@ca.{key,crt}, or with @ca
 * NULL self-signed.
 */
void test_certtool(const gchar *dir, const gchar *name, const gchar *tmpl,
                   const gchar *ca);

/* A non-blocking TCP listener on 127.0.0.1 and its port: what a process
 * that escaped its sandbox could reach on the host. */
int test_listen_loopback(guint16 *port);

/* The SHA-256 of a file as sha256sum(1) computes it: lower-case hex. */
gchar *test_sha256sum(const gchar *path);
/* A signed package of a module the build made (host-modules/modules/NAME,
 * or "hostile"), found through $VMAUG_TEST_MODULES_BUILD and _SRC, or
 * $VMAUG_TEST_HOSTILE_SO and _MANIFEST; @version replaces the manifest's
 * when not NULL. */
GBytes *test_module_package(VmaugTrustIdentity *signer, const gchar *name,
                            const gchar *version);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(TestKeys, test_keys_free)

#endif /* VMAUGMENT_TEST_COMMON_H */
