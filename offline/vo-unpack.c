/*
 * Unpacking Debian packages into a guest as dpkg --unpack does: files
 * installed (conffiles as PATH.dpkg-new, for dpkg --configure to settle),
 * diversions honoured, files the new version no longer ships removed
 * unless another package lists them, the package's info files and its
 * status paragraph ("install ok unpacked", Config-Version, the old
 * conffile hashes) written.  Maintainer scripts never run here: a package
 * with a preinst is refused, the others' postinst runs at the guest's
 * next dpkg --configure.
 *
 * The packages are trusted (signed bundle); the guest's database and
 * tree are not (vo-dpkg-db.c reads them): every path is resolved inside
 * the guest by vo-guest.c, and what does not fit dpkg's rules is refused
 * before anything is written.  docs/offline.rst ("Packages") is
 * normative.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <string.h>

#include "vo-deb.h"
#include "vo-dpkg-db.h"
#include "vo-unpack.h"

#define VO_UNPACK_MAX_IDS_FILE (16u * 1024 * 1024)

/* dpkg's field order in the status file (lib/dpkg/parse.c fieldinfos);
 * other fields follow in the control file's order. */
static const char *const vo_unpack_field_order[] = {
    "Package", "Essential", "Protected", "Status", "Priority", "Section",
    "Installed-Size", "Origin", "Maintainer", "Bugs", "Architecture",
    "Multi-Arch", "Source", "Version", "Config-Version", "Replaces",
    "Provides", "Depends", "Pre-Depends", "Recommends", "Suggests",
    "Breaks", "Conflicts", "Enhances", "Conffiles", "Description",
    "Triggers-Pending", "Triggers-Awaited", NULL,
};

/* Control fields dpkg does not carry into the status file. */
static const char *const vo_unpack_field_dropped[] = {
    "Filename", "Size", "MD5sum", "MSDOS-Filename", "Revision",
    "Package-Revision", "Package_Revision", NULL,
};

/* Info files a package may have had: those not shipped again go. */
static const char *const vo_unpack_info_names[] = {
    "preinst", "postinst", "prerm", "postrm", "config", "templates",
    "conffiles", "md5sums", "shlibs", "symbols", "triggers", "clilibs",
    NULL,
};

typedef struct {
    VoDebMember *m;         /* borrowed from the job's package */
    char *target;           /* where it goes: diverted, ".dpkg-new" */
    guint32 mode, uid, gid; /* the archive's, or the guest's override */
    char *link_to;          /* hard links: the target of the member */
} VoUnpackFile;

typedef struct {
    VoPackageOp *op;
    VoDeb *deb;
    char *info;             /* "pkg" or "pkg:arch" */
    char *old_info;         /* NULL on a new install */
    VoStanza *stanza;       /* the new status paragraph */
    GPtrArray *files;       /* VoUnpackFile* */
    GPtrArray *list;        /* the new .list */
    GPtrArray *remove;      /* guest paths of old files to delete */
    GPtrArray *rmdir;       /* old directories, deepest first */
    GPtrArray *info_write;  /* control file names to install */
    GPtrArray *info_delete; /* guest paths of old info files */
    GHashTable *conffiles;  /* new conffile paths */
    GHashTable *md5sums;    /* "/path" -> md5 */
    GPtrArray *activated;   /* VoFileTrigger*: the database's or named */
    GPtrArray *named;       /* VoFileTrigger*, owned: named triggers */
    guint obsolete;         /* old conffiles kept as obsolete */
} VoUnpackJob;

typedef struct {
    GHashTable *users;      /* name -> GUINT_TO_POINTER(id) */
    GHashTable *groups;
} VoUnpackIds;

static void vo_unpack_file_free(VoUnpackFile *f)
{
    g_free(f->target);
    g_free(f->link_to);
    g_free(f);
}

static void vo_unpack_job_free(VoUnpackJob *job)
{
    if (!job) {
        return;
    }
    vo_deb_free(job->deb);
    g_free(job->info);
    g_free(job->old_info);
    vo_stanza_free(job->stanza);
    g_ptr_array_unref(job->files);
    g_ptr_array_unref(job->list);
    g_ptr_array_unref(job->remove);
    g_ptr_array_unref(job->rmdir);
    g_ptr_array_unref(job->info_write);
    g_ptr_array_unref(job->info_delete);
    g_hash_table_unref(job->conffiles);
    g_hash_table_unref(job->md5sums);
    g_ptr_array_unref(job->activated);
    g_ptr_array_unref(job->named);
    g_free(job);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VoUnpackJob, vo_unpack_job_free)

static void vo_unpack_ids_clear(VoUnpackIds *ids)
{
    g_clear_pointer(&ids->users, g_hash_table_unref);
    g_clear_pointer(&ids->groups, g_hash_table_unref);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(VoUnpackIds, vo_unpack_ids_clear)

static gboolean vo_unpack_refuse(GError **error, VoError code,
                                 VoPackageOp *op, const char *fmt, ...)
    G_GNUC_PRINTF(4, 5);

static gboolean vo_unpack_refuse(GError **error, VoError code,
                                 VoPackageOp *op, const char *fmt, ...)
{
    va_list ap;
    g_autofree char *msg = NULL;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error(error, VO_ERROR, code, "package %s:%s %s: %s", op->package,
                op->architecture, op->version, msg);
    return FALSE;
}

/* "name:x:id:..." lines of the guest's passwd or group file. */
static gboolean vo_unpack_read_ids(VoGuest *guest, const char *path,
                                   GHashTable **out, GError **error)
{
    g_autoptr(GError) local = NULL;
    g_autoptr(GBytes) data = vo_guest_read_file_max(guest, path,
                                                    VO_UNPACK_MAX_IDS_FILE,
                                                    &local);
    g_autofree char *text = NULL;
    g_auto(GStrv) lines = NULL;

    *out = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    if (!data) {
        if (g_error_matches(local, VO_ERROR, VO_ERROR_NOT_FOUND)) {
            return TRUE;
        }
        g_propagate_error(error, g_steal_pointer(&local));
        return FALSE;
    }
    text = g_strndup(g_bytes_get_data(data, NULL), g_bytes_get_size(data));
    lines = g_strsplit(text, "\n", -1);
    for (guint i = 0; lines[i]; i++) {
        g_auto(GStrv) f = g_strsplit(lines[i], ":", 4);
        char *end = NULL;
        guint64 id;

        if (g_strv_length(f) < 3 || !*f[0]) {
            continue;
        }
        id = g_ascii_strtoull(f[2], &end, 10);
        if (*f[2] && !*end && id < G_MAXUINT32 &&
            !g_hash_table_contains(*out, f[0])) {
            g_hash_table_insert(*out, g_strdup(f[0]), GUINT_TO_POINTER(id));
        }
    }
    return TRUE;
}

/* dpkg gives a member the guest's id for its owner's name when the guest
 * knows the name, else the number the archive records. */
static guint32 vo_unpack_id(GHashTable *ids, const char *name, guint32 id)
{
    gpointer value;

    if (name && g_hash_table_lookup_extended(ids, name, NULL, &value)) {
        return GPOINTER_TO_UINT(value);
    }
    return id;
}

static char *vo_unpack_info_path(const char *info, const char *name)
{
    return g_strdup_printf(VO_DPKG_ADMINDIR "/info/%s.%s", info, name);
}

/* The lines of @bytes (none when NULL). */
static GStrv vo_unpack_lines(GBytes *bytes)
{
    g_autofree char *text = NULL;

    if (!bytes) {
        return g_new0(char *, 1);
    }
    text = g_strndup(g_bytes_get_data(bytes, NULL), g_bytes_get_size(bytes));
    return g_strsplit(text, "\n", -1);
}

/* The installed version's triggers file: *@out NULL when it has none. */
static gboolean vo_unpack_old_triggers(VoGuest *guest, VoUnpackJob *job,
                                       GBytes **out, GError **error)
{
    g_autofree char *path = NULL;
    g_autoptr(GError) local = NULL;

    *out = NULL;
    if (!job->old_info) {
        return TRUE;
    }
    path = vo_unpack_info_path(job->old_info, "triggers");
    *out = vo_dpkg_read_file(guest, path, VO_DEB_MAX_CONTROL, &local);
    if (!*out && !g_error_matches(local, VO_ERROR, VO_ERROR_NOT_FOUND)) {
        g_propagate_error(error, g_steal_pointer(&local));
        return FALSE;
    }
    return TRUE;
}

/* The on-disk name of package path @path: its diversion's, unless the
 * package being unpacked made the diversion itself. */
static const char *vo_unpack_diverted(VoDpkgDb *db, const char *path,
                                      const char *package)
{
    VoDiversion *d = g_hash_table_lookup(db->diversions, path);

    if (d && !g_str_equal(d->by, package)) {
        return d->to;
    }
    return path;
}

/* "Conffiles" lines: " /path hash [flag]". */
static gboolean vo_unpack_old_conffiles(VoStanza *old, VoPackageOp *op,
                                        GPtrArray *paths, GPtrArray *hashes,
                                        GError **error)
{
    const char *value = old ? vo_stanza_get(old, "Conffiles") : NULL;
    g_auto(GStrv) lines = NULL;

    if (!value) {
        return TRUE;
    }
    lines = g_strsplit(value, "\n", -1);
    for (guint i = 0; lines[i]; i++) {
        g_auto(GStrv) w = NULL;
        char *clean;

        if (!*g_strstrip(lines[i])) {
            continue;
        }
        w = g_strsplit_set(lines[i], " \t", -1);
        clean = w[0] && w[1] ? vo_deb_clean_path(w[0]) : NULL;
        if (!clean || w[0][0] != '/' || strlen(w[1]) > 64) {
            g_free(clean);
            return vo_unpack_refuse(error, VO_ERROR_CORRUPT, op,
                                    "the guest's status has a malformed "
                                    "Conffiles line");
        }
        g_ptr_array_add(paths, clean);
        g_ptr_array_add(hashes, g_strdup(w[1]));
    }
    return TRUE;
}

static gboolean vo_unpack_md5sums(VoUnpackJob *job, GError **error)
{
    g_auto(GStrv) lines = vo_unpack_lines(
        vo_deb_control_file(job->deb, "md5sums"));

    for (guint i = 0; lines[i]; i++) {
        char *line = lines[i];
        char *path;

        if (!*line) {
            continue;
        }
        if (strlen(line) < 35 || line[32] != ' ' ||
            !(path = vo_deb_clean_path(g_strstrip(line + 33)))) {
            return vo_unpack_refuse(error, VO_ERROR_INVALID, job->op,
                                    "malformed md5sums line %u", i + 1);
        }
        line[32] = '\0';
        g_hash_table_replace(job->md5sums, path, g_ascii_strdown(line, -1));
    }
    return TRUE;
}

/* @src's fields in dpkg's order (lib/dpkg/parse.c), the others after
 * them in their own order, without those dpkg drops. */
static VoStanza *vo_unpack_in_dpkg_order(const VoStanza *src)
{
    VoStanza *st = vo_stanza_new();

    for (guint i = 0; vo_unpack_field_order[i]; i++) {
        const char *value = vo_stanza_get(src, vo_unpack_field_order[i]);

        if (value) {
            vo_stanza_set(st, vo_unpack_field_order[i], value);
        }
    }
    for (guint i = 0; i < src->fields->len; i++) {
        VoField *f = src->fields->pdata[i];
        gboolean known = FALSE;

        for (guint j = 0; vo_unpack_field_order[j] && !known; j++) {
            known = g_ascii_strcasecmp(f->name, vo_unpack_field_order[j]) == 0;
        }
        for (guint j = 0; vo_unpack_field_dropped[j] && !known; j++) {
            known = g_ascii_strcasecmp(f->name,
                                       vo_unpack_field_dropped[j]) == 0;
        }
        if (!known) {
            vo_stanza_set(st, f->name, f->value);
        }
    }
    return st;
}

/* The status paragraph dpkg writes after unpacking: the new control
 * fields with Status, Config-Version and Conffiles. */
static VoStanza *vo_unpack_stanza(VoUnpackJob *job, const char *config,
                                  const char *conffiles)
{
    g_autoptr(VoStanza) st = vo_stanza_copy(job->deb->control);
    static const char *const flags[] = { "Essential", "Protected" };

    vo_stanza_set(st, "Status", "install ok unpacked");
    vo_stanza_remove(st, "Config-Version");
    vo_stanza_remove(st, "Conffiles");
    vo_stanza_remove(st, "Triggers-Pending");
    vo_stanza_remove(st, "Triggers-Awaited");
    if (config) {
        vo_stanza_set(st, "Config-Version", config);
    }
    if (conffiles) {
        vo_stanza_set(st, "Conffiles", conffiles);
    }
    /* dpkg writes these only when they say something. */
    for (guint i = 0; i < G_N_ELEMENTS(flags); i++) {
        if (g_strcmp0(vo_stanza_get(st, flags[i]), "yes") != 0) {
            vo_stanza_remove(st, flags[i]);
        }
    }
    if (g_strcmp0(vo_stanza_get(st, "Multi-Arch"), "no") == 0) {
        vo_stanza_remove(st, "Multi-Arch");
    }
    return vo_unpack_in_dpkg_order(st);
}

/* Whether @path is @dir or below it. */
static gboolean vo_unpack_below(const char *path, const char *dir)
{
    gsize n = strlen(dir);

    return g_str_equal(dir, "/.") ||
           (strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/'));
}

static gboolean vo_unpack_has_trigger(VoUnpackJob *job, VoFileTrigger *t)
{
    for (guint i = 0; i < job->activated->len; i++) {
        VoFileTrigger *o = job->activated->pdata[i];

        if (g_str_equal(o->path, t->path) &&
            g_str_equal(o->package, t->package)) {
            return TRUE;
        }
    }
    return FALSE;
}

/*
 * The file triggers @path activates.  Those that do not await (the
 * interested package is not waited for) are recorded as pending, as dpkg
 * --unpack --no-triggers records them; the guest's dpkg --configure -a
 * runs them.  Awaited ones would hold this package back: refused.
 */
static gboolean vo_unpack_activate(VoUnpackJob *job, VoDpkgDb *db,
                                   const char *path, GError **error)
{
    for (guint i = 0; i < db->file_triggers->len; i++) {
        VoFileTrigger *t = db->file_triggers->pdata[i];

        if (!vo_unpack_below(path, t->path)) {
            continue;
        }
        if (!t->noawait) {
            return vo_unpack_refuse(error, VO_ERROR_UNSUPPORTED, job->op,
                                    "%s activates the file trigger %s, "
                                    "which %s awaits; awaited triggers are "
                                    "not recorded offline", path, t->path,
                                    t->package);
        }
        if (!vo_unpack_has_trigger(job, t)) {
            g_ptr_array_add(job->activated, t);
        }
    }
    return TRUE;
}

/* The "activate*" lines of a triggers file (@triggers may be NULL). */
static gboolean vo_unpack_activate_lines(VoGuest *guest, VoUnpackJob *job,
                                         VoDpkgDb *db, GBytes *triggers,
                                         GError **error)
{
    g_auto(GStrv) lines = vo_unpack_lines(triggers);

    for (guint i = 0; lines[i]; i++) {
        g_auto(GStrv) w = g_strsplit_set(g_strstrip(lines[i]), " \t", 2);
        g_autoptr(GPtrArray) interested = NULL;
        const char *name;
        gboolean noawait;

        if (!w[0] || !g_str_has_prefix(w[0], "activate")) {
            continue;
        }
        noawait = g_str_equal(w[0], "activate-noawait");
        name = w[1] ? g_strstrip(w[1]) : NULL;
        if ((!noawait && !g_str_equal(w[0], "activate") &&
             !g_str_equal(w[0], "activate-await")) ||
            !name || !*name || strlen(name) > 255 || name[0] == '.' ||
            strpbrk(name, " \t")) {
            return vo_unpack_refuse(error, VO_ERROR_INVALID, job->op,
                                    "a triggers line %u is malformed",
                                    i + 1);
        }
        if (name[0] == '/') {
            if (!vo_unpack_activate(job, db, name, error)) {
                return FALSE;
            }
            continue;
        }
        if (strchr(name, '/')) {
            return vo_unpack_refuse(error, VO_ERROR_INVALID, job->op,
                                    "bad trigger name \"%s\"", name);
        }
        interested = g_ptr_array_new_with_free_func(
            (GDestroyNotify)vo_file_trigger_free);
        if (!vo_dpkg_read_interests(guest, name, interested, error)) {
            return FALSE;
        }
        for (guint j = 0; j < interested->len; j++) {
            VoFileTrigger *t = interested->pdata[j];

            if (!noawait && !t->noawait) {
                return vo_unpack_refuse(error, VO_ERROR_UNSUPPORTED, job->op,
                                        "activates the trigger %s, which %s "
                                        "awaits; awaited triggers are not "
                                        "recorded offline", name,
                                        t->package);
            }
            if (!vo_unpack_has_trigger(job, t)) {
                g_ptr_array_add(job->activated, t);
            }
        }
        while (interested->len) {
            g_ptr_array_add(job->named,
                            g_ptr_array_steal_index(interested, 0));
        }
    }
    return TRUE;
}

/*
 * Named triggers the old and the new version activate ("activate-noawait
 * ldconfig"), which dpkg records pending when it unpacks.
 */
static gboolean vo_unpack_activate_named(VoGuest *guest, VoUnpackJob *job,
                                         VoDpkgDb *db, GError **error)
{
    g_autoptr(GBytes) old = NULL;

    if (!vo_unpack_old_triggers(guest, job, &old, error)) {
        return FALSE;
    }
    return vo_unpack_activate_lines(guest, job, db, old, error) &&
           vo_unpack_activate_lines(guest, job, db,
                                    vo_deb_control_file(job->deb,
                                                        "triggers"),
                                    error);
}

/* "interest*" lines of a triggers control file, sorted. */
static GPtrArray *vo_unpack_interests(GBytes *triggers)
{
    GPtrArray *out = g_ptr_array_new_with_free_func(g_free);
    g_auto(GStrv) lines = vo_unpack_lines(triggers);

    for (guint i = 0; lines[i]; i++) {
        char *line = g_strstrip(lines[i]);

        if (g_str_has_prefix(line, "interest")) {
            g_ptr_array_add(out, g_strdup(line));
        }
    }
    g_ptr_array_sort(out, (GCompareFunc)g_strcmp0);
    return out;
}

/* dpkg registers a package's trigger interests when it unpacks it; we do
 * not, so they must be the ones the old version registered. */
static gboolean vo_unpack_same_interests(VoGuest *guest, VoUnpackJob *job,
                                         GError **error)
{
    g_autoptr(GPtrArray) want = vo_unpack_interests(
        vo_deb_control_file(job->deb, "triggers"));
    g_autoptr(GPtrArray) have = NULL;
    g_autoptr(GBytes) old = NULL;

    if (want->len == 0) {
        return TRUE;
    }
    if (!vo_unpack_old_triggers(guest, job, &old, error)) {
        return FALSE;
    }
    have = vo_unpack_interests(old);
    for (guint i = 0; i < MAX(want->len, have->len); i++) {
        if (i >= want->len || i >= have->len ||
            !g_str_equal(want->pdata[i], have->pdata[i])) {
            return vo_unpack_refuse(error, VO_ERROR_UNSUPPORTED, job->op,
                                    "declares trigger interests the "
                                    "installed version does not have; "
                                    "registering them is not done offline");
        }
    }
    return TRUE;
}

static gint vo_unpack_deeper_first(gconstpointer a, gconstpointer b)
{
    const char *pa = *(const char *const *)a, *pb = *(const char *const *)b;
    int da = 0, db = 0;

    for (const char *c = pa; *c; c++) {
        da += *c == '/';
    }
    for (const char *c = pb; *c; c++) {
        db += *c == '/';
    }
    return da != db ? db - da : strcmp(pa, pb);
}

/* The version and status checks: the bundle was planned for @old. */
static gboolean vo_unpack_check_installed(VoDpkgDb *db, VoPackageOp *op,
                                          VoStanza *old, GError **error)
{
    g_autofree char *word_owned = NULL;
    const char *word = old ? vo_dpkg_status_word(old, &word_owned) : NULL;
    gboolean absent = !old || g_strcmp0(word, "not-installed") == 0;

    for (guint i = 0; i < db->stanzas->len; i++) {
        VoStanza *st = db->stanzas->pdata[i];
        g_autofree char *w = NULL;
        const char *other = vo_dpkg_status_word(st, &w);

        if (st != old &&
            g_strcmp0(vo_stanza_get(st, "Package"), op->package) == 0 &&
            g_strcmp0(other, "not-installed") != 0 &&
            g_strcmp0(vo_stanza_get(st, "Multi-Arch"), "same") != 0) {
            return vo_unpack_refuse(error, VO_ERROR_NOT_APPLICABLE, op,
                                    "%s is installed for architecture %s; "
                                    "cross-grading is not done offline",
                                    op->package,
                                    vo_stanza_get(st, "Architecture"));
        }
    }
    if (!op->old_version) {
        if (!absent) {
            return vo_unpack_refuse(error, VO_ERROR_NOT_APPLICABLE, op,
                                    "the bundle installs it anew, but the "
                                    "guest has it (status \"%s\")",
                                    vo_stanza_get(old, "Status"));
        }
        return TRUE;
    }
    if (absent) {
        return vo_unpack_refuse(error, VO_ERROR_NOT_APPLICABLE, op,
                                "the bundle upgrades %s, but the guest does "
                                "not have the package", op->old_version);
    }
    if (g_strcmp0(vo_stanza_get(old, "Status"), "install ok installed") != 0 ||
        g_strcmp0(vo_stanza_get(old, "Version"), op->old_version) != 0) {
        return vo_unpack_refuse(error, VO_ERROR_NOT_APPLICABLE, op,
                                "the bundle upgrades %s (installed), the "
                                "guest has %s (status \"%s\")",
                                op->old_version,
                                vo_stanza_get(old, "Version")
                                    ? vo_stanza_get(old, "Version") : "none",
                                vo_stanza_get(old, "Status"));
    }
    return TRUE;
}

/* "#N" or a name the guest knows, as dpkg-statoverride records them. */
static gboolean vo_unpack_override_id(GHashTable *ids, const char *word,
                                      guint32 *id)
{
    gpointer value;

    if (word[0] == '#') {
        char *end = NULL;
        guint64 n = g_ascii_strtoull(word + 1, &end, 10);

        *id = n;
        return word[1] && !*end && n < G_MAXUINT32;
    }
    if (!g_hash_table_lookup_extended(ids, word, NULL, &value)) {
        return FALSE;
    }
    *id = GPOINTER_TO_UINT(value);
    return TRUE;
}

/* The guest's dpkg-statoverride for @f's path wins over the archive, as
 * dpkg applies it when it unpacks. */
static gboolean vo_unpack_override(VoDpkgDb *db, VoUnpackIds *ids,
                                   VoUnpackJob *job, VoUnpackFile *f,
                                   GError **error)
{
    VoStatOverride *o = g_hash_table_lookup(db->overrides, f->m->path);

    if (!o) {
        return TRUE;
    }
    if (!vo_unpack_override_id(ids->users, o->user, &f->uid) ||
        !vo_unpack_override_id(ids->groups, o->group, &f->gid)) {
        return vo_unpack_refuse(error, VO_ERROR_CORRUPT, job->op,
                                "the guest's statoverride for %s names an "
                                "unknown user or group", f->m->path);
    }
    f->mode = o->mode;
    return TRUE;
}

/*
 * Everything unpacking @op into the guest whose database is @db will do,
 * computed without writing: the same on the plan and on the execution.
 */
static VoUnpackJob *vo_unpack_prepare(VoGuest *guest, VoDpkgDb *db,
                                      VoUnpackIds *ids, VoPackageOp *op,
                                      GError **error)
{
    g_autoptr(VoUnpackJob) job = g_new0(VoUnpackJob, 1);
    g_autoptr(GPtrArray) conffiles = NULL;
    g_autoptr(GPtrArray) old_conff = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GPtrArray) old_hash = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GHashTable) new_paths = g_hash_table_new(g_str_hash,
                                                       g_str_equal);
    g_autoptr(GHashTable) written = g_hash_table_new_full(
        g_str_hash, g_str_equal, g_free, g_free);
    g_autoptr(GString) conff_value = g_string_new(NULL);
    GHashTableIter it;
    gpointer key;
    VoStanza *ctl, *old;
    GPtrArray *old_list;

    job->op = op;
    job->files = g_ptr_array_new_with_free_func(
        (GDestroyNotify)vo_unpack_file_free);
    job->list = g_ptr_array_new_with_free_func(g_free);
    job->remove = g_ptr_array_new_with_free_func(g_free);
    job->rmdir = g_ptr_array_new_with_free_func(g_free);
    job->info_write = g_ptr_array_new_with_free_func(g_free);
    job->info_delete = g_ptr_array_new_with_free_func(g_free);
    job->conffiles = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                           NULL);
    job->md5sums = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                         g_free);
    job->activated = g_ptr_array_new();
    job->named = g_ptr_array_new_with_free_func(
        (GDestroyNotify)vo_file_trigger_free);

    job->deb = vo_deb_read(op->data, op->payload, error);
    if (!job->deb) {
        return NULL;
    }
    ctl = job->deb->control;
    if (g_strcmp0(vo_stanza_get(ctl, "Package"), op->package) != 0 ||
        g_strcmp0(vo_stanza_get(ctl, "Version"), op->version) != 0 ||
        g_strcmp0(vo_stanza_get(ctl, "Architecture"),
                  op->architecture) != 0) {
        vo_unpack_refuse(error, VO_ERROR_INVALID, op,
                         "the payload %s is %s %s (%s), not the package "
                         "the manifest names", op->payload,
                         vo_stanza_get(ctl, "Package"),
                         vo_stanza_get(ctl, "Version"),
                         vo_stanza_get(ctl, "Architecture"));
        return NULL;
    }
    if (vo_deb_control_file(job->deb, "preinst")) {
        vo_unpack_refuse(error, VO_ERROR_UNSUPPORTED, op,
                         "has a preinst, which dpkg runs before unpacking; "
                         "maintainer scripts are not run offline, so this "
                         "package must be installed in the running guest");
        return NULL;
    }
    if (vo_deb_control_file(job->deb, "list")) {
        vo_unpack_refuse(error, VO_ERROR_INVALID, op,
                         "a control member is called \"list\"");
        return NULL;
    }
    old = vo_dpkg_db_find(db, op->package, op->architecture);
    if (!vo_unpack_check_installed(db, op, old, error)) {
        return NULL;
    }
    if (!op->old_version) {
        old = NULL;
    }
    job->info = vo_dpkg_info_name(ctl);
    job->old_info = old ? vo_dpkg_info_name(old) : NULL;
    if (!vo_unpack_same_interests(guest, job, error) ||
        !vo_unpack_activate_named(guest, job, db, error)) {
        return NULL;
    }
    conffiles = vo_deb_conffiles(job->deb, op->payload, error);
    if (!conffiles ||
        !vo_unpack_old_conffiles(old, op, old_conff, old_hash, error) ||
        !vo_unpack_md5sums(job, error)) {
        return NULL;
    }
    for (guint i = 0; i < conffiles->len; i++) {
        g_hash_table_add(job->conffiles, g_strdup(conffiles->pdata[i]));
    }

    /* The files, where they go, and who else owns them. */
    for (guint i = 0; i < job->deb->members->len; i++) {
        VoDebMember *m = job->deb->members->pdata[i];
        VoUnpackFile *f;
        const char *who;
        const char *md5;

        if (!vo_unpack_activate(job, db, m->path, error)) {
            return NULL;
        }
        g_ptr_array_add(job->list, g_strdup(m->path));
        g_hash_table_add(new_paths, m->path);
        if (g_str_equal(m->path, "/.")) {
            continue;
        }
        if (m->type != VO_NODE_DIRECTORY &&
            vo_dpkg_db_owned_by_other(db, m->path, job->info, job->old_info,
                                      &who)) {
            vo_unpack_refuse(error, VO_ERROR_EXISTS, op,
                             "%s belongs to package %s too (taking files "
                             "over with Replaces is not done offline)",
                             m->path, who);
            return NULL;
        }
        if (g_hash_table_contains(job->conffiles, m->path) &&
            m->type != VO_NODE_REGULAR) {
            vo_unpack_refuse(error, VO_ERROR_INVALID, op,
                             "conffile %s is not a regular file", m->path);
            return NULL;
        }
        md5 = g_hash_table_lookup(job->md5sums, m->path);
        if (md5 && m->data) {
            g_autofree char *have = g_compute_checksum_for_bytes(
                G_CHECKSUM_MD5, m->data);

            if (!g_str_equal(have, md5)) {
                vo_unpack_refuse(error, VO_ERROR_INVALID, op,
                                 "%s does not match the package's md5sums",
                                 m->path);
                return NULL;
            }
        }
        f = g_new0(VoUnpackFile, 1);
        f->m = m;
        f->target = g_strdup(vo_unpack_diverted(db, m->path, op->package));
        if (g_hash_table_contains(job->conffiles, m->path)) {
            char *t = g_strconcat(f->target, ".dpkg-new", NULL);

            g_free(f->target);
            f->target = t;
        }
        f->mode = m->mode;
        f->uid = vo_unpack_id(ids->users, m->uname, m->uid);
        f->gid = vo_unpack_id(ids->groups, m->gname, m->gid);
        if (m->type != VO_NODE_SYMLINK &&
            !vo_unpack_override(db, ids, job, f, error)) {
            vo_unpack_file_free(f);
            return NULL;
        }
        if (m->hardlink) {
            const char *to = g_hash_table_lookup(written, m->hardlink);

            if (!to) {
                vo_unpack_refuse(error, VO_ERROR_INVALID, op,
                                 "%s links to %s, which is not a file",
                                 m->path, m->hardlink);
                return NULL;
            }
            f->link_to = g_strdup(to);
        }
        if (m->type == VO_NODE_REGULAR) {
            g_hash_table_replace(written, g_strdup(m->path),
                                 g_strdup(f->target));
        }
        g_ptr_array_add(job->files, f);
    }
    for (guint i = 0; i < conffiles->len; i++) {
        if (!g_hash_table_contains(new_paths, conffiles->pdata[i])) {
            vo_unpack_refuse(error, VO_ERROR_INVALID, op,
                             "conffile %s is not in the package",
                             (const char *)conffiles->pdata[i]);
            return NULL;
        }
    }

    /* Conffiles: the old hashes stay (dpkg --configure compares against
     * them), new ones are "newconffile", dropped ones "obsolete". */
    for (guint i = 0; i < conffiles->len; i++) {
        const char *hash = "newconffile";
        guint at;

        if (g_ptr_array_find_with_equal_func(old_conff, conffiles->pdata[i],
                                             g_str_equal, &at)) {
            hash = old_hash->pdata[at];
        }
        g_string_append_printf(conff_value, "\n %s %s",
                               (const char *)conffiles->pdata[i], hash);
    }
    for (guint i = 0; i < old_conff->len; i++) {
        if (!g_hash_table_contains(job->conffiles, old_conff->pdata[i])) {
            g_string_append_printf(conff_value, "\n %s %s obsolete",
                                   (const char *)old_conff->pdata[i],
                                   (const char *)old_hash->pdata[i]);
            /* Kept on disk and in the list, as dpkg keeps it. */
            g_ptr_array_add(job->list, g_strdup(old_conff->pdata[i]));
            g_hash_table_add(new_paths,
                             job->list->pdata[job->list->len - 1]);
            job->obsolete++;
        }
    }
    job->stanza = vo_unpack_stanza(job, op->old_version,
                                   conff_value->len ? conff_value->str
                                                    : NULL);

    /* What the old version had and the new one does not ship. */
    old_list = job->old_info ? g_hash_table_lookup(db->lists, job->old_info)
                             : NULL;
    for (guint i = 0; old_list && i < old_list->len; i++) {
        const char *path = old_list->pdata[i];
        const char *who;
        g_auto(VoPath) p = { 0 };
        g_autoptr(GError) local = NULL;
        const char *disk;

        if (g_hash_table_contains(new_paths, path) ||
            g_str_equal(path, "/.") ||
            vo_dpkg_db_owned_by_other(db, path, job->info, job->old_info,
                                      &who)) {
            continue;
        }
        disk = vo_unpack_diverted(db, path, op->package);
        if (!vo_guest_resolve(guest, disk, FALSE, &p, &local)) {
            if (g_error_matches(local, VO_ERROR, VO_ERROR_NOT_FOUND)) {
                continue;
            }
            g_propagate_error(error, g_steal_pointer(&local));
            return NULL;
        }
        /* A mount point stays: dpkg's rmdir() finds it busy. */
        if (!p.exists || p.mount) {
            continue;
        }
        if (!vo_unpack_activate(job, db, path, error)) {
            return NULL;
        }
        g_ptr_array_add(p.st.type == VO_NODE_DIRECTORY ? job->rmdir
                                                       : job->remove,
                        g_strdup(disk));
    }
    g_ptr_array_sort(job->rmdir, vo_unpack_deeper_first);

    /* Info files: the new control files; the old ones not shipped again
     * go. */
    g_hash_table_iter_init(&it, job->deb->control_files);
    while (g_hash_table_iter_next(&it, &key, NULL)) {
        g_ptr_array_add(job->info_write, g_strdup(key));
    }
    g_ptr_array_sort(job->info_write, (GCompareFunc)g_strcmp0);
    if (job->old_info) {
        for (guint i = 0; vo_unpack_info_names[i]; i++) {
            const char *name = vo_unpack_info_names[i];
            g_autofree char *path = vo_unpack_info_path(job->old_info, name);
            g_auto(VoPath) p = { 0 };

            if (g_str_equal(job->old_info, job->info) &&
                vo_deb_control_file(job->deb, name)) {
                continue;
            }
            if (!vo_guest_resolve(guest, path, FALSE, &p, error)) {
                return NULL;
            }
            if (p.exists) {
                g_ptr_array_add(job->info_delete, g_steal_pointer(&path));
            }
        }
        if (!g_str_equal(job->old_info, job->info)) {
            g_ptr_array_add(job->info_delete,
                            vo_unpack_info_path(job->old_info, "list"));
        }
    }
    return g_steal_pointer(&job);
}

/* Trigger @t pending for the package interested in it, as dpkg records
 * an activation: only packages that are configured take it. */
static void vo_unpack_trigger_pending(VoDpkgDb *db, VoUnpackJob *job,
                                      VoFileTrigger *t)
{
    VoStanza *st = vo_dpkg_db_find_info(db, t->package);
    g_autoptr(VoStanza) copy = NULL;
    g_autofree char *owned = NULL;
    g_autofree char *info = NULL;
    g_autofree char *status = NULL;
    g_auto(GStrv) pending = NULL;
    const char *word;

    if (!st) {
        return;
    }
    info = vo_dpkg_info_name(st);
    word = vo_dpkg_status_word(st, &owned);
    if (g_str_equal(info, job->info) ||
        (g_strcmp0(word, "installed") != 0 &&
         g_strcmp0(word, "triggers-pending") != 0 &&
         g_strcmp0(word, "triggers-awaited") != 0)) {
        return;
    }
    pending = g_strsplit(vo_stanza_get(st, "Triggers-Pending")
                             ? vo_stanza_get(st, "Triggers-Pending") : "",
                         " ", -1);
    if (g_strv_contains((const char *const *)pending, t->path)) {
        return;
    }
    copy = vo_stanza_copy(st);
    if (g_str_equal(word, "installed")) {
        const char *have = vo_stanza_get(st, "Status");

        /* "WANT FLAG installed": the last word changes. */
        status = g_strdup_printf("%.*striggers-pending",
                                 (int)(strlen(have) - strlen(word)), have);
        vo_stanza_set(copy, "Status", status);
    }
    {
        const char *have = vo_stanza_get(st, "Triggers-Pending");
        g_autofree char *value = have ? g_strconcat(have, " ", t->path, NULL)
                                      : g_strdup(t->path);

        vo_stanza_set(copy, "Triggers-Pending", value);
    }
    vo_dpkg_db_put(db, vo_unpack_in_dpkg_order(copy));
}

/* The in-memory database after @job: what the next package sees. */
static void vo_unpack_update_db(VoDpkgDb *db, VoUnpackJob *job)
{
    GPtrArray *list = g_ptr_array_new_with_free_func(g_free);

    for (guint i = 0; i < job->list->len; i++) {
        g_ptr_array_add(list, g_strdup(job->list->pdata[i]));
    }
    if (job->old_info && !g_str_equal(job->old_info, job->info)) {
        vo_dpkg_db_set_list(db, job->old_info, NULL);
    }
    vo_dpkg_db_set_list(db, job->info, list);
    vo_dpkg_db_put(db, vo_stanza_copy(job->stanza));
    for (guint i = 0; i < job->activated->len; i++) {
        vo_unpack_trigger_pending(db, job, job->activated->pdata[i]);
    }
}

/* What every phase starts from: the guest's database and its ids. */
static VoDpkgDb *vo_unpack_open(VoGuest *guest, VoUnpackIds *ids,
                                GError **error)
{
    g_autoptr(VoDpkgDb) db = vo_dpkg_db_read(guest, error);

    if (!db ||
        !vo_unpack_read_ids(guest, "/etc/passwd", &ids->users, error) ||
        !vo_unpack_read_ids(guest, "/etc/group", &ids->groups, error)) {
        return NULL;
    }
    return g_steal_pointer(&db);
}

/* Plan-time check of one file's place: its parent exists (or an earlier
 * member makes it), and no directory is replaced by a file or the other
 * way round. */
static gboolean vo_unpack_check_place(VoGuest *guest, VoUnpackJob *job,
                                      VoUnpackFile *f, GHashTable *planned,
                                      GError **error)
{
    g_auto(VoPath) p = { 0 };
    g_autoptr(GError) local = NULL;
    gboolean dir = f->m->type == VO_NODE_DIRECTORY;
    g_autofree char *parent = g_path_get_dirname(f->target);

    if (!vo_guest_resolve(guest, f->target, dir, &p, &local)) {
        if (g_error_matches(local, VO_ERROR, VO_ERROR_NOT_FOUND) &&
            g_hash_table_contains(planned, parent)) {
            if (dir) {
                g_hash_table_add(planned, g_strdup(f->target));
            }
            return TRUE;
        }
        return vo_unpack_refuse(error, local->code, job->op, "%s: %s",
                                f->target, local->message);
    }
    if (!dir && !vo_path_check_not_mount(&p, &local)) {
        return vo_unpack_refuse(error, local->code, job->op, "%s: %s",
                                f->target, local->message);
    }
    /* An existing directory stays as it is (vo_unpack_install()): only
     * what is written needs a filesystem that can hold a package. */
    if (p.fs && !p.fs->ops->symlink &&
        !(dir && p.exists && p.st.type == VO_NODE_DIRECTORY)) {
        return vo_unpack_refuse(error, VO_ERROR_UNSUPPORTED, job->op,
                                "%s: a %s filesystem cannot hold a Debian "
                                "package", f->target, p.fs->type);
    }
    if (p.exists && dir != (p.st.type == VO_NODE_DIRECTORY)) {
        return vo_unpack_refuse(error, VO_ERROR_EXISTS, job->op,
                                "%s: the guest has a %s there", f->target,
                                dir ? "file" : "directory");
    }
    if (dir) {
        g_hash_table_add(planned, g_strdup(f->target));
    }
    return TRUE;
}

static void vo_unpack_member_str(JsonBuilder *b, const char *name,
                                 const char *value)
{
    if (value) {
        json_builder_set_member_name(b, name);
        json_builder_add_string_value(b, value);
    }
}

static void vo_unpack_member_int(JsonBuilder *b, const char *name,
                                 gint64 value)
{
    json_builder_set_member_name(b, name);
    json_builder_add_int_value(b, value);
}

gboolean vo_unpack_plan(VoBundle *bundle, VoGuest *guest, JsonBuilder *plan,
                        GError **error)
{
    g_autoptr(VoDpkgDb) db = NULL;
    g_autoptr(GHashTable) planned = NULL;
    g_auto(VoUnpackIds) ids = { 0 };

    if (bundle->packages->len == 0) {
        return TRUE;
    }
    db = vo_unpack_open(guest, &ids, error);
    if (!db) {
        return FALSE;
    }
    planned = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    for (guint i = 0; i < bundle->packages->len; i++) {
        VoPackageOp *op = bundle->packages->pdata[i];
        g_autoptr(VoUnpackJob) job = vo_unpack_prepare(guest, db, &ids, op,
                                                       error);

        if (!job) {
            return FALSE;
        }
        for (guint j = 0; j < job->files->len; j++) {
            if (!vo_unpack_check_place(guest, job, job->files->pdata[j],
                                       planned, error)) {
                return FALSE;
            }
        }
        vo_unpack_update_db(db, job);
        json_builder_begin_object(plan);
        vo_unpack_member_str(plan, "op", "unpack");
        vo_unpack_member_str(plan, "package", op->package);
        vo_unpack_member_str(plan, "architecture", op->architecture);
        vo_unpack_member_str(plan, "version", op->version);
        vo_unpack_member_str(plan, "old_version", op->old_version);
        vo_unpack_member_str(plan, "action",
                             op->old_version ? "upgrade" : "install");
        vo_unpack_member_int(plan, "files", job->files->len);
        vo_unpack_member_int(plan, "conffiles",
                             g_hash_table_size(job->conffiles));
        json_builder_set_member_name(plan, "triggers");
        json_builder_begin_array(plan);
        for (guint j = 0; j < job->activated->len; j++) {
            VoFileTrigger *t = job->activated->pdata[j];
            g_autofree char *what = g_strdup_printf("%s %s", t->package,
                                                    t->path);

            json_builder_add_string_value(plan, what);
        }
        json_builder_end_array(plan);
        json_builder_set_member_name(plan, "remove");
        json_builder_begin_array(plan);
        for (guint j = 0; j < job->remove->len; j++) {
            json_builder_add_string_value(plan, job->remove->pdata[j]);
        }
        json_builder_end_array(plan);
        json_builder_end_object(plan);
    }
    return TRUE;
}

/* Removes whatever is at @p (not a directory) so that it can be made
 * anew, as dpkg replaces a file by renaming over it. */
static gboolean vo_unpack_clear(VoPath *p, GError **error)
{
    if (!p->exists) {
        return TRUE;
    }
    if (!vo_path_check_not_mount(p, error)) {
        return FALSE;
    }
    if (p->st.type == VO_NODE_DIRECTORY) {
        g_set_error(error, VO_ERROR, VO_ERROR_EXISTS, "%s is a directory",
                    p->resolved);
        return FALSE;
    }
    return p->fs->ops->remove(p->fs, p->parent, p->leaf, p->node, error);
}

static gboolean vo_unpack_write_file(VoGuest *guest, const char *path,
                                     GBytes *data, guint32 mode,
                                     guint32 uid, guint32 gid,
                                     GHashTable *resolved, GError **error)
{
    g_auto(VoPath) p = { 0 };
    VoStat attrs = { .mode = mode, .uid = uid, .gid = gid };

    if (!vo_guest_resolve(guest, path, FALSE, &p, error)) {
        return FALSE;
    }
    if (!p.fs->ops->symlink) {
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "%s: a %s filesystem cannot hold a Debian package",
                    path, p.fs->type);
        return FALSE;
    }
    if (resolved) {
        g_hash_table_add(resolved, g_strdup(p.resolved));
    }
    /* A new inode, as dpkg's rename over the old name gives: other
     * hard links to the old file keep the old content. */
    return vo_unpack_clear(&p, error) &&
           p.fs->ops->create(p.fs, p.parent, p.leaf, &attrs, data, error);
}

static gboolean vo_unpack_install(VoGuest *guest, VoUnpackFile *f,
                                  GHashTable *resolved, GError **error)
{
    g_auto(VoPath) p = { 0 };
    VoDebMember *m = f->m;

    switch (m->type) {
    case VO_NODE_DIRECTORY: {
        VoStat attrs = { .mode = f->mode, .uid = f->uid, .gid = f->gid };
        g_autoptr(GError) local = NULL;

        /* An existing directory, or a link to one, stays as it is (a
         * mount point too). */
        if (vo_guest_resolve(guest, f->target, TRUE, &p, &local) &&
            p.exists && p.st.type == VO_NODE_DIRECTORY) {
            return TRUE;
        }
        if (local && !g_error_matches(local, VO_ERROR, VO_ERROR_NOT_FOUND)) {
            g_propagate_error(error, g_steal_pointer(&local));
            return FALSE;
        }
        vo_path_clear(&p);
        if (!vo_guest_resolve(guest, f->target, FALSE, &p, error)) {
            return FALSE;
        }
        if (p.exists) {
            g_set_error(error, VO_ERROR, VO_ERROR_EXISTS,
                        "%s exists and is not a directory", f->target);
            return FALSE;
        }
        return p.fs->ops->mkdir(p.fs, p.parent, p.leaf, &attrs, error);
    }
    case VO_NODE_SYMLINK:
        if (!vo_guest_resolve(guest, f->target, FALSE, &p, error)) {
            return FALSE;
        }
        if (!p.fs->ops->symlink) {
            g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                        "%s: no symbolic links on %s", f->target, p.fs->type);
            return FALSE;
        }
        g_hash_table_add(resolved, g_strdup(p.resolved));
        return vo_unpack_clear(&p, error) &&
               p.fs->ops->symlink(p.fs, p.parent, p.leaf, m->target, f->uid,
                                  f->gid, error);
    case VO_NODE_REGULAR:
        if (m->hardlink) {
            g_auto(VoPath) to = { 0 };

            if (!vo_guest_resolve(guest, f->link_to, FALSE, &to, error) ||
                !vo_guest_resolve(guest, f->target, FALSE, &p, error)) {
                return FALSE;
            }
            if (!to.exists || to.fs != p.fs) {
                g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                            "%s: its link target %s is missing or on "
                            "another filesystem", f->target, f->link_to);
                return FALSE;
            }
            g_hash_table_add(resolved, g_strdup(p.resolved));
            return vo_unpack_clear(&p, error) &&
                   p.fs->ops->link(p.fs, p.parent, p.leaf, to.node, error);
        }
        return vo_unpack_write_file(guest, f->target, m->data, f->mode,
                                    f->uid, f->gid, resolved, error);
    case VO_NODE_OTHER:
        break;
    }
    g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED, "%s: not a file",
                f->target);
    return FALSE;
}

/* Deletes @path, unless it is where a new file went (a path reaching the
 * same place through a linked directory, as on merged-/usr guests). */
static gboolean vo_unpack_remove(VoGuest *guest, const char *path,
                                 gboolean dir, GHashTable *resolved,
                                 GError **error)
{
    g_auto(VoPath) p = { 0 };
    g_autoptr(GError) local = NULL;

    if (!vo_guest_resolve(guest, path, FALSE, &p, &local)) {
        if (g_error_matches(local, VO_ERROR, VO_ERROR_NOT_FOUND)) {
            return TRUE;
        }
        g_propagate_error(error, g_steal_pointer(&local));
        return FALSE;
    }
    if (!p.exists || p.mount ||
        g_hash_table_contains(resolved, p.resolved)) {
        return TRUE;
    }
    if (!dir) {
        return p.st.type == VO_NODE_DIRECTORY ||
               p.fs->ops->remove(p.fs, p.parent, p.leaf, p.node, error);
    }
    if (p.st.type != VO_NODE_DIRECTORY || !p.fs->ops->rmdir) {
        return TRUE;
    }
    /* A directory still used keeps, as dpkg's rmdir() leaves it. */
    if (!p.fs->ops->rmdir(p.fs, p.parent, p.leaf, p.node, &local)) {
        if (g_error_matches(local, VO_ERROR, VO_ERROR_EXISTS)) {
            return TRUE;
        }
        g_propagate_error(error, g_steal_pointer(&local));
        return FALSE;
    }
    return TRUE;
}

static gboolean vo_unpack_run(VoGuest *guest, VoUnpackJob *job,
                              GError **error)
{
    g_autoptr(GHashTable) resolved = g_hash_table_new_full(
        g_str_hash, g_str_equal, g_free, NULL);
    g_autoptr(GString) list = g_string_new(NULL);
    g_autoptr(GBytes) list_bytes = NULL;
    g_autofree char *list_path = vo_unpack_info_path(job->info, "list");

    for (guint i = 0; i < job->files->len; i++) {
        VoUnpackFile *f = job->files->pdata[i];

        if (!vo_unpack_install(guest, f, resolved, error)) {
            g_prefix_error(error, "unpacking %s: ", job->op->package);
            return FALSE;
        }
    }
    for (guint i = 0; i < job->remove->len; i++) {
        if (!vo_unpack_remove(guest, job->remove->pdata[i], FALSE, resolved,
                              error)) {
            return FALSE;
        }
    }
    for (guint i = 0; i < job->rmdir->len; i++) {
        if (!vo_unpack_remove(guest, job->rmdir->pdata[i], TRUE, resolved,
                              error)) {
            return FALSE;
        }
    }
    for (guint i = 0; i < job->info_delete->len; i++) {
        if (!vo_unpack_remove(guest, job->info_delete->pdata[i], FALSE,
                              resolved, error)) {
            return FALSE;
        }
    }
    for (guint i = 0; i < job->info_write->len; i++) {
        const char *name = job->info_write->pdata[i];
        g_autofree char *path = vo_unpack_info_path(job->info, name);
        guint mode = GPOINTER_TO_UINT(
            g_hash_table_lookup(job->deb->control_modes, name));

        if (!vo_unpack_write_file(guest, path,
                                  vo_deb_control_file(job->deb, name),
                                  mode, 0, 0, NULL, error)) {
            return FALSE;
        }
    }
    for (guint i = 0; i < job->list->len; i++) {
        g_string_append_printf(list, "%s\n",
                               (const char *)job->list->pdata[i]);
    }
    list_bytes = g_string_free_to_bytes(g_steal_pointer(&list));
    return vo_unpack_write_file(guest, list_path, list_bytes, 0644, 0, 0,
                                NULL, error);
}

gboolean vo_unpack_execute(VoBundle *bundle, VoGuest *guest, GError **error)
{
    g_autoptr(VoDpkgDb) db = NULL;
    g_autoptr(GBytes) status = NULL;
    g_auto(VoUnpackIds) ids = { 0 };

    if (bundle->packages->len == 0) {
        return TRUE;
    }
    db = vo_unpack_open(guest, &ids, error);
    if (!db) {
        return FALSE;
    }
    for (guint i = 0; i < bundle->packages->len; i++) {
        g_autoptr(VoUnpackJob) job = vo_unpack_prepare(
            guest, db, &ids, bundle->packages->pdata[i], error);

        if (!job || !vo_unpack_run(guest, job, error)) {
            return FALSE;
        }
        vo_unpack_update_db(db, job);
    }
    status = vo_dpkg_db_status_bytes(db);
    return vo_unpack_write_file(guest, VO_DPKG_ADMINDIR "/status", status,
                                0644, 0, 0, NULL, error);
}

/* One file's unpacked state; @why gets what differs. */
static gboolean vo_unpack_verify_file(VoGuest *guest, VoUnpackJob *job,
                                      VoUnpackFile *f, char **why)
{
    g_auto(VoPath) p = { 0 };
    g_autoptr(GError) local = NULL;
    VoDebMember *m = f->m;
    gboolean dir = m->type == VO_NODE_DIRECTORY;

    if (!vo_guest_resolve(guest, f->target, dir, &p, &local) || !p.exists) {
        *why = g_strdup_printf("%s: %s", f->target,
                               local ? local->message : "missing");
        return FALSE;
    }
    if (dir) {
        if (p.st.type != VO_NODE_DIRECTORY) {
            *why = g_strdup_printf("%s is not a directory", f->target);
        }
        return *why == NULL;
    }
    if (m->type == VO_NODE_SYMLINK) {
        g_autofree char *target = NULL;

        if (p.st.type == VO_NODE_SYMLINK) {
            target = p.fs->ops->readlink(p.fs, p.node, NULL);
        }
        if (g_strcmp0(target, m->target) != 0) {
            *why = g_strdup_printf("%s is not a link to %s", f->target,
                                   m->target);
        }
        return *why == NULL;
    }
    if (p.st.type != VO_NODE_REGULAR) {
        *why = g_strdup_printf("%s is not a regular file", f->target);
        return FALSE;
    }
    {
        g_autoptr(GBytes) data = p.fs->ops->read(p.fs, p.node, &local);
        g_autofree char *have = NULL;
        g_autofree char *want = NULL;
        const char *listed = g_hash_table_lookup(job->md5sums, m->path);
        VoDebMember *src = m;

        if (!data) {
            *why = g_strdup_printf("%s: %s", f->target, local->message);
            return FALSE;
        }
        /* A hard link has the content of the member it links to. */
        for (guint i = 0; src->hardlink && i < job->deb->members->len; i++) {
            VoDebMember *o = job->deb->members->pdata[i];

            if (g_str_equal(o->path, src->hardlink)) {
                src = o;
                break;
            }
        }
        have = g_compute_checksum_for_bytes(G_CHECKSUM_MD5, data);
        want = listed ? g_strdup(listed)
               : src->data ? g_compute_checksum_for_bytes(G_CHECKSUM_MD5,
                                                          src->data)
                           : NULL;
        if (g_strcmp0(have, want) != 0) {
            *why = g_strdup_printf("%s has md5 %s, the package %s", f->target,
                                   have, want ? want : "(none)");
            return FALSE;
        }
        if (p.fs->has_owners && !m->hardlink &&
            (p.st.mode != f->mode || p.st.uid != f->uid ||
             p.st.gid != f->gid)) {
            *why = g_strdup_printf("%s is %04o %u:%u, the package says "
                                   "%04o %u:%u", f->target, p.st.mode,
                                   p.st.uid, p.st.gid, f->mode, f->uid,
                                   f->gid);
            return FALSE;
        }
    }
    return TRUE;
}

/* The package's status paragraph, info files and files as dpkg --unpack
 * leaves them (or, once the guest configured it, as installed). */
static gboolean vo_unpack_verify_one(VoGuest *guest, VoDpkgDb *db,
                                     VoUnpackIds *ids, VoPackageOp *op,
                                     char **why)
{
    g_autoptr(GError) local = NULL;
    g_autoptr(VoUnpackJob) job = NULL;
    g_autoptr(VoStanza) saved = NULL;
    VoStanza *st = vo_dpkg_db_find(db, op->package, op->architecture);
    const char *status = st ? vo_stanza_get(st, "Status") : NULL;
    gboolean configured;

    if (!st || g_strcmp0(vo_stanza_get(st, "Version"), op->version) != 0) {
        *why = g_strdup_printf("%s is not at version %s in the status file",
                               op->package, op->version);
        return FALSE;
    }
    configured = g_strcmp0(status, "install ok installed") == 0;
    if (!configured && g_strcmp0(status, "install ok unpacked") != 0) {
        *why = g_strdup_printf("%s has status \"%s\"", op->package,
                               status ? status : "");
        return FALSE;
    }
    if (configured) {
        /* dpkg --configure ran in the guest since: nothing of ours is
         * left to check against. */
        return TRUE;
    }
    if (g_strcmp0(vo_stanza_get(st, "Config-Version"),
                  op->old_version) != 0) {
        *why = g_strdup_printf("%s: Config-Version is not %s", op->package,
                               op->old_version ? op->old_version
                                               : "absent");
        return FALSE;
    }
    /* The job a new install would be on this database gives the files,
     * the info files and the fields to compare: the package is seen as not
     * installed for that while, so that its paths are its own. */
    {
        VoPackageOp fake = *op;
        VoStanza *absent = vo_stanza_copy(st);

        saved = vo_stanza_copy(st);
        st = NULL;
        fake.old_version = NULL;
        vo_stanza_set(absent, "Status", "install ok not-installed");
        vo_dpkg_db_put(db, absent);
        job = vo_unpack_prepare(guest, db, ids, &fake, &local);
        vo_dpkg_db_put(db, vo_stanza_copy(saved));
        if (!job) {
            *why = g_strdup(local->message);
            return FALSE;
        }
    }
    {
        const char *have = vo_stanza_get(saved, "Conffiles");
        g_auto(GStrv) lines = g_strsplit(have ? have : "", "\n", -1);
        GHashTableIter it;
        gpointer path;

        g_hash_table_iter_init(&it, job->conffiles);
        while (g_hash_table_iter_next(&it, &path, NULL)) {
            gboolean found = FALSE;

            for (guint i = 0; lines[i] && !found; i++) {
                g_auto(GStrv) w = g_strsplit(g_strstrip(lines[i]), " ", 2);

                found = g_strcmp0(w[0], path) == 0;
            }
            if (!found) {
                *why = g_strdup_printf("%s: conffile %s is not in the "
                                       "status file", op->package,
                                       (const char *)path);
                return FALSE;
            }
        }
    }
    for (guint i = 0; i < job->files->len; i++) {
        if (!vo_unpack_verify_file(guest, job, job->files->pdata[i], why)) {
            return FALSE;
        }
    }
    for (guint i = 0; i < job->stanza->fields->len; i++) {
        VoField *f = job->stanza->fields->pdata[i];

        if (g_str_equal(f->name, "Conffiles") ||
            g_str_equal(f->name, "Config-Version")) {
            continue;
        }
        if (g_strcmp0(vo_stanza_get(saved, f->name), f->value) != 0) {
            *why = g_strdup_printf("%s: status field %s differs from the "
                                   "package's", op->package, f->name);
            return FALSE;
        }
    }
    for (guint i = 0; i < job->info_write->len; i++) {
        const char *name = job->info_write->pdata[i];
        g_autofree char *path = vo_unpack_info_path(job->info, name);
        g_autoptr(GBytes) have = vo_dpkg_read_file(guest, path,
                                                   VO_DEB_MAX_CONTROL, NULL);

        if (!have ||
            !g_bytes_equal(have, vo_deb_control_file(job->deb, name))) {
            *why = g_strdup_printf("%s is not the package's", path);
            return FALSE;
        }
    }
    {
        GPtrArray *list = g_hash_table_lookup(db->lists, job->info);

        for (guint i = 0; i < job->deb->members->len; i++) {
            VoDebMember *m = job->deb->members->pdata[i];

            if (!list || !g_ptr_array_find_with_equal_func(
                             list, m->path, g_str_equal, NULL)) {
                *why = g_strdup_printf("%s is not in %s.list", m->path,
                                       job->info);
                return FALSE;
            }
        }
    }
    return TRUE;
}

guint vo_unpack_verify(VoBundle *bundle, VoGuest *guest, JsonBuilder *report,
                       char **first)
{
    g_autoptr(VoDpkgDb) db = NULL;
    g_autoptr(GError) local = NULL;
    g_auto(VoUnpackIds) ids = { 0 };
    guint failed = 0;

    if (bundle->packages->len == 0) {
        return 0;
    }
    db = vo_unpack_open(guest, &ids, &local);
    for (guint i = 0; i < bundle->packages->len; i++) {
        VoPackageOp *op = bundle->packages->pdata[i];
        g_autofree char *why = NULL;
        gboolean ok = db ? vo_unpack_verify_one(guest, db, &ids, op, &why)
                         : (why = g_strdup(local->message), FALSE);

        if (!ok) {
            failed++;
            if (!*first) {
                *first = g_strdup_printf("unpack %s: %s", op->package, why);
            }
        }
        if (report) {
            json_builder_begin_object(report);
            vo_unpack_member_str(report, "op", "unpack");
            vo_unpack_member_str(report, "package", op->package);
            vo_unpack_member_str(report, "version", op->version);
            json_builder_set_member_name(report, "ok");
            json_builder_add_boolean_value(report, ok);
            vo_unpack_member_str(report, "problem", why);
            json_builder_end_object(report);
        }
    }
    return failed;
}
