/*
 * rpm guests, read with the libraries rpm itself uses: SQLite for the
 * database (rpmdb.sqlite, the format of Fedora 33 and later, RHEL 9 and
 * its rebuilds) and librpm for the package headers in it and for version
 * comparison.
 *
 * The database is opened from memory (sqlite3_deserialize()), never as a
 * file: it is the guest's, it runs in the confined worker, which may open
 * nothing, and a memory database takes no locks and writes no journal.
 * rpm leaves a database in write-ahead-log mode; its header is switched
 * to rollback mode in our private copy so that SQLite reads it from memory
 * alone, which is exact when the guest's -wal file is empty (rpm
 * checkpoints when it closes the database).  A non-empty -wal file means
 * rpm did not close it: refused.  Berkeley DB (RHEL 8 and older) and ndb
 * (SUSE) databases are recognised and refused.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <string.h>

#include <rpm/header.h>
#include <rpm/rpmtag.h>
#include <rpm/rpmver.h>
#include <sqlite3.h>

#include "vo-rpm.h"
#include "vo-version.h"

/* A full Fedora workstation's is about 100 MiB. */
#define VO_RPM_MAX_DB (512u * 1024 * 1024)
/* Headers are at most 256 MiB in rpm itself; installed ones far less. */
#define VO_RPM_MAX_HEADER (64u * 1024 * 1024)
#define VO_RPM_MAX_PACKAGES 200000

/* Where distributions keep the database: /var/lib/rpm (RHEL 9), which
 * Fedora 36 and later make a link to /usr/lib/sysimage/rpm. */
static const char *const vo_rpm_dirs[] = {
    "/var/lib/rpm", "/usr/lib/sysimage/rpm",
};

/* The database formats rpm has, by the file each keeps its packages in. */
static const struct {
    const char *file;
    const char *why;        /* NULL: read */
} vo_rpm_formats[] = {
    { "rpmdb.sqlite", NULL },
    { "Packages", "Berkeley DB rpm databases (RHEL 8 and older) are not "
                  "read" },
    { "Packages.db", "ndb rpm databases (SUSE) are not read" },
};

static gboolean vo_rpm_add_header(const void *blob, int len,
                                  VoRpmPackageFunc func, gpointer data,
                                  GError **error)
{
    Header h;
    const char *name, *version, *release, *arch;
    g_autofree char *evr = NULL;

    if (len <= 0 || (guint)len > VO_RPM_MAX_HEADER) {
        g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT,
                    "rpm database: a package header of %d bytes", len);
        return FALSE;
    }
    /* HEADERIMPORT_COPY: the blob belongs to SQLite's statement.  Never
     * HEADERIMPORT_FAST, which skips the checks of the header's bounds. */
    h = headerImport((void *)blob, len, HEADERIMPORT_COPY);
    if (!h) {
        g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT,
                    "rpm database: a package header librpm refuses");
        return FALSE;
    }
    name = headerGetString(h, RPMTAG_NAME);
    version = headerGetString(h, RPMTAG_VERSION);
    release = headerGetString(h, RPMTAG_RELEASE);
    arch = headerGetString(h, RPMTAG_ARCH);
    /* gpg-pubkey entries are the keys rpm trusts, not software. */
    if (!name || !version || g_str_equal(name, "gpg-pubkey")) {
        headerFree(h);
        return TRUE;
    }
    if (headerIsEntry(h, RPMTAG_EPOCH)) {
        evr = g_strdup_printf("%" G_GUINT64_FORMAT ":%s%s%s",
                              headerGetNumber(h, RPMTAG_EPOCH), version,
                              release ? "-" : "", release ? release : "");
    } else {
        evr = g_strdup_printf("%s%s%s", version, release ? "-" : "",
                              release ? release : "");
    }
    func(name, evr, arch, data);
    headerFree(h);
    return TRUE;
}

gboolean vo_rpm_parse_db(GBytes *db, VoRpmPackageFunc func, gpointer data,
                         GError **error)
{
    gsize len;
    const guint8 *bytes = g_bytes_get_data(db, &len);
    sqlite3 *sql = NULL;
    sqlite3_stmt *st = NULL;
    unsigned char *copy;
    gboolean ok = FALSE;
    guint n = 0;
    int rc;

    /* SQLite's file header: magic, then write and read versions (2: WAL). */
    if (len < 100 || memcmp(bytes, "SQLite format 3", 16) != 0) {
        g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT,
                    "rpm database: not an SQLite database");
        return FALSE;
    }
    copy = sqlite3_malloc64(len);
    if (!copy) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "rpm database: out of memory");
        return FALSE;
    }
    memcpy(copy, bytes, len);
    copy[18] = copy[19] = 1;
    if (sqlite3_open_v2(":memory:", &sql, SQLITE_OPEN_READWRITE, NULL) ||
        sqlite3_db_config(sql, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL) ||
        sqlite3_deserialize(sql, "main", copy, len, len,
                            SQLITE_DESERIALIZE_READONLY |
                            SQLITE_DESERIALIZE_FREEONCLOSE)) {
        g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT,
                    "rpm database: SQLite cannot open it: %s",
                    sql ? sqlite3_errmsg(sql) : "out of memory");
        if (!sql) {
            sqlite3_free(copy);
        }
        goto out;
    }
    /* rpm's schema: Packages(hnum INTEGER PRIMARY KEY, blob BLOB). */
    if (sqlite3_prepare_v2(sql, "SELECT blob FROM Packages ORDER BY hnum",
                           -1, &st, NULL)) {
        g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT,
                    "rpm database: no package table: %s",
                    sqlite3_errmsg(sql));
        goto out;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (++n > VO_RPM_MAX_PACKAGES) {
            g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                        "rpm database: implausibly many packages");
            goto out;
        }
        if (sqlite3_column_type(st, 0) != SQLITE_BLOB ||
            !vo_rpm_add_header(sqlite3_column_blob(st, 0),
                               sqlite3_column_bytes(st, 0), func, data,
                               error)) {
            if (error && !*error) {
                g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT,
                            "rpm database: a package that is not a blob");
            }
            goto out;
        }
    }
    if (rc != SQLITE_DONE) {
        g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT,
                    "rpm database: %s", sqlite3_errmsg(sql));
        goto out;
    }
    ok = TRUE;
out:
    sqlite3_finalize(st);
    sqlite3_close(sql);
    return ok;
}

/* Reads DIR/NAME of the guest; NULL without error when it is absent. */
static GBytes *vo_rpm_file(VoGuest *guest, const char *dir, const char *name,
                           guint64 max, GError **error)
{
    g_autofree char *path = g_build_filename(dir, name, NULL);
    g_autoptr(GError) local = NULL;
    GBytes *b = vo_guest_read_file_max(guest, path, max, &local);

    if (!b && !g_error_matches(local, VO_ERROR, VO_ERROR_NOT_FOUND)) {
        g_propagate_error(error, g_steal_pointer(&local));
    }
    return b;
}

gboolean vo_rpm_read(VoGuest *guest, VoRpmPackageFunc func, gpointer data,
                     gboolean *found, GError **error)
{
    *found = FALSE;
    for (gsize d = 0; d < G_N_ELEMENTS(vo_rpm_dirs); d++) {
        for (gsize f = 0; f < G_N_ELEMENTS(vo_rpm_formats); f++) {
            g_autoptr(GError) local = NULL;
            g_autoptr(GBytes) db = NULL;
            g_autoptr(GBytes) wal = NULL;

            db = vo_rpm_file(guest, vo_rpm_dirs[d], vo_rpm_formats[f].file,
                             VO_RPM_MAX_DB, &local);
            if (!db) {
                if (local) {
                    g_propagate_prefixed_error(error,
                                               g_steal_pointer(&local),
                                               "rpm database: ");
                    return FALSE;
                }
                continue;
            }
            *found = TRUE;
            if (vo_rpm_formats[f].why) {
                g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED, "%s",
                            vo_rpm_formats[f].why);
                return FALSE;
            }
            wal = vo_rpm_file(guest, vo_rpm_dirs[d], "rpmdb.sqlite-wal",
                              VO_RPM_MAX_DB, error);
            if (error && *error) {
                return FALSE;
            }
            if (wal && g_bytes_get_size(wal) > 0) {
                g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                            "the rpm database has writes rpm never "
                            "checkpointed (a non-empty rpmdb.sqlite-wal): "
                            "boot the guest once, or run rpm "
                            "--rebuilddb in it");
                return FALSE;
            }
            return vo_rpm_parse_db(db, func, data, error);
        }
    }
    return TRUE;
}

gboolean vo_rpm_relate(const char *a, const char *op, const char *b,
                       gboolean *result, GError **error)
{
    rpmver va = rpmverParse(a);
    rpmver vb = rpmverParse(b);
    gboolean ok;

    if (!va || !vb) {
        g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                    "'%s' is not an rpm version", va ? b : a);
        ok = FALSE;
    } else {
        ok = vo_version_apply_op(rpmverCmp(va, vb), op, result, error);
    }
    rpmverFree(va);
    rpmverFree(vb);
    return ok;
}
