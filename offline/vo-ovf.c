/*
 * OVF descriptor reading (GMarkup): only <File href=...> entries matter.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <string.h>
#include <sys/stat.h>

#include <glib/gstdio.h>

#include "vo-disk.h"
#include "vo-ovf.h"

#define VO_OVF_MAX_SIZE (4 * 1024 * 1024)

typedef struct {
    GPtrArray *hrefs;
} VoOvfState;

static const char *vo_ovf_local(const char *name)
{
    const char *colon = strrchr(name, ':');

    return colon ? colon + 1 : name;
}

static void vo_ovf_start(GMarkupParseContext *ctx, const char *element,
                         const char **names, const char **values,
                         gpointer data, GError **error)
{
    VoOvfState *st = data;

    if (!g_str_equal(vo_ovf_local(element), "File")) {
        return;
    }
    for (guint i = 0; names[i]; i++) {
        if (g_str_equal(vo_ovf_local(names[i]), "href")) {
            const char *href = values[i];

            /* The descriptor is untrusted: its disks sit beside it. */
            if (!*href || strchr(href, '/') || strchr(href, '\\') ||
                g_str_equal(href, ".") || g_str_equal(href, "..") ||
                href[0] == '.' || strchr(href, ':')) {
                g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                            "OVF file reference '%s' is not a plain file "
                            "name beside the descriptor", href);
                return;
            }
            g_ptr_array_add(st->hrefs, g_strdup(href));
        }
    }
}

GPtrArray *vo_ovf_parse(const char *ovf, const char *text, gsize len,
                        GError **error)
{
    static const GMarkupParser parser = { .start_element = vo_ovf_start };
    g_autoptr(GPtrArray) disks = g_ptr_array_new_with_free_func(g_free);
    g_autofree char *dir = g_path_get_dirname(ovf);
    g_autoptr(GMarkupParseContext) ctx = NULL;
    VoOvfState st = { .hrefs = g_ptr_array_new_with_free_func(g_free) };
    gboolean ok;

    if (len > VO_OVF_MAX_SIZE) {
        g_ptr_array_unref(st.hrefs);
        g_set_error(error, VO_ERROR, VO_ERROR_INVALID, "%s is too large",
                    ovf);
        return NULL;
    }
    ctx = g_markup_parse_context_new(&parser, 0, &st, NULL);
    ok = g_markup_parse_context_parse(ctx, text, len, error) &&
         g_markup_parse_context_end_parse(ctx, error);
    for (guint i = 0; ok && i < st.hrefs->len; i++) {
        g_autofree char *disk = g_build_filename(dir, st.hrefs->pdata[i],
                                                 NULL);
        GStatBuf sb;

        /* A plain name may still be a link to any file of the host (tar
         * unpacks links): only a file that is itself beside it. */
        if (g_lstat(disk, &sb) == 0 && !S_ISREG(sb.st_mode)) {
            g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                        "OVF file reference '%s' is not a regular file "
                        "beside the descriptor (a link or a device)",
                        (const char *)st.hrefs->pdata[i]);
            ok = FALSE;
            break;
        }
        g_ptr_array_add(disks, g_steal_pointer(&disk));
    }
    g_ptr_array_unref(st.hrefs);
    if (!ok) {
        g_prefix_error(error, "%s: ", ovf);
        return NULL;
    }
    if (disks->len == 0) {
        g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                    "%s references no disk files", ovf);
        return NULL;
    }
    return g_steal_pointer(&disks);
}

GPtrArray *vo_ovf_disks(const char *ovf, GError **error)
{
    g_autofree char *text = NULL;
    gsize len;

    if (!g_file_get_contents(ovf, &text, &len, error)) {
        return NULL;
    }
    return vo_ovf_parse(ovf, text, len, error);
}

char *vo_ovf_resolve_image(const char *path, GError **error)
{
    g_autoptr(GPtrArray) disks = NULL;

    if (g_str_has_suffix(path, ".ova")) {
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "%s: OVA archives are not serviced in place; unpack "
                    "it (tar -xf) and name the .ovf", path);
        return NULL;
    }
    if (!g_str_has_suffix(path, ".ovf")) {
        return g_strdup(path);
    }
    disks = vo_ovf_disks(path, error);
    if (!disks) {
        return NULL;
    }
    if (disks->len != 1) {
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "%s names %u disks; name one of them, or use batch",
                    path, disks->len);
        return NULL;
    }
    return g_strdup(disks->pdata[0]);
}
