/*
 * Debian version comparison through libdpkg, so that our answer is by
 * construction the one 'dpkg --compare-versions' gives; and the checks of
 * names and versions that other files write into dpkg's or apt's files.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"
#define LIBDPKG_VOLATILE_API 1

#include <string.h>

#include <dpkg/arch.h>
#include <dpkg/dpkg-db.h>
#include <dpkg/dpkg.h>
#include <dpkg/error.h>
#include <dpkg/version.h>

#include "vo-disk.h"
#include "vo-version.h"

/* libdpkg keeps parsed strings in a global obstack. */
static GMutex vo_version_lock;

static gboolean vo_version_parse(struct dpkg_version *v, const char *s,
                                 GError **error)
{
    struct dpkg_error err = DPKG_ERROR_INIT;

    /* Like dpkg --compare-versions, accept what dpkg only warns about. */
    if (parseversion(v, s, &err) < 0 && err.type == DPKG_MSG_ERROR) {
        g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                    "invalid version '%s': %s", s, err.str ? err.str : "");
        dpkg_error_destroy(&err);
        return FALSE;
    }
    dpkg_error_destroy(&err);
    return TRUE;
}

gboolean vo_version_compare(const char *a, const char *b, int *result,
                            GError **error)
{
    struct dpkg_version va, vb;
    gboolean ok;

    g_mutex_lock(&vo_version_lock);
    ok = vo_version_parse(&va, a, error) && vo_version_parse(&vb, b, error);
    if (ok) {
        *result = dpkg_version_compare(&va, &vb);
    }
    g_mutex_unlock(&vo_version_lock);
    return ok;
}

gboolean vo_version_relate(const char *a, const char *op, const char *b,
                           gboolean *result, GError **error)
{
    int cmp;

    return vo_version_compare(a, b, &cmp, error) &&
           vo_version_apply_op(cmp, op, result, error);
}

gboolean vo_version_apply_op(int cmp, const char *op, gboolean *result,
                             GError **error)
{
    if (g_str_equal(op, "<<") || g_str_equal(op, "<") ||
        g_str_equal(op, "lt")) {
        *result = cmp < 0;
    } else if (g_str_equal(op, "<=") || g_str_equal(op, "le")) {
        *result = cmp <= 0;
    } else if (g_str_equal(op, "=") || g_str_equal(op, "==") ||
               g_str_equal(op, "eq")) {
        *result = cmp == 0;
    } else if (g_str_equal(op, "!=") || g_str_equal(op, "ne")) {
        *result = cmp != 0;
    } else if (g_str_equal(op, ">=") || g_str_equal(op, "ge")) {
        *result = cmp >= 0;
    } else if (g_str_equal(op, ">>") || g_str_equal(op, ">") ||
               g_str_equal(op, "gt")) {
        *result = cmp > 0;
    } else {
        g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                    "unknown version operator '%s'", op);
        return FALSE;
    }
    return TRUE;
}

gboolean vo_version_check(const char *v, GError **error)
{
    int cmp;

    /* parseversion() only warns about other characters; a space or a
     * newline would end the field it is written into. */
    for (const char *p = v; *p; p++) {
        if (!g_ascii_isalnum(*p) && !strchr(".+-~:", *p)) {
            g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                        "invalid character in version");
            return FALSE;
        }
    }
    if (!*v) {
        g_set_error(error, VO_ERROR, VO_ERROR_INVALID, "empty version");
        return FALSE;
    }
    return vo_version_compare(v, v, &cmp, error);
}

gboolean vo_version_check_package(const char *name, GError **error)
{
    const char *why = pkg_name_is_illegal(name);

    if (why) {
        g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                    "invalid package name: %s", why);
        return FALSE;
    }
    return TRUE;
}

gboolean vo_version_check_arch(const char *arch, GError **error)
{
    const char *why = dpkg_arch_name_is_illegal(arch);

    if (why) {
        g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                    "invalid architecture name: %s", why);
        return FALSE;
    }
    return TRUE;
}
