/*
 * The guest's dpkg database (vo-dpkg-db.h).  Every byte of it was written
 * by the guest, which may have shaped it to make us write where it wants
 * (a /var/lib/dpkg that is a link, a .list naming "../../etc/shadow") or
 * to exhaust us (a huge status file): each directory and file is checked
 * before it is used and each size before it is read; what does not fit
 * dpkg's own format is refused, never repaired.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <string.h>

#include "vo-deb.h"
#include "vo-dpkg-db.h"

static void vo_diversion_free(VoDiversion *d)
{
    g_free(d->to);
    g_free(d->by);
    g_free(d);
}

void vo_file_trigger_free(VoFileTrigger *t)
{
    g_free(t->path);
    g_free(t->package);
    g_free(t);
}

static void vo_stat_override_free(VoStatOverride *o)
{
    g_free(o->user);
    g_free(o->group);
    g_free(o);
}

void vo_dpkg_db_free(VoDpkgDb *db)
{
    if (!db) {
        return;
    }
    g_ptr_array_unref(db->stanzas);
    g_hash_table_unref(db->diversions);
    g_hash_table_unref(db->lists);
    g_hash_table_unref(db->owners);
    g_ptr_array_unref(db->file_triggers);
    g_hash_table_unref(db->overrides);
    g_free(db);
}

static gboolean vo_dpkg_corrupt(GError **error, const char *fmt, ...)
    G_GNUC_PRINTF(2, 3);

static gboolean vo_dpkg_corrupt(GError **error, const char *fmt, ...)
{
    va_list ap;
    g_autofree char *msg = NULL;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT,
                "the guest's dpkg database: %s", msg);
    return FALSE;
}

gboolean vo_dpkg_check_admindir(VoGuest *guest, GError **error)
{
    static const char *const dirs[] = {
        "/var", "/var/lib", VO_DPKG_ADMINDIR, VO_DPKG_ADMINDIR "/info",
    };

    /* dpkg would follow links here; we would then write where the guest
     * pointed, so only real directories are accepted (a /var of its own
     * is its filesystem's root directory). */
    for (guint i = 0; i < G_N_ELEMENTS(dirs); i++) {
        g_auto(VoPath) p = { 0 };

        if (!vo_guest_resolve(guest, dirs[i], FALSE, &p, error)) {
            return FALSE;
        }
        if (!p.exists || p.st.type != VO_NODE_DIRECTORY) {
            g_set_error(error, VO_ERROR, VO_ERROR_ESCAPE,
                        "the guest's %s is %s, not a directory; refusing to "
                        "unpack packages", dirs[i],
                        !p.exists ? "missing"
                        : p.st.type == VO_NODE_SYMLINK ? "a symbolic link"
                                                       : "something else");
            return FALSE;
        }
    }
    return TRUE;
}

/* vo_dpkg_read_file(); with @text, as text (vo_fs_read_text()). */
static GBytes *vo_dpkg_read(VoGuest *guest, const char *path, guint64 max,
                            gboolean text, GError **error)
{
    g_auto(VoPath) p = { 0 };

    if (!vo_guest_resolve(guest, path, FALSE, &p, error)) {
        return NULL;
    }
    if (!p.exists) {
        g_set_error(error, VO_ERROR, VO_ERROR_NOT_FOUND, "%s: not found",
                    path);
        return NULL;
    }
    if (p.st.type != VO_NODE_REGULAR) {
        g_set_error(error, VO_ERROR, VO_ERROR_ESCAPE,
                    "the guest's %s is not a regular file (a link?); "
                    "refusing it", path);
        return NULL;
    }
    if (p.st.size > max) {
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "the guest's %s is implausibly large (%" G_GUINT64_FORMAT
                    " bytes)", path, p.st.size);
        return NULL;
    }
    if (text) {
        g_autofree char *what = g_strdup_printf("the guest's %s", path);

        return vo_fs_read_text(p.fs, p.node, p.st.size, what, error);
    }
    return p.fs->ops->read(p.fs, p.node, error);
}

GBytes *vo_dpkg_read_file(VoGuest *guest, const char *path, guint64 max,
                          GError **error)
{
    return vo_dpkg_read(guest, path, max, FALSE, error);
}

/* A text file of the database (a list, a trigger's interests); a missing
 * one gives empty bytes. */
static GBytes *vo_dpkg_read_optional(VoGuest *guest, const char *path,
                                     guint64 max, GError **error)
{
    g_autoptr(GError) local = NULL;
    GBytes *data = vo_dpkg_read(guest, path, max, TRUE, &local);

    if (!data && g_error_matches(local, VO_ERROR, VO_ERROR_NOT_FOUND)) {
        return g_bytes_new_static("", 0);
    }
    if (!data) {
        g_propagate_error(error, g_steal_pointer(&local));
    }
    return data;
}

/* The lines of @data, text read by vo_dpkg_read_optional() (so without a
 * NUL byte). */
static GStrv vo_dpkg_lines(GBytes *data)
{
    gsize len;
    const char *text = g_bytes_get_data(data, &len);
    g_autofree char *copy = g_strndup(text, len);

    return g_strsplit(copy, "\n", -1);
}

/* The lines of a database file that may be missing (then none). */
static GStrv vo_dpkg_read_lines(VoGuest *guest, const char *path,
                                GError **error)
{
    g_autoptr(GBytes) data = vo_dpkg_read_optional(guest, path,
                                                   VO_DPKG_MAX_LIST, error);

    return data ? vo_dpkg_lines(data) : NULL;
}

const char *vo_dpkg_status_word(const VoStanza *st, char **owned)
{
    const char *status = vo_stanza_get(st, "Status");
    g_auto(GStrv) words = NULL;

    *owned = NULL;
    if (!status) {
        return NULL;
    }
    words = g_strsplit(status, " ", -1);
    if (g_strv_length(words) != 3) {
        return NULL;
    }
    *owned = g_strdup(words[2]);
    return *owned;
}

char *vo_dpkg_info_name(const VoStanza *st)
{
    const char *name = vo_stanza_get(st, "Package");
    const char *ma = vo_stanza_get(st, "Multi-Arch");
    const char *arch = vo_stanza_get(st, "Architecture");

    if (ma && arch && g_str_equal(ma, "same")) {
        return g_strdup_printf("%s:%s", name, arch);
    }
    return g_strdup(name);
}

/* Package names as dpkg accepts them: they become file names in info/. */
static gboolean vo_dpkg_name_ok(const char *name)
{
    if (!name || !g_ascii_isalnum(name[0]) || strlen(name) > 128) {
        return FALSE;
    }
    for (const char *c = name; *c; c++) {
        if (!g_ascii_islower(*c) && !g_ascii_isdigit(*c) &&
            !strchr("+-.", *c)) {
            return FALSE;
        }
    }
    return TRUE;
}

static gboolean vo_dpkg_arch_ok(const char *arch)
{
    if (!arch || !*arch || strlen(arch) > 64) {
        return FALSE;
    }
    for (const char *c = arch; *c; c++) {
        if (!g_ascii_isalnum(*c) && *c != '-') {
            return FALSE;
        }
    }
    return TRUE;
}

static void vo_dpkg_add_owner(VoDpkgDb *db, const char *path,
                              const char *info)
{
    GPtrArray *who = g_hash_table_lookup(db->owners, path);

    if (!who) {
        who = g_ptr_array_new_with_free_func(g_free);
        g_hash_table_insert(db->owners, g_strdup(path), who);
    }
    if (!g_ptr_array_find_with_equal_func(who, info, g_str_equal, NULL)) {
        g_ptr_array_add(who, g_strdup(info));
    }
}

void vo_dpkg_db_set_list(VoDpkgDb *db, const char *info, GPtrArray *paths)
{
    GPtrArray *old = g_hash_table_lookup(db->lists, info);

    for (guint i = 0; old && i < old->len; i++) {
        GPtrArray *who = g_hash_table_lookup(db->owners, old->pdata[i]);
        guint at;

        if (who && g_ptr_array_find_with_equal_func(who, info, g_str_equal,
                                                    &at)) {
            g_ptr_array_remove_index(who, at);
        }
    }
    if (!paths) {
        g_hash_table_remove(db->lists, info);
        return;
    }
    for (guint i = 0; i < paths->len; i++) {
        vo_dpkg_add_owner(db, paths->pdata[i], info);
    }
    g_hash_table_replace(db->lists, g_strdup(info), paths);
}

gboolean vo_dpkg_db_owned_by_other(VoDpkgDb *db, const char *path,
                                   const char *info_a, const char *info_b,
                                   const char **who)
{
    GPtrArray *owners = g_hash_table_lookup(db->owners, path);

    for (guint i = 0; owners && i < owners->len; i++) {
        const char *o = owners->pdata[i];

        if (g_strcmp0(o, info_a) != 0 && g_strcmp0(o, info_b) != 0) {
            *who = o;
            return TRUE;
        }
    }
    return FALSE;
}

/* One package's .list: absolute clean paths, one a line. */
static gboolean vo_dpkg_read_list(VoDpkgDb *db, VoGuest *guest,
                                  const char *info, guint64 *total,
                                  GError **error)
{
    g_autofree char *path = g_strdup_printf(VO_DPKG_ADMINDIR "/info/%s.list",
                                            info);
    g_autoptr(GBytes) data = NULL;
    g_autoptr(GPtrArray) paths = g_ptr_array_new_with_free_func(g_free);
    g_auto(GStrv) lines = NULL;

    data = vo_dpkg_read_optional(guest, path, VO_DPKG_MAX_LIST, error);
    if (!data) {
        return FALSE;
    }
    *total += g_bytes_get_size(data);
    if (*total > VO_DPKG_MAX_LISTS_TOTAL) {
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "the guest's dpkg file lists are implausibly large");
        return FALSE;
    }
    lines = vo_dpkg_lines(data);
    for (guint i = 0; lines[i]; i++) {
        char *clean;

        if (!*lines[i]) {
            continue;
        }
        clean = lines[i][0] == '/' ? vo_deb_clean_path(lines[i]) : NULL;
        if (!clean) {
            /* The line is the guest's: say where, not what. */
            return vo_dpkg_corrupt(error, "%s, line %u is not an absolute "
                                   "clean path (\"..\", \".\" or empty "
                                   "components)", path, i + 1);
        }
        g_ptr_array_add(paths, clean);
    }
    vo_dpkg_db_set_list(db, info, g_steal_pointer(&paths));
    return TRUE;
}

static gboolean vo_dpkg_read_diversions(VoDpkgDb *db, VoGuest *guest,
                                        GError **error)
{
    const char *path = VO_DPKG_ADMINDIR "/diversions";
    g_auto(GStrv) lines = vo_dpkg_read_lines(guest, path, error);
    guint n;

    if (!lines) {
        return FALSE;
    }
    n = g_strv_length(lines);
    /* A trailing newline leaves one empty string. */
    if (n > 0 && !*lines[n - 1]) {
        n--;
    }
    if (n % 3) {
        return vo_dpkg_corrupt(error, "%s is not made of three-line "
                               "entries", path);
    }
    for (guint i = 0; i < n; i += 3) {
        g_autofree char *from = vo_deb_clean_path(lines[i]);
        g_autofree char *to = vo_deb_clean_path(lines[i + 1]);
        const char *by = lines[i + 2];
        VoDiversion *d;

        if (!from || !to || lines[i][0] != '/' || lines[i + 1][0] != '/' ||
            g_str_equal(from, "/.") || g_str_equal(to, "/.") ||
            (!g_str_equal(by, ":") && !vo_dpkg_name_ok(by))) {
            return vo_dpkg_corrupt(error, "%s, entry at line %u is not "
                                   "two absolute clean paths and a "
                                   "package", path, i + 1);
        }
        d = g_new0(VoDiversion, 1);
        d->to = g_steal_pointer(&to);
        d->by = g_strdup(by);
        g_hash_table_replace(db->diversions, g_steal_pointer(&from), d);
    }
    return TRUE;
}

/* "pkg[:arch][/noawait]" interested in @trigger, or NULL. */
static VoFileTrigger *vo_dpkg_interest(const char *word, const char *trigger)
{
    g_autofree char *pkg = g_strdup(word);
    gboolean noawait = g_str_has_suffix(pkg, "/noawait");
    char *colon;
    VoFileTrigger *t;

    if (noawait) {
        pkg[strlen(pkg) - strlen("/noawait")] = '\0';
    }
    colon = strchr(pkg, ':');
    if (colon) {
        *colon = '\0';
    }
    if (!vo_dpkg_name_ok(pkg) || (colon && !vo_dpkg_arch_ok(colon + 1))) {
        return NULL;
    }
    if (colon) {
        *colon = ':';
    }
    t = g_new0(VoFileTrigger, 1);
    t->path = g_strdup(trigger);
    t->package = g_steal_pointer(&pkg);
    t->noawait = noawait;
    return t;
}

gboolean vo_dpkg_read_interests(VoGuest *guest, const char *name,
                                GPtrArray *out, GError **error)
{
    g_autofree char *path = g_strdup_printf(VO_DPKG_ADMINDIR "/triggers/%s",
                                            name);
    g_auto(GStrv) lines = vo_dpkg_read_lines(guest, path, error);

    if (!lines) {
        return FALSE;
    }
    for (guint i = 0; lines[i]; i++) {
        VoFileTrigger *t;

        if (!*lines[i]) {
            continue;
        }
        t = vo_dpkg_interest(lines[i], name);
        if (!t) {
            return vo_dpkg_corrupt(error, "%s, line %u names no package",
                                   path, i + 1);
        }
        g_ptr_array_add(out, t);
    }
    return TRUE;
}

/* dpkg-statoverride's "USER GROUP MODE PATH" lines. */
static gboolean vo_dpkg_read_overrides(VoDpkgDb *db, VoGuest *guest,
                                       GError **error)
{
    const char *path = VO_DPKG_ADMINDIR "/statoverride";
    g_auto(GStrv) lines = vo_dpkg_read_lines(guest, path, error);

    if (!lines) {
        return FALSE;
    }
    for (guint i = 0; lines[i]; i++) {
        g_auto(GStrv) w = NULL;
        g_autofree char *clean = NULL;
        char *end = NULL;
        guint64 mode;
        VoStatOverride *o;

        if (!*lines[i]) {
            continue;
        }
        w = g_strsplit(lines[i], " ", 4);
        if (g_strv_length(w) != 4 || !*w[0] || !*w[1] || !*w[2] ||
            w[3][0] != '/' || !(clean = vo_deb_clean_path(w[3]))) {
            return vo_dpkg_corrupt(error, "%s, line %u is not \"USER GROUP "
                                   "MODE PATH\"", path, i + 1);
        }
        mode = g_ascii_strtoull(w[2], &end, 8);
        if (*end || mode > 07777) {
            return vo_dpkg_corrupt(error, "%s, line %u has a bad mode", path,
                                   i + 1);
        }
        o = g_new0(VoStatOverride, 1);
        o->user = g_strdup(w[0]);
        o->group = g_strdup(w[1]);
        o->mode = mode;
        g_hash_table_replace(db->overrides, g_steal_pointer(&clean), o);
    }
    return TRUE;
}

/* File trigger interests: "PATH PACKAGE[/noawait]" lines (none without a
 * triggers directory). */
static gboolean vo_dpkg_read_triggers(VoDpkgDb *db, VoGuest *guest,
                                      GError **error)
{
    const char *path = VO_DPKG_ADMINDIR "/triggers/File";
    g_auto(GStrv) lines = vo_dpkg_read_lines(guest, path, error);

    if (!lines) {
        return FALSE;
    }
    for (guint i = 0; lines[i]; i++) {
        g_auto(GStrv) w = NULL;
        g_autofree char *clean = NULL;
        VoFileTrigger *t;

        if (!*lines[i]) {
            continue;
        }
        w = g_strsplit(lines[i], " ", -1);
        if (g_strv_length(w) != 2 || w[0][0] != '/' ||
            !(clean = vo_deb_clean_path(w[0]))) {
            return vo_dpkg_corrupt(error, "%s, line %u is not \"PATH "
                                   "PACKAGE\"", path, i + 1);
        }
        t = vo_dpkg_interest(w[1], clean);
        if (!t) {
            return vo_dpkg_corrupt(error, "%s, line %u names no package",
                                   path, i + 1);
        }
        g_ptr_array_add(db->file_triggers, t);
    }
    return TRUE;
}

VoDpkgDb *vo_dpkg_db_read(VoGuest *guest, GError **error)
{
    g_autoptr(VoDpkgDb) db = g_new0(VoDpkgDb, 1);
    g_autoptr(GBytes) status = NULL;
    g_autoptr(GHashTable) seen = g_hash_table_new_full(g_str_hash,
                                                       g_str_equal, g_free,
                                                       NULL);
    g_autoptr(GError) local = NULL;
    guint64 total = 0;
    gsize len;
    const char *text;

    db->stanzas = g_ptr_array_new_with_free_func(
        (GDestroyNotify)vo_stanza_free);
    db->diversions = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                           (GDestroyNotify)vo_diversion_free);
    db->lists = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                      (GDestroyNotify)g_ptr_array_unref);
    db->owners = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                       (GDestroyNotify)g_ptr_array_unref);
    db->file_triggers = g_ptr_array_new_with_free_func(
        (GDestroyNotify)vo_file_trigger_free);
    db->overrides = g_hash_table_new_full(
        g_str_hash, g_str_equal, g_free,
        (GDestroyNotify)vo_stat_override_free);

    if (!vo_dpkg_check_admindir(guest, error)) {
        return NULL;
    }
    /* An interrupted dpkg leaves journal entries the status file lacks;
     * dpkg merges them first, and we cannot list the directory. */
    if (vo_dpkg_read_file(guest, VO_DPKG_ADMINDIR "/updates/0000", 0,
                          &local) ||
        !g_error_matches(local, VO_ERROR, VO_ERROR_NOT_FOUND)) {
        g_set_error(error, VO_ERROR, VO_ERROR_DIRTY,
                    "the guest's dpkg was interrupted (%s/updates holds a "
                    "journal); boot it and run dpkg --configure -a first",
                    VO_DPKG_ADMINDIR);
        return NULL;
    }
    status = vo_dpkg_read(guest, VO_DPKG_ADMINDIR "/status",
                          VO_DPKG_MAX_STATUS, TRUE, error);
    if (!status) {
        return NULL;
    }
    text = g_bytes_get_data(status, &len);
    if (!vo_deb822_parse(text, len, "the guest's dpkg status",
                         VO_DPKG_MAX_PACKAGES, db->stanzas, error)) {
        return NULL;
    }
    for (guint i = 0; i < db->stanzas->len; i++) {
        VoStanza *st = db->stanzas->pdata[i];
        const char *name = vo_stanza_get(st, "Package");
        const char *arch = vo_stanza_get(st, "Architecture");
        const char *ma = vo_stanza_get(st, "Multi-Arch");
        g_autofree char *word_owned = NULL;
        const char *word = vo_dpkg_status_word(st, &word_owned);
        g_autofree char *info = NULL;

        if (!vo_dpkg_name_ok(name) || !word ||
            (arch && !vo_dpkg_arch_ok(arch)) ||
            (ma && g_str_equal(ma, "same") && !arch)) {
            vo_dpkg_corrupt(error, "status paragraph %u has a bad Package, "
                            "Architecture or Status", i + 1);
            return NULL;
        }
        info = vo_dpkg_info_name(st);
        if (!g_hash_table_add(seen, g_strdup(info))) {
            vo_dpkg_corrupt(error, "package %s appears twice in the status "
                            "file", info);
            return NULL;
        }
        if (!g_str_equal(word, "not-installed") &&
            !vo_dpkg_read_list(db, guest, info, &total, error)) {
            return NULL;
        }
    }
    if (!vo_dpkg_read_diversions(db, guest, error) ||
        !vo_dpkg_read_triggers(db, guest, error) ||
        !vo_dpkg_read_overrides(db, guest, error)) {
        return NULL;
    }
    return g_steal_pointer(&db);
}

VoStanza *vo_dpkg_db_find(VoDpkgDb *db, const char *name, const char *arch)
{
    for (guint i = 0; i < db->stanzas->len; i++) {
        VoStanza *st = db->stanzas->pdata[i];

        if (g_strcmp0(vo_stanza_get(st, "Package"), name) == 0 &&
            g_strcmp0(vo_stanza_get(st, "Architecture"), arch) == 0) {
            return st;
        }
    }
    return NULL;
}

VoStanza *vo_dpkg_db_find_info(VoDpkgDb *db, const char *info)
{
    g_autofree char *name = g_strdup(info);
    char *colon = strchr(name, ':');

    if (colon) {
        *colon = '\0';
        return vo_dpkg_db_find(db, name, colon + 1);
    }
    for (guint i = 0; i < db->stanzas->len; i++) {
        VoStanza *st = db->stanzas->pdata[i];
        g_autofree char *owned = NULL;
        const char *word = vo_dpkg_status_word(st, &owned);

        if (g_strcmp0(vo_stanza_get(st, "Package"), name) == 0 &&
            g_strcmp0(word, "not-installed") != 0) {
            return st;
        }
    }
    return NULL;
}

void vo_dpkg_db_put(VoDpkgDb *db, VoStanza *stanza)
{
    const char *name = vo_stanza_get(stanza, "Package");
    const char *arch = vo_stanza_get(stanza, "Architecture");
    guint at = db->stanzas->len;

    for (guint i = 0; i < db->stanzas->len; i++) {
        VoStanza *st = db->stanzas->pdata[i];
        const char *other = vo_stanza_get(st, "Package");

        if (g_strcmp0(other, name) == 0 &&
            g_strcmp0(vo_stanza_get(st, "Architecture"), arch) == 0) {
            vo_stanza_free(db->stanzas->pdata[i]);
            db->stanzas->pdata[i] = stanza;
            return;
        }
        /* dpkg writes the file sorted by name, then architecture. */
        if (at == db->stanzas->len &&
            (g_strcmp0(other, name) > 0 ||
             (g_strcmp0(other, name) == 0 &&
              g_strcmp0(vo_stanza_get(st, "Architecture"), arch) > 0))) {
            at = i;
        }
    }
    g_ptr_array_insert(db->stanzas, at, stanza);
}

GBytes *vo_dpkg_db_status_bytes(VoDpkgDb *db)
{
    GString *out = g_string_new(NULL);

    for (guint i = 0; i < db->stanzas->len; i++) {
        vo_stanza_write(db->stanzas->pdata[i], out);
        g_string_append_c(out, '\n');
    }
    return g_string_free_to_bytes(out);
}
