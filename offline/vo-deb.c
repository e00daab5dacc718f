/*
 * Reading a .deb (vo-deb.h).  The package came in a signed bundle, so its
 * content is what the signer meant; it is still checked as dpkg-deb
 * would, because a mistake in it would be written into the guest: no
 * member path may leave the root, only files, directories and links are
 * accepted, and every size is bounded before memory is taken for it.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <string.h>

#include <archive.h>
#include <archive_entry.h>

#include "vo-deb.h"

static void vo_deb_member_free(VoDebMember *m)
{
    g_free(m->path);
    g_free(m->uname);
    g_free(m->gname);
    g_free(m->target);
    g_free(m->hardlink);
    if (m->data) {
        g_bytes_unref(m->data);
    }
    g_free(m);
}

void vo_deb_free(VoDeb *deb)
{
    if (!deb) {
        return;
    }
    vo_stanza_free(deb->control);
    g_hash_table_unref(deb->control_files);
    g_hash_table_unref(deb->control_modes);
    g_ptr_array_unref(deb->members);
    g_free(deb);
}

static gboolean vo_deb_invalid(GError **error, const char *name,
                               const char *fmt, ...) G_GNUC_PRINTF(3, 4);

static gboolean vo_deb_invalid(GError **error, const char *name,
                               const char *fmt, ...)
{
    va_list ap;
    g_autofree char *msg = NULL;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error(error, VO_ERROR, VO_ERROR_INVALID, "package %s: %s", name,
                msg);
    return FALSE;
}

char *vo_deb_clean_path(const char *tarpath)
{
    g_autofree char *p = NULL;
    g_auto(GStrv) parts = NULL;
    gsize len;

    if (!tarpath || !g_utf8_validate(tarpath, -1, NULL)) {
        return NULL;
    }
    if (g_str_has_prefix(tarpath, "./")) {
        tarpath += 2;
    } else if (tarpath[0] == '/') {
        tarpath += 1;
    }
    if (g_str_equal(tarpath, ".")) {
        tarpath = "";
    }
    p = g_strdup(tarpath);
    len = strlen(p);
    while (len > 0 && p[len - 1] == '/') {
        p[--len] = '\0';
    }
    if (len == 0) {
        return g_strdup("/.");
    }
    if (p[0] == '/' || strchr(p, '\n')) {
        return NULL;
    }
    parts = g_strsplit(p, "/", -1);
    for (guint i = 0; parts[i]; i++) {
        if (!*parts[i] || g_str_equal(parts[i], ".") ||
            g_str_equal(parts[i], "..")) {
            return NULL;
        }
    }
    return g_strconcat("/", p, NULL);
}

/* Reads the current entry's data, at most @max bytes. */
static GBytes *vo_deb_entry_data(struct archive *a, struct archive_entry *e,
                                 guint64 max, const char *name,
                                 const char *what, GError **error)
{
    gint64 size = archive_entry_size(e);
    guint8 *buf;
    la_ssize_t got;

    if (!archive_entry_size_is_set(e) || size < 0 || (guint64)size > max) {
        vo_deb_invalid(error, name, "%s is too large", what);
        return NULL;
    }
    buf = g_malloc(size ? size : 1);
    got = size ? archive_read_data(a, buf, size) : 0;
    if (got != size) {
        g_free(buf);
        vo_deb_invalid(error, name, "%s is truncated: %s", what,
                       archive_error_string(a) ? archive_error_string(a)
                                               : "short read");
        return NULL;
    }
    return g_bytes_new_take(buf, size);
}

/* A tar member of the ar archive, decompressed by libarchive. */
static struct archive *vo_deb_open_tar(GBytes *tar)
{
    struct archive *a = archive_read_new();
    gsize len;
    const void *p = g_bytes_get_data(tar, &len);

    /* The compressors deb(5) allows: none, gzip, xz, zstd. */
    archive_read_support_filter_none(a);
    archive_read_support_filter_gzip(a);
    archive_read_support_filter_xz(a);
    archive_read_support_filter_zstd(a);
    archive_read_support_format_tar(a);
    archive_read_support_format_gnutar(a);
    if (archive_read_open_memory(a, p, len) != ARCHIVE_OK) {
        archive_read_free(a);
        return NULL;
    }
    return a;
}

static gboolean vo_deb_read_control(VoDeb *deb, GBytes *tar,
                                    const char *name, GError **error)
{
    struct archive *a = vo_deb_open_tar(tar);
    struct archive_entry *e;
    guint64 total = 0;
    GBytes *control;
    gboolean ok = FALSE;
    int r;

    if (!a) {
        return vo_deb_invalid(error, name, "control.tar cannot be read");
    }
    while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
        g_autofree char *path = vo_deb_clean_path(archive_entry_pathname(e));
        GBytes *data;

        if (path && g_str_equal(path, "/.") &&
            archive_entry_filetype(e) == AE_IFDIR) {
            continue;
        }
        /* dpkg keeps control files under the package's name in one
         * directory: plain names only. */
        if (!path || strchr(path + 1, '/') ||
            archive_entry_filetype(e) != AE_IFREG ||
            g_hash_table_contains(deb->control_files, path + 1) ||
            g_hash_table_size(deb->control_files) >= 64 ||
            strlen(path + 1) > 64) {
            vo_deb_invalid(error, name, "control member %s is not a plain "
                           "file with a short, unique name",
                           path ? path : "(bad path)");
            goto out;
        }
        for (const char *c = path + 1; *c; c++) {
            if (!g_ascii_isalnum(*c) && !strchr("_-.+", *c)) {
                vo_deb_invalid(error, name, "control member %s has a bad "
                               "name", path);
                goto out;
            }
        }
        data = vo_deb_entry_data(a, e, VO_DEB_MAX_CONTROL - total, name,
                                 path + 1, error);
        if (!data) {
            goto out;
        }
        total += g_bytes_get_size(data);
        g_hash_table_insert(deb->control_files, g_strdup(path + 1), data);
        g_hash_table_insert(deb->control_modes, g_strdup(path + 1),
                            GUINT_TO_POINTER(archive_entry_perm(e) & 0777));
    }
    if (r != ARCHIVE_EOF) {
        vo_deb_invalid(error, name, "control.tar: %s",
                       archive_error_string(a));
        goto out;
    }
    control = g_hash_table_lookup(deb->control_files, "control");
    if (!control) {
        vo_deb_invalid(error, name, "no control file");
        goto out;
    }
    {
        g_autoptr(GPtrArray) stanzas = g_ptr_array_new_with_free_func(
            (GDestroyNotify)vo_stanza_free);
        g_autofree char *what = g_strdup_printf("%s: control", name);
        gsize len;
        const char *text = g_bytes_get_data(control, &len);

        if (!vo_deb822_parse(text, len, what, 2, stanzas, error)) {
            goto out;
        }
        if (stanzas->len != 1) {
            vo_deb_invalid(error, name, "the control file must hold one "
                           "paragraph");
            goto out;
        }
        deb->control = g_ptr_array_steal_index(stanzas, 0);
        /* Rewritten from its fields into the status file. */
        g_clear_pointer(&deb->control->raw, g_free);
    }
    g_hash_table_remove(deb->control_files, "control");
    g_hash_table_remove(deb->control_modes, "control");
    ok = TRUE;
out:
    archive_read_free(a);
    return ok;
}

static gboolean vo_deb_read_data(VoDeb *deb, GBytes *tar, const char *name,
                                 GError **error)
{
    g_autoptr(GHashTable) seen = g_hash_table_new(g_str_hash, g_str_equal);
    struct archive *a = vo_deb_open_tar(tar);
    struct archive_entry *e;
    guint64 total = 0;
    gboolean ok = FALSE;
    int r;

    if (!a) {
        return vo_deb_invalid(error, name, "data.tar cannot be read");
    }
    while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
        const char *tarpath = archive_entry_pathname(e);
        g_autofree char *path = vo_deb_clean_path(tarpath);
        const char *link = archive_entry_hardlink(e);
        VoDebMember *m;

        if (!path) {
            vo_deb_invalid(error, name, "member \"%s\" leaves the root or is "
                           "not a clean path", tarpath ? tarpath : "");
            goto out;
        }
        if (deb->members->len >= VO_DEB_MAX_MEMBERS) {
            vo_deb_invalid(error, name, "too many members");
            goto out;
        }
        if (g_hash_table_contains(seen, path)) {
            vo_deb_invalid(error, name, "%s appears twice", path);
            goto out;
        }
        m = g_new0(VoDebMember, 1);
        g_ptr_array_add(deb->members, m);
        m->path = g_steal_pointer(&path);
        g_hash_table_add(seen, m->path);
        m->mode = archive_entry_perm(e) & 07777;
        m->uid = archive_entry_uid(e);
        m->gid = archive_entry_gid(e);
        if (archive_entry_uname(e) && *archive_entry_uname(e)) {
            m->uname = g_strdup(archive_entry_uname(e));
        }
        if (archive_entry_gname(e) && *archive_entry_gname(e)) {
            m->gname = g_strdup(archive_entry_gname(e));
        }
        if (link) {
            m->hardlink = vo_deb_clean_path(link);
            m->type = VO_NODE_REGULAR;
            if (!m->hardlink || !g_hash_table_contains(seen, m->hardlink) ||
                g_str_equal(m->hardlink, m->path)) {
                vo_deb_invalid(error, name, "%s: hard link to \"%s\", not an "
                               "earlier member", m->path, link);
                goto out;
            }
            continue;
        }
        switch (archive_entry_filetype(e)) {
        case AE_IFREG:
            m->type = VO_NODE_REGULAR;
            m->data = vo_deb_entry_data(a, e, VO_DEB_MAX_DATA - total, name,
                                        m->path, error);
            if (!m->data) {
                goto out;
            }
            total += g_bytes_get_size(m->data);
            break;
        case AE_IFDIR:
            m->type = VO_NODE_DIRECTORY;
            break;
        case AE_IFLNK:
            m->type = VO_NODE_SYMLINK;
            m->target = g_strdup(archive_entry_symlink(e));
            if (!m->target || !*m->target || strlen(m->target) > 4095) {
                vo_deb_invalid(error, name, "%s: bad link target", m->path);
                goto out;
            }
            break;
        default:
            vo_deb_invalid(error, name, "%s: device nodes, fifos and "
                           "sockets are not unpacked offline", m->path);
            goto out;
        }
        if (g_str_equal(m->path, "/.") && m->type != VO_NODE_DIRECTORY) {
            vo_deb_invalid(error, name, "the root is not a directory");
            goto out;
        }
    }
    if (r != ARCHIVE_EOF) {
        vo_deb_invalid(error, name, "data.tar: %s", archive_error_string(a));
        goto out;
    }
    ok = TRUE;
out:
    archive_read_free(a);
    return ok;
}

/* The ar member's name without its compressor's suffix is @base. */
static gboolean vo_deb_member_is(const char *member, const char *base)
{
    static const char *const suffixes[] = { "", ".gz", ".xz", ".zst" };

    for (guint i = 0; i < G_N_ELEMENTS(suffixes); i++) {
        g_autofree char *want = g_strconcat(base, suffixes[i], NULL);

        if (g_str_equal(member, want)) {
            return TRUE;
        }
    }
    return FALSE;
}

/* The package @data; without @with_data, its control part only. */
static VoDeb *vo_deb_parse(GBytes *data, const char *name,
                           gboolean with_data, GError **error)
{
    g_autoptr(VoDeb) deb = g_new0(VoDeb, 1);
    g_autoptr(GBytes) control = NULL;
    g_autoptr(GBytes) payload = NULL;
    struct archive *a = archive_read_new();
    struct archive_entry *e;
    gsize len;
    const void *p = g_bytes_get_data(data, &len);
    guint index = 0;
    int r;

    deb->control_files = g_hash_table_new_full(g_str_hash, g_str_equal,
                                               g_free,
                                               (GDestroyNotify)g_bytes_unref);
    deb->control_modes = g_hash_table_new_full(g_str_hash, g_str_equal,
                                               g_free, NULL);
    deb->members = g_ptr_array_new_with_free_func(
        (GDestroyNotify)vo_deb_member_free);
    archive_read_support_format_ar(a);
    if (archive_read_open_memory(a, p, len) != ARCHIVE_OK) {
        vo_deb_invalid(error, name, "not an ar archive: %s",
                       archive_error_string(a));
        archive_read_free(a);
        return NULL;
    }
    /* deb(5): debian-binary first, then control.tar, then data.tar;
     * members starting with "_" are ignored. */
    while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
        const char *member = archive_entry_pathname(e);
        g_autoptr(GBytes) bytes = NULL;

        if (!member) {
            break;
        }
        if (member[0] == '_') {
            continue;
        }
        if (index == 2 && !with_data) {
            break;
        }
        bytes = vo_deb_entry_data(a, e, len, name, member, error);
        if (!bytes) {
            archive_read_free(a);
            return NULL;
        }
        if (index == 0 && g_str_equal(member, "debian-binary")) {
            if (g_bytes_get_size(bytes) < 4 ||
                memcmp(g_bytes_get_data(bytes, NULL), "2.", 2) != 0) {
                archive_read_free(a);
                vo_deb_invalid(error, name, "not format 2.x");
                return NULL;
            }
        } else if (index == 1 && vo_deb_member_is(member, "control.tar")) {
            control = g_steal_pointer(&bytes);
        } else if (index == 2 && vo_deb_member_is(member, "data.tar")) {
            payload = g_steal_pointer(&bytes);
        } else {
            archive_read_free(a);
            vo_deb_invalid(error, name, "unexpected member %s", member);
            return NULL;
        }
        index++;
    }
    if (r != ARCHIVE_EOF && r != ARCHIVE_OK) {
        vo_deb_invalid(error, name, "%s", archive_error_string(a));
        archive_read_free(a);
        return NULL;
    }
    archive_read_free(a);
    if (!control || (with_data && !payload)) {
        vo_deb_invalid(error, name, "lacks control.tar or data.tar");
        return NULL;
    }
    if (!vo_deb_read_control(deb, control, name, error) ||
        (with_data && !vo_deb_read_data(deb, payload, name, error))) {
        return NULL;
    }
    return g_steal_pointer(&deb);
}

VoDeb *vo_deb_read(GBytes *data, const char *name, GError **error)
{
    return vo_deb_parse(data, name, TRUE, error);
}

gboolean vo_deb_has_control_member(const char *path, const char *name,
                                   gboolean *has, GError **error)
{
    g_autoptr(GError) local = NULL;
    g_autoptr(VoDeb) deb = NULL;
    g_autoptr(GBytes) data = NULL;
    char *contents;
    gsize len;

    *has = FALSE;
    if (!g_file_get_contents(path, &contents, &len, &local)) {
        g_set_error(error, VO_ERROR, VO_ERROR_INVALID, "cannot read %s: %s",
                    path, local->message);
        return FALSE;
    }
    data = g_bytes_new_take(contents, len);
    deb = vo_deb_parse(data, path, FALSE, error);
    if (!deb) {
        return FALSE;
    }
    *has = g_str_equal(name, "control") ||
           g_hash_table_contains(deb->control_files, name);
    return TRUE;
}

GBytes *vo_deb_control_file(VoDeb *deb, const char *name)
{
    return g_hash_table_lookup(deb->control_files, name);
}

GPtrArray *vo_deb_conffiles(VoDeb *deb, const char *name, GError **error)
{
    g_autoptr(GPtrArray) out = g_ptr_array_new_with_free_func(g_free);
    GBytes *file = vo_deb_control_file(deb, "conffiles");
    g_autofree char *text = NULL;
    g_auto(GStrv) lines = NULL;

    if (!file) {
        return g_steal_pointer(&out);
    }
    text = g_strndup(g_bytes_get_data(file, NULL), g_bytes_get_size(file));
    lines = g_strsplit(text, "\n", -1);
    for (guint i = 0; lines[i]; i++) {
        char *line = g_strstrip(lines[i]);
        g_autofree char *path = NULL;

        if (!*line) {
            continue;
        }
        if (strchr(line, ' ') || strchr(line, '\t')) {
            vo_deb_invalid(error, name, "conffile flags (\"%s\") are not "
                           "handled offline", line);
            return NULL;
        }
        path = line[0] == '/' ? vo_deb_clean_path(line) : NULL;
        if (!path || g_str_equal(path, "/.")) {
            vo_deb_invalid(error, name, "bad conffile \"%s\"", line);
            return NULL;
        }
        g_ptr_array_add(out, g_steal_pointer(&path));
    }
    return g_steal_pointer(&out);
}
