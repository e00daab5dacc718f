/*
 * Windows updates for dormant images (vo-msu.h).
 *
 * Trust: the catalog is the operator's file, still read member by member
 * with its types and alphabets checked (its KBs and file names become
 * bundle paths and registry-adjacent text).  The images' build, UBR and
 * installed KBs come through the confined worker's inventory.  The
 * installer's result file is written by the guest: the worker reads it
 * bounded, the parent checks it again before it records anything.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <errno.h>
#include <string.h>

#include <glib/gstdio.h>

#include "host-common.h"
#include "json-strict.h"
#include "servicing.h"
#include "vmaugment-hex.h"
#include "vo-bundle.h"
#include "vo-configure.h"
#include "vo-guest-resources.h"
#include "vo-msu.h"
#include "vo-plan-bundle.h"
#include "vo-plan.h"
#include "vo-worker.h"

#define VO_MSU_RESOURCE     "/org/vmaugment/offline/guest/" \
                            "vmaugment-msu-install.cmd"
/* The result and the lists are small; larger ones are not ours. */
#define VO_MSU_MAX_RESULT   (64 * 1024)
#define VO_MSU_MAX_RECORD   (4 * 1024)
#define VO_MSU_MAX_RECORDS  64
#define VO_MSU_MAX_TIME     64

/* wusa.exe's exit codes that leave the update installed. */
#define VO_MSU_OK               0
#define VO_MSU_REBOOT           3010        /* ERROR_SUCCESS_REBOOT_REQUIRED */
#define VO_MSU_ALREADY          2359302     /* WU_S_ALREADY_INSTALLED */

typedef struct {
    char *kb;
    char *file;
    char *sha256;           /* optional in the catalog */
    char *arch;             /* optional */
    GPtrArray *builds;      /* char*, decimal */
    gint64 ubr_min, ubr_max;
    GPtrArray *supersedes;  /* char* KBs */
} VoMsuEntry;

typedef struct {
    char *build, *ubr, *arch;
    GPtrArray *installed;   /* char* KBs, sorted, once each */
    char *key;              /* SHA-256 of all of it: images alike share */
} VoMsuGroup;

static void vo_msu_entry_free(VoMsuEntry *e)
{
    g_free(e->kb);
    g_free(e->file);
    g_free(e->sha256);
    g_free(e->arch);
    g_ptr_array_unref(e->builds);
    g_ptr_array_unref(e->supersedes);
    g_free(e);
}

static void vo_msu_group_free(VoMsuGroup *g)
{
    g_free(g->build);
    g_free(g->ubr);
    g_free(g->arch);
    g_free(g->key);
    if (g->installed) {
        g_ptr_array_unref(g->installed);
    }
    g_free(g);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC(VoMsuGroup, vo_msu_group_free)

/* "KB" and 4 to 8 digits: how Microsoft numbers them, and all that may
 * become a file name or a key of the result. */
static gboolean vo_msu_kb_ok(const char *kb)
{
    gsize len = kb ? strlen(kb) : 0;

    if (len < 6 || len > 10 || kb[0] != 'K' || kb[1] != 'B') {
        return FALSE;
    }
    for (gsize i = 2; i < len; i++) {
        if (!g_ascii_isdigit(kb[i])) {
            return FALSE;
        }
    }
    return TRUE;
}

/* A build or UBR as the inventory spells it: decimal, short. */
static gboolean vo_msu_number_ok(const char *s)
{
    gsize len = s ? strlen(s) : 0;

    if (len == 0 || len > 10) {
        return FALSE;
    }
    for (gsize i = 0; i < len; i++) {
        if (!g_ascii_isdigit(s[i])) {
            return FALSE;
        }
    }
    return TRUE;
}

/* A file name of the operator's directory: no path, no dot first, an
 * alphabet that is safe in cmd and in bundle payload names. */
static gboolean vo_msu_file_ok(const char *name)
{
    gsize len = strlen(name);

    if (len < 5 || len > 200 || name[0] == '.' ||
        g_ascii_strcasecmp(name + len - 4, ".msu") != 0) {
        return FALSE;
    }
    for (gsize i = 0; i < len; i++) {
        if (!g_ascii_isalnum(name[i]) && !strchr("._+-", name[i])) {
            return FALSE;
        }
    }
    return TRUE;
}

static gboolean vo_msu_sha_ok(const char *s)
{
    if (strlen(s) != 64) {
        return FALSE;
    }
    for (const char *p = s; *p; p++) {
        if (!g_ascii_isxdigit(*p) || g_ascii_isupper(*p)) {
            return FALSE;
        }
    }
    return TRUE;
}

static gboolean vo_msu_bad(GError **error, const char *where,
                           const char *what)
{
    g_set_error(error, VO_ERROR, VO_ERROR_INVALID, "bad .msu catalog: %s%s%s",
                where ? where : "", where ? ": " : "", what);
    return FALSE;
}

/* Members of @o outside @allowed are mistakes worth saying. */
static gboolean vo_msu_members_ok(JsonObject *o, const char *const *allowed,
                                  const char *where, GError **error)
{
    g_autoptr(GList) members = json_object_get_members(o);

    for (GList *l = members; l; l = l->next) {
        if (!g_strv_contains(allowed, l->data)) {
            g_autofree char *what = g_strdup_printf("unknown member \"%s\"",
                                                    (const char *)l->data);

            return vo_msu_bad(error, where, what);
        }
    }
    return TRUE;
}

static gboolean vo_msu_int(JsonObject *o, const char *name, gint64 *out)
{
    JsonNode *n = json_object_get_member(o, name);

    if (!n || !JSON_NODE_HOLDS_VALUE(n) ||
        json_node_get_value_type(n) != G_TYPE_INT64) {
        return FALSE;
    }
    *out = json_node_get_int(n);
    return *out >= 0 && *out <= G_MAXUINT32;
}

/* The array of strings @name of @o, each passing @ok; absent is empty
 * when @optional. */
static GPtrArray *vo_msu_strings(JsonObject *o, const char *name,
                                 gboolean optional,
                                 gboolean (*ok)(const char *),
                                 const char *where, GError **error)
{
    g_autoptr(GPtrArray) out = g_ptr_array_new_with_free_func(g_free);
    JsonNode *n = json_object_get_member(o, name);
    g_autofree char *what = g_strdup_printf("\"%s\" is an array of %s", name,
                                            ok == vo_msu_kb_ok ? "KBs"
                                            : "decimal strings");
    JsonArray *arr;

    if (!n && optional) {
        return g_steal_pointer(&out);
    }
    if (!n || !JSON_NODE_HOLDS_ARRAY(n)) {
        vo_msu_bad(error, where, what);
        return NULL;
    }
    arr = json_node_get_array(n);
    if (json_array_get_length(arr) > VO_MSU_MAX_UPDATES) {
        vo_msu_bad(error, where, what);
        return NULL;
    }
    for (guint i = 0; i < json_array_get_length(arr); i++) {
        JsonNode *el = json_array_get_element(arr, i);

        if (!JSON_NODE_HOLDS_VALUE(el) ||
            json_node_get_value_type(el) != G_TYPE_STRING ||
            !ok(json_node_get_string(el))) {
            vo_msu_bad(error, where, what);
            return NULL;
        }
        g_ptr_array_add(out, g_strdup(json_node_get_string(el)));
    }
    return g_steal_pointer(&out);
}

/*
 * {"format": 1, "updates": [{"kb": "KB5035845", "file": "x.msu",
 * "builds": ["19045"], "ubr_min": N, "ubr_max": N, "supersedes": [KBs],
 * "arch": "x86_64", "sha256": HEX}]}: the last three optional.
 */
static GPtrArray *vo_msu_catalog_read(const char *path, GError **error)
{
    static const char *const top[] = { "format", "updates", NULL };
    static const char *const member[] = {
        "kb", "file", "builds", "ubr_min", "ubr_max", "supersedes", "arch",
        "sha256", NULL,
    };
    g_autoptr(GPtrArray) entries = g_ptr_array_new_with_free_func(
        (GDestroyNotify)vo_msu_entry_free);
    g_autoptr(GHashTable) kbs = g_hash_table_new(g_str_hash, g_str_equal);
    g_autoptr(JsonParser) parser = json_parser_new_immutable();
    g_autofree char *text = NULL;
    gsize len;
    JsonNode *root, *n;
    JsonArray *arr;
    gint64 format;

    if (!g_file_get_contents(path, &text, &len, error)) {
        return NULL;
    }
    if (len > VO_MSU_MAX_CATALOG || !g_utf8_validate(text, len, NULL) ||
        !vmaug_json_depth_ok(text, len, 8)) {
        vo_msu_bad(error, NULL, "not UTF-8 JSON of at most 1 MiB, nested "
                   "at most 8 deep");
        return NULL;
    }
    if (!json_parser_load_from_data(parser, text, len, error)) {
        g_prefix_error(error, "bad .msu catalog %s: ", path);
        return NULL;
    }
    root = json_parser_get_root(parser);
    if (!root || !JSON_NODE_HOLDS_OBJECT(root)) {
        vo_msu_bad(error, NULL, "the root must be an object");
        return NULL;
    }
    if (!vo_msu_members_ok(json_node_get_object(root), top, NULL, error)) {
        return NULL;
    }
    if (!vo_msu_int(json_node_get_object(root), "format", &format) ||
        format != 1) {
        vo_msu_bad(error, NULL, "\"format\" must be 1");
        return NULL;
    }
    n = json_object_get_member(json_node_get_object(root), "updates");
    if (!n || !JSON_NODE_HOLDS_ARRAY(n) ||
        json_array_get_length(json_node_get_array(n)) == 0 ||
        json_array_get_length(json_node_get_array(n)) > VO_MSU_MAX_UPDATES) {
        vo_msu_bad(error, NULL, "\"updates\" is an array of 1 to 999 "
                   "objects");
        return NULL;
    }
    arr = json_node_get_array(n);
    for (guint i = 0; i < json_array_get_length(arr); i++) {
        g_autofree char *where = g_strdup_printf("updates[%u]", i);
        JsonNode *el = json_array_get_element(arr, i);
        const char *kb, *file, *sha, *arch;
        VoMsuEntry *e;
        JsonObject *o;

        if (!JSON_NODE_HOLDS_OBJECT(el)) {
            vo_msu_bad(error, where, "not an object");
            return NULL;
        }
        o = json_node_get_object(el);
        if (!vo_msu_members_ok(o, member, where, error)) {
            return NULL;
        }
        kb = vmaug_json_string(o, "kb");
        file = vmaug_json_string(o, "file");
        sha = vmaug_json_string(o, "sha256");
        arch = vmaug_json_string(o, "arch");
        if (!kb || !vo_msu_kb_ok(kb)) {
            vo_msu_bad(error, where, "\"kb\" is \"KB\" and 4 to 8 digits");
            return NULL;
        }
        if (!file || !vo_msu_file_ok(file)) {
            vo_msu_bad(error, where, "\"file\" is a .msu file name of "
                       "letters, digits and ._+- in the catalog's "
                       "directory");
            return NULL;
        }
        if ((json_object_has_member(o, "sha256") &&
             (!sha || !vo_msu_sha_ok(sha))) ||
            (json_object_has_member(o, "arch") &&
             (!arch || !*arch || strlen(arch) > 32))) {
            vo_msu_bad(error, where, "\"sha256\" is 64 lower-case hex "
                       "digits, \"arch\" a short string");
            return NULL;
        }
        if (!g_hash_table_add(kbs, (char *)kb)) {
            vo_msu_bad(error, where, "its \"kb\" appears twice");
            return NULL;
        }
        e = g_new0(VoMsuEntry, 1);
        g_ptr_array_add(entries, e);
        e->kb = g_strdup(kb);
        e->file = g_strdup(file);
        e->sha256 = g_strdup(sha);
        e->arch = g_strdup(arch);
        e->builds = vo_msu_strings(o, "builds", FALSE, vo_msu_number_ok,
                                   where, error);
        e->supersedes = vo_msu_strings(o, "supersedes", TRUE, vo_msu_kb_ok,
                                       where, error);
        if (!e->builds || !e->supersedes) {
            return NULL;
        }
        if (e->builds->len == 0) {
            vo_msu_bad(error, where, "\"builds\" names at least one build");
            return NULL;
        }
        if (!vo_msu_int(o, "ubr_min", &e->ubr_min) ||
            !vo_msu_int(o, "ubr_max", &e->ubr_max) ||
            e->ubr_min > e->ubr_max) {
            vo_msu_bad(error, where, "\"ubr_min\" and \"ubr_max\" are "
                       "integers, the first not above the second");
            return NULL;
        }
    }
    return g_steal_pointer(&entries);
}

static int vo_msu_cmp_str(gconstpointer a, gconstpointer b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* CBS states that mean the update's fixes are in the image: installed,
 * permanent, or superseded by a newer installed package. */
static gboolean vo_msu_state_installed(const char *state)
{
    return g_strcmp0(state, "installed") == 0 ||
           g_strcmp0(state, "permanent") == 0 ||
           g_strcmp0(state, "superseded") == 0;
}

/* The image's build, UBR, architecture and installed KBs, from the
 * worker's inventory (the guest's: each value checked); VoPlanGuestRead. */
static gpointer vo_msu_read_image(const char *image, JsonObject *result,
                                  const char **group_key, GError **error)
{
    g_autoptr(VoMsuGroup) g = g_new0(VoMsuGroup, 1);
    g_autoptr(GString) key = g_string_new(NULL);
    JsonNode *inv, *os, *updates;
    JsonObject *o;
    const char *arch;

    inv = json_object_get_member(result, "inventory");
    os = inv && JSON_NODE_HOLDS_OBJECT(inv)
         ? json_object_get_member(json_node_get_object(inv), "os") : NULL;
    updates = inv && JSON_NODE_HOLDS_OBJECT(inv)
              ? json_object_get_member(json_node_get_object(inv), "updates")
              : NULL;
    if (!os || !JSON_NODE_HOLDS_OBJECT(os) ||
        g_strcmp0(vmaug_json_string(json_node_get_object(os), "family"),
                  "windows") != 0) {
        g_set_error(error, VO_ERROR, VO_ERROR_NOT_APPLICABLE,
                    "%s is not a Windows image", image);
        return NULL;
    }
    o = json_node_get_object(os);
    g->build = g_strdup(vmaug_json_string(o, "current_build"));
    g->ubr = g_strdup(vmaug_json_string(o, "ubr"));
    arch = vmaug_json_string(o, "arch");
    g->arch = g_strdup(arch && strlen(arch) <= 32 ? arch : "");
    if (!vo_msu_number_ok(g->build) || !vo_msu_number_ok(g->ubr)) {
        g_set_error(error, VO_ERROR, VO_ERROR_NOT_APPLICABLE,
                    "%s has no CurrentBuild and UBR to plan updates for",
                    image);
        return NULL;
    }
    g->installed = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; updates && JSON_NODE_HOLDS_ARRAY(updates) &&
                      i < json_array_get_length(
                          json_node_get_array(updates)); i++) {
        JsonNode *u = json_array_get_element(json_node_get_array(updates), i);
        const char *kb;

        if (!JSON_NODE_HOLDS_OBJECT(u)) {
            continue;
        }
        kb = vmaug_json_string(json_node_get_object(u), "kb");
        if (vo_msu_kb_ok(kb) &&
            vo_msu_state_installed(vmaug_json_string(
                json_node_get_object(u), "state_name")) &&
            !g_ptr_array_find_with_equal_func(g->installed, kb, g_str_equal,
                                              NULL)) {
            g_ptr_array_add(g->installed, g_strdup(kb));
        }
    }
    g_ptr_array_sort(g->installed, vo_msu_cmp_str);
    g_string_append_printf(key, "%s\n%s\n%s\n", g->build, g->ubr, g->arch);
    for (guint i = 0; i < g->installed->len; i++) {
        g_string_append_printf(key, "%s\n",
                               (char *)g->installed->pdata[i]);
    }
    g->key = g_compute_checksum_for_string(G_CHECKSUM_SHA256, key->str, -1);
    *group_key = g->key;
    return g_steal_pointer(&g);
}

static gboolean vo_msu_has(GPtrArray *list, const char *s)
{
    return g_ptr_array_find_with_equal_func(list, s, g_str_equal, NULL);
}

/* Whether @e fits the image by build, UBR and architecture; the reason
 * when not. */
static const char *vo_msu_fits(VoMsuEntry *e, VoMsuGroup *g, char **why)
{
    gint64 ubr = g_ascii_strtoll(g->ubr, NULL, 10);

    if (!vo_msu_has(e->builds, g->build)) {
        *why = g_strdup_printf("for build%s %s, the image is %s",
                               e->builds->len == 1 ? "" : "s",
                               (char *)e->builds->pdata[0], g->build);
        return "not-for-build";
    }
    if (e->arch && !g_str_equal(e->arch, g->arch)) {
        *why = g_strdup_printf("for %s, the image is %s", e->arch, g->arch);
        return "not-for-build";
    }
    if (ubr < e->ubr_min || ubr > e->ubr_max) {
        *why = g_strdup_printf("for UBR %" G_GINT64_FORMAT " to %"
                               G_GINT64_FORMAT ", the image is at %s",
                               e->ubr_min, e->ubr_max, g->ubr);
        return "ubr-out-of-range";
    }
    if (vo_msu_has(g->installed, e->kb)) {
        *why = g_strdup("installed (Component Based Servicing)");
        return "installed";
    }
    return NULL;
}

/* Copies @src into @dir under its own name; its SHA-256 returned, and
 * checked against @want when the catalog gives one (the copy removed
 * when it differs). */
static char *vo_msu_keep(const char *src, const char *dir, const char *want,
                         GError **error)
{
    g_autofree char *sha = NULL;
    g_autofree char *dest = vo_plan_keep_file(src, dir, &sha, error);

    if (!dest) {
        return NULL;
    }
    if (want && !g_str_equal(want, sha)) {
        g_unlink(dest);
        g_set_error(error, VO_ERROR, VO_ERROR_HASH_MISMATCH,
                    "%s is not the file the catalog names (SHA-256 %s, the "
                    "catalog says %s)", src, sha, want);
        return NULL;
    }
    return g_steal_pointer(&sha);
}

static void vo_msu_member(JsonBuilder *b, const char *name,
                          const char *value)
{
    json_builder_set_member_name(b, name);
    json_builder_add_string_value(b, value);
}

/* One group's decisions, its applicable files kept in the download
 * directory (@kept: file name -> SHA-256, shared by the groups). */
static gboolean vo_msu_plan_group(const VoMsuPlanOptions *opts,
                                  const char *catalog_dir,
                                  GPtrArray *entries, VoPlanGroup *pg,
                                  GHashTable *kept, JsonBuilder *b,
                                  GError **error)
{
    VoMsuGroup *g = pg->data;
    g_autoptr(GHashTable) fits = g_hash_table_new(g_str_hash, g_str_equal);
    g_autoptr(JsonBuilder) skipped = json_builder_new();

    /* First what fits on its own; then what an installed or planned
     * update supersedes, by the catalog's word. */
    for (guint i = 0; i < entries->len; i++) {
        VoMsuEntry *e = entries->pdata[i];
        g_autofree char *why = NULL;

        if (!vo_msu_fits(e, g, &why)) {
            g_hash_table_add(fits, e->kb);
        }
    }

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "images");
    json_builder_begin_array(b);
    for (guint i = 0; i < pg->images->len; i++) {
        json_builder_add_string_value(b, pg->images->pdata[i]);
    }
    json_builder_end_array(b);
    vo_msu_member(b, "inventory_sha256", g->key);
    json_builder_set_member_name(b, "os");
    json_builder_begin_object(b);
    vo_msu_member(b, "family", "windows");
    vo_msu_member(b, "current_build", g->build);
    vo_msu_member(b, "ubr", g->ubr);
    vo_msu_member(b, "arch", g->arch);
    json_builder_end_object(b);
    json_builder_set_member_name(b, "installed");
    json_builder_begin_array(b);
    for (guint i = 0; i < g->installed->len; i++) {
        json_builder_add_string_value(b, g->installed->pdata[i]);
    }
    json_builder_end_array(b);

    json_builder_set_member_name(b, "updates");
    json_builder_begin_array(b);
    json_builder_begin_array(skipped);
    for (guint i = 0; i < entries->len; i++) {
        VoMsuEntry *e = entries->pdata[i];
        g_autofree char *why = NULL;
        const char *decision = vo_msu_fits(e, g, &why);
        const char *by = NULL;
        const char *sha;
        JsonBuilder *to;

        for (guint j = 0; !decision && j < entries->len; j++) {
            VoMsuEntry *o = entries->pdata[j];

            if (o != e && vo_msu_has(o->supersedes, e->kb) &&
                (vo_msu_has(g->installed, o->kb) ||
                 g_hash_table_contains(fits, o->kb))) {
                by = o->kb;
                decision = "superseded";
                why = g_strdup_printf("superseded by %s, %s", by,
                                      vo_msu_has(g->installed, by)
                                      ? "installed" : "planned");
            }
        }
        to = decision ? skipped : b;
        json_builder_begin_object(to);
        vo_msu_member(to, "kb", e->kb);
        vo_msu_member(to, "file", e->file);
        vo_msu_member(to, "decision", decision ? decision : "applicable");
        if (decision) {
            vo_msu_member(to, "reason", why);
            json_builder_end_object(to);
            continue;
        }
        sha = g_hash_table_lookup(kept, e->file);
        if (!sha) {
            g_autofree char *src = g_build_filename(catalog_dir, e->file,
                                                    NULL);
            char *have = vo_msu_keep(src, opts->download_dir, e->sha256,
                                     error);

            if (!have) {
                return FALSE;
            }
            g_hash_table_insert(kept, g_strdup(e->file), have);
            sha = have;
        }
        vo_msu_member(to, "sha256", sha);
        json_builder_end_object(to);
    }
    json_builder_end_array(b);
    json_builder_end_array(skipped);
    json_builder_set_member_name(b, "skipped");
    json_builder_add_value(b, json_builder_get_root(skipped));
    json_builder_end_object(b);
    return TRUE;
}

JsonNode *vo_msu_plan_run(const VoMsuPlanOptions *opts, GError **error)
{
    g_autoptr(GPtrArray) entries = NULL;
    g_autoptr(GPtrArray) groups = NULL;
    g_autoptr(GHashTable) kept = g_hash_table_new_full(g_str_hash,
                                                       g_str_equal, g_free,
                                                       g_free);
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(GDateTime) now = g_date_time_new_now_utc();
    g_autofree char *created = g_date_time_format(now,
                                                  "%Y-%m-%dT%H:%M:%SZ");
    g_autofree char *catalog_dir = g_path_get_dirname(opts->catalog);

    entries = vo_msu_catalog_read(opts->catalog, error);
    if (!entries) {
        return NULL;
    }
    if (g_mkdir_with_parents(opts->download_dir, 0755) < 0) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "cannot create %s: %s",
                    opts->download_dir, g_strerror(errno));
        return NULL;
    }
    groups = vo_plan_guests_group(opts->guests, VO_WORKER_INSPECT,
                                  vo_msu_read_image,
                                  (GDestroyNotify)vo_msu_group_free,
                                  opts->unread, error);
    if (!groups) {
        return NULL;
    }

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "format");
    json_builder_add_int_value(b, VO_PLAN_FORMAT);
    vo_msu_member(b, "kind", "msu");
    vo_msu_member(b, "created", created);
    json_builder_set_member_name(b, "groups");
    json_builder_begin_array(b);
    for (guint i = 0; i < groups->len; i++) {
        if (!vo_msu_plan_group(opts, catalog_dir, entries, groups->pdata[i],
                               kept, b, error)) {
            return NULL;
        }
    }
    json_builder_end_array(b);
    json_builder_end_object(b);
    return json_builder_get_root(b);
}

/* ---- A bundle from the plan ---- */

gboolean vo_msu_plan_file_is(const char *path)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    JsonNode *root;

    if (!json_parser_load_from_file(parser, path, NULL)) {
        return FALSE;
    }
    root = json_parser_get_root(parser);
    return root && JSON_NODE_HOLDS_OBJECT(root) &&
           g_strcmp0(vmaug_json_string(json_node_get_object(root), "kind"),
                     "msu") == 0;
}

static gboolean vo_msu_plan_bad(GError **error, const char *what)
{
    g_set_error(error, VO_ERROR, VO_ERROR_INVALID, "bad plan: %s", what);
    return FALSE;
}

static void vo_msu_json_add(JsonBuilder *b, const char *op, const char *path,
                            const char *payload)
{
    json_builder_begin_object(b);
    vo_msu_member(b, "op", op);
    vo_msu_member(b, "path", path);
    if (payload) {
        vo_msu_member(b, "payload", payload);
    }
    json_builder_end_object(b);
}

static void vo_msu_json_reg(JsonBuilder *b, const char *name,
                            const char *sz, gint64 dword)
{
    json_builder_begin_object(b);
    vo_msu_member(b, "op", "set");
    vo_msu_member(b, "hive", "SYSTEM");
    vo_msu_member(b, "key", VO_MSU_SETUP_KEY);
    vo_msu_member(b, "name", name);
    vo_msu_member(b, "type", sz ? "sz" : "dword");
    json_builder_set_member_name(b, "value");
    if (sz) {
        json_builder_add_string_value(b, sz);
    } else {
        json_builder_add_int_value(b, dword);
    }
    json_builder_end_object(b);
}

/*
 * The rules: the build and UBR the plan was made for, exactly; and
 * Windows not in the middle of its own setup (SetupType absent or 0),
 * whose CmdLine the arming would take over.
 */
static void vo_msu_json_rules(JsonBuilder *b, const char *build,
                              const char *ubr)
{
    json_builder_begin_array(b);
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "os");
    json_builder_begin_object(b);
    vo_msu_member(b, "family", "windows");
    vo_msu_member(b, "current_build", build);
    vo_msu_member(b, "ubr", ubr);
    json_builder_end_object(b);
    json_builder_end_object(b);
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "any");
    json_builder_begin_array(b);
    for (int i = 0; i < 2; i++) {
        json_builder_begin_object(b);
        if (i == 0) {
            json_builder_set_member_name(b, "not");
            json_builder_begin_object(b);
        }
        json_builder_set_member_name(b, "registry");
        json_builder_begin_object(b);
        vo_msu_member(b, "hive", "SYSTEM");
        vo_msu_member(b, "key", VO_MSU_SETUP_KEY);
        vo_msu_member(b, "name", "SetupType");
        if (i == 1) {
            vo_msu_member(b, "equals", "0");
        }
        json_builder_end_object(b);
        if (i == 0) {
            json_builder_end_object(b);
        }
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    json_builder_end_object(b);
    json_builder_end_array(b);
}

gboolean vo_msu_bundle_build(const char *plan_path, int group,
                             const char *dir, const char *key_path,
                             const char *cert_path, const char *out_path,
                             GError **error)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(JsonBuilder) m = json_builder_new();
    g_autoptr(JsonNode) manifest = NULL;
    g_autoptr(GHashTable) payloads = g_hash_table_new_full(
        g_str_hash, g_str_equal, g_free, (GDestroyNotify)g_bytes_unref);
    g_autoptr(GString) kbs = g_string_new(NULL);
    g_autoptr(GHashTable) seen = g_hash_table_new(g_str_hash, g_str_equal);
    g_autoptr(GString) version = g_string_new(NULL);
    g_autofree char *id = NULL;
    g_autofree char *list_name = NULL;
    g_autofree char *description = NULL;
    const char *build, *ubr, *created, *key;
    JsonNode *updates, *images, *os;
    JsonObject *g;
    JsonArray *arr;
    guint n;

    if (!json_parser_load_from_file(parser, plan_path, error)) {
        return FALSE;
    }
    g = vo_plan_bundle_group(json_parser_get_root(parser), group, error);
    if (!g) {
        return FALSE;
    }
    updates = json_object_get_member(g, "updates");
    images = json_object_get_member(g, "images");
    os = json_object_get_member(g, "os");
    key = vmaug_json_string(g, "inventory_sha256");
    if (!updates || !JSON_NODE_HOLDS_ARRAY(updates) || !images ||
        !JSON_NODE_HOLDS_ARRAY(images) || !os || !JSON_NODE_HOLDS_OBJECT(os) ||
        !key || !vo_msu_sha_ok(key)) {
        return vo_msu_plan_bad(error, "a group has \"images\", \"os\", "
                               "\"inventory_sha256\" and \"updates\"");
    }
    build = vmaug_json_string(json_node_get_object(os), "current_build");
    ubr = vmaug_json_string(json_node_get_object(os), "ubr");
    if (!vo_msu_number_ok(build) || !vo_msu_number_ok(ubr)) {
        return vo_msu_plan_bad(error, "\"os\" has a decimal "
                               "\"current_build\" and \"ubr\"");
    }
    arr = json_node_get_array(updates);
    n = json_array_get_length(arr);
    if (n == 0) {
        g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                    "nothing to bundle: the group plans no update");
        return FALSE;
    }
    if (n > VO_MSU_MAX_UPDATES) {
        return vo_msu_plan_bad(error, "too many updates");
    }

    created = vmaug_json_string(json_node_get_object(
                                    json_parser_get_root(parser)), "created");
    for (const char *p = created ? created : ""; *p; p++) {
        if (g_ascii_isalnum(*p)) {
            g_string_append_c(version, *p);
        }
    }
    if (version->len == 0 || version->len > 31) {
        g_string_assign(version, "1");
    }
    id = g_strdup_printf("msu-%s.%s-%.12s", build, ubr, key);
    list_name = g_strdup_printf("%s-%s.kbs", id, version->str);

    json_builder_begin_object(m);
    json_builder_set_member_name(m, "format");
    json_builder_add_int_value(m, VO_BUNDLE_FORMAT);
    vo_msu_member(m, "id", id);
    vo_msu_member(m, "version", version->str);
    description = g_strdup_printf(
        "%u Windows update%s staged for build %s.%s (%u image%s)", n,
        n == 1 ? "" : "s", build, ubr,
        json_array_get_length(json_node_get_array(images)),
        json_array_get_length(json_node_get_array(images)) == 1 ? "" : "s");
    vo_msu_member(m, "description", description);
    json_builder_set_member_name(m, "applies");
    vo_msu_json_rules(m, build, ubr);
    json_builder_set_member_name(m, "files");
    json_builder_begin_array(m);
    vo_msu_json_add(m, "mkdir", VO_MSU_STAGED, NULL);
    for (guint i = 0; i < n; i++) {
        JsonNode *el = json_array_get_element(arr, i);
        g_autofree char *payload = NULL;
        g_autofree char *path = NULL;
        const char *kb, *file, *sha;
        GBytes *data;

        if (!JSON_NODE_HOLDS_OBJECT(el)) {
            return vo_msu_plan_bad(error, "an update must be an object");
        }
        kb = vmaug_json_string(json_node_get_object(el), "kb");
        file = vmaug_json_string(json_node_get_object(el), "file");
        sha = vmaug_json_string(json_node_get_object(el), "sha256");
        if (!vo_msu_kb_ok(kb) || !file || !vo_msu_file_ok(file) || !sha ||
            !vo_msu_sha_ok(sha)) {
            return vo_msu_plan_bad(error, "an update has a \"kb\", a .msu "
                                   "\"file\" and its \"sha256\"");
        }
        if (!g_hash_table_add(seen, (char *)kb)) {
            return vo_msu_plan_bad(error, "a KB appears twice");
        }
        data = vo_plan_bundle_file(dir, file, sha, error);
        if (!data) {
            return FALSE;
        }
        /* The installer takes them in name order, and the KB from the
         * name: "001-KB5035845.msu". */
        payload = g_strdup_printf("%03u-%s.msu", i + 1, kb);
        path = g_strdup_printf("%s\\%s", VO_MSU_STAGED, payload);
        g_hash_table_insert(payloads, g_strdup(payload), data);
        vo_msu_json_add(m, "add", path, payload);
        g_string_append_printf(kbs, "%s\r\n", kb);
    }
    g_hash_table_insert(payloads, g_strdup("vmaugment-msu-install.cmd"),
                        g_resource_lookup_data(vo_guest_get_resource(),
                                               VO_MSU_RESOURCE,
                                               G_RESOURCE_LOOKUP_FLAGS_NONE,
                                               NULL));
    vo_msu_json_add(m, "add", VO_MSU_SCRIPT, "vmaugment-msu-install.cmd");
    /* Which KBs this bundle staged, beside its marker: what its result
     * may name. */
    {
        g_autofree char *path = g_strdup_printf("%s\\%s", VO_MSU_DIR,
                                                list_name);

        g_hash_table_insert(payloads, g_strdup(list_name),
                            g_bytes_new(kbs->str, kbs->len));
        vo_msu_json_add(m, "add", path, list_name);
    }
    json_builder_end_array(m);
    /* Armed in the same overlay as the files: both or neither. */
    json_builder_set_member_name(m, "registry");
    json_builder_begin_array(m);
    vo_msu_json_reg(m, "CmdLine", VO_MSU_CMDLINE, 0);
    vo_msu_json_reg(m, "SetupType", NULL, 2);
    json_builder_end_array(m);
    vo_msu_member(m, "marker", VO_MSU_DIR);
    json_builder_end_object(m);
    manifest = json_builder_get_root(m);
    return vo_bundle_build_manifest(manifest, payloads, key_path, cert_path,
                                    out_path, error);
}

/* ---- Worker: the installer's result ---- */

/* A string member of at most @max bytes of UTF-8, without control
 * characters when @text: the guest's text, shown and kept.  Record
 * names need not be text: the servicing record only matches them. */
static const char *vo_msu_checked(JsonObject *o, const char *name, gsize max,
                                  gboolean text)
{
    const char *v = vmaug_json_string(o, name);

    if (!v || strlen(v) > max || !g_utf8_validate(v, -1, NULL)) {
        return NULL;
    }
    for (const char *p = v; text && *p; p++) {
        if ((guchar)*p < 0x20 || *p == 0x7f) {
            return NULL;
        }
    }
    return v;
}

static const char *vo_msu_string(JsonObject *o, const char *name, gsize max)
{
    return vo_msu_checked(o, name, max, TRUE);
}

/* The KBs the bundle of record @name listed beside it, into @b. */
static void vo_msu_add_kbs(VoGuest *guest, const char *name, JsonBuilder *b)
{
    g_autofree char *stem = g_strndup(name, strlen(name) - 5);
    g_autofree char *path = g_strdup_printf("%s\\%s.kbs", VO_MSU_DIR, stem);
    g_autoptr(GBytes) data = vo_guest_read_file_max(guest, path,
                                                    VO_MSU_MAX_RECORD, NULL);
    g_autofree char *text = NULL;
    g_auto(GStrv) lines = NULL;

    json_builder_set_member_name(b, "kbs");
    json_builder_begin_array(b);
    if (data) {
        text = g_strndup(g_bytes_get_data(data, NULL),
                         g_bytes_get_size(data));
        lines = g_strsplit(text, "\r\n", VO_MSU_MAX_UPDATES + 1);
        for (guint i = 0; lines[i] && i < VO_MSU_MAX_UPDATES; i++) {
            if (vo_msu_kb_ok(lines[i])) {
                json_builder_add_string_value(b, lines[i]);
            }
        }
    }
    json_builder_end_array(b);
}

/* The record @name lists, as the bundle wrote it or renamed once
 * reported, with the KBs its bundle staged. */
static void vo_msu_add_record(VoGuest *guest, const char *name,
                              JsonBuilder *b)
{
    static const char *const suffixes[] = { "", ".reported", NULL };

    if (vo_configure_record_open(guest, VO_MSU_DIR, name, suffixes, b)) {
        vo_msu_add_kbs(guest, name, b);
        json_builder_end_object(b);
    }
}

static JsonNode *vo_msu_unreadable(const char *why)
{
    g_autoptr(JsonBuilder) b = json_builder_new();

    json_builder_begin_object(b);
    vo_msu_member(b, "status", "unreadable");
    vo_msu_member(b, "message", why);
    json_builder_end_object(b);
    return json_builder_get_root(b);
}

/* An exit code as cmd's ERRORLEVEL prints it: a signed 32-bit decimal. */
static gboolean vo_msu_code(const char *s, gint64 *out)
{
    guint64 v;
    gboolean neg = s[0] == '-';

    if (!g_ascii_string_to_unsigned(s + neg, 10, 0, (guint64)G_MAXINT32 + 1,
                                    &v, NULL) ||
        (!neg && v > G_MAXINT32)) {
        return FALSE;
    }
    *out = neg ? -(gint64)v : (gint64)v;
    return TRUE;
}

JsonNode *vo_msu_result_read(VoGuest *guest)
{
    g_autoptr(GKeyFile) kf = g_key_file_new();
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(GBytes) data = NULL;
    g_autoptr(GError) local = NULL;
    g_autofree char *text = NULL;
    g_autofree char *time = NULL;
    g_auto(GStrv) groups = NULL;
    g_auto(GStrv) keys = NULL;
    g_auto(GStrv) records = NULL;
    g_autoptr(GString) lf = g_string_new(NULL);
    gsize len, n = 0;

    data = vo_guest_read_file_max(guest, VO_MSU_RESULT, VO_MSU_MAX_RESULT,
                                  &local);
    if (!data && g_error_matches(local, VO_ERROR, VO_ERROR_NOT_FOUND)) {
        return NULL;
    }
    if (!data) {
        return vo_msu_unreadable("not a result file that "
                                 "vmaugment-msu-install.cmd writes: too "
                                 "large or unreadable");
    }
    text = g_strndup(g_bytes_get_data(data, &len), g_bytes_get_size(data));
    /* cmd writes CRLF lines; nothing else may be a control character. */
    for (gsize i = 0; i < len; i++) {
        guchar c = text[i];

        if (c == '\r' && i + 1 < len && text[i + 1] == '\n') {
            continue;
        }
        if ((c < 0x20 && c != '\n') || c == 0x7f) {
            return vo_msu_unreadable("not a result file that "
                                     "vmaugment-msu-install.cmd writes: "
                                     "control characters");
        }
        g_string_append_c(lf, c);
    }
    if (!g_utf8_validate(lf->str, lf->len, NULL) ||
        !g_key_file_load_from_data(kf, lf->str, lf->len, G_KEY_FILE_NONE,
                                   NULL)) {
        return vo_msu_unreadable("not a result file that "
                                 "vmaugment-msu-install.cmd writes: not "
                                 "UTF-8 lines of KEY=VALUE");
    }
    groups = g_key_file_get_groups(kf, NULL);
    keys = g_key_file_get_keys(kf, "msu-install", NULL, NULL);
    time = g_key_file_get_value(kf, "msu-install", "time", NULL);
    if (!groups || g_strv_length(groups) != 1 || !keys || !time ||
        strlen(time) > VO_MSU_MAX_TIME) {
        return vo_msu_unreadable("not a result file that "
                                 "vmaugment-msu-install.cmd writes: its "
                                 "[msu-install] group, time and records");
    }
    records = g_key_file_get_string_list(kf, "msu-install", "records", &n,
                                         NULL);
    json_builder_begin_object(b);
    vo_msu_member(b, "status", "reported");
    vo_msu_member(b, "time", time);
    json_builder_set_member_name(b, "results");
    json_builder_begin_array(b);
    for (guint i = 0; keys[i]; i++) {
        g_autofree char *v = NULL;
        gint64 code;

        if (g_str_equal(keys[i], "time") || g_str_equal(keys[i], "records")) {
            continue;
        }
        v = g_key_file_get_value(kf, "msu-install", keys[i], NULL);
        if (!vo_msu_kb_ok(keys[i]) || i >= VO_MSU_MAX_UPDATES || !v ||
            !vo_msu_code(v, &code)) {
            return vo_msu_unreadable("not a result file that "
                                     "vmaugment-msu-install.cmd writes: a "
                                     "line is not KB=EXIT-CODE");
        }
        json_builder_begin_object(b);
        vo_msu_member(b, "kb", keys[i]);
        json_builder_set_member_name(b, "code");
        json_builder_add_int_value(b, code);
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    json_builder_set_member_name(b, "records");
    json_builder_begin_array(b);
    for (gsize i = 0; records && i < n && i < VO_MSU_MAX_RECORDS; i++) {
        const char *name = records[i];

        if (*name && !strchr(name, '\\') && !strchr(name, '/') &&
            name[0] != '.' && g_str_has_suffix(name, ".json") &&
            strlen(name) < 256) {
            vo_msu_add_record(guest, name, b);
        }
    }
    json_builder_end_array(b);
    json_builder_end_object(b);
    return json_builder_get_root(b);
}

/* ---- Parent: checking and recording it ---- */

static gboolean vo_msu_malformed(GError **error, const char *why)
{
    g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT,
                "the worker's msu_install is malformed: %s", why);
    return FALSE;
}

/* What wusa's exit code means, in the words the docs use. */
static const char *vo_msu_code_meaning(gint64 code)
{
    switch (code) {
    case VO_MSU_OK:
        return "installed";
    case VO_MSU_REBOOT:
        return "installed, restart required";
    case VO_MSU_ALREADY:
        return "already installed";
    default:
        return "failed";
    }
}

/* The record's outcome and message from @codes (KB -> code). */
static gboolean vo_msu_outcome(JsonArray *kbs, GHashTable *codes,
                               char **message)
{
    g_autoptr(GString) s = g_string_new(NULL);
    guint failed = 0;

    /* Its list gone, the guest cannot say what it installed. */
    if (json_array_get_length(kbs) == 0) {
        *message = g_strdup("the bundle's list of KBs is missing");
        return FALSE;
    }
    for (guint i = 0; i < json_array_get_length(kbs); i++) {
        const char *kb = json_array_get_string_element(kbs, i);
        gpointer code;

        if (!g_hash_table_lookup_extended(codes, kb, NULL, &code)) {
            g_string_append_printf(s, "%s%s not run", s->len ? ", " : "",
                                   kb);
            failed++;
            continue;
        }
        g_string_append_printf(s, "%s%s %d", s->len ? ", " : "", kb,
                               GPOINTER_TO_INT(code));
        if (g_str_equal(vo_msu_code_meaning(GPOINTER_TO_INT(code)),
                        "failed")) {
            failed++;
        }
    }
    if (s->len > VMAUG_SERVICING_MESSAGE_MAX) {
        g_string_printf(s, "%u of %u updates failed", failed,
                        json_array_get_length(kbs));
    }
    *message = g_string_free(g_steal_pointer(&s), FALSE);
    return failed == 0;
}

/* A record's members, as vo_msu_add_record() writes them. */
static gboolean vo_msu_record_ok(JsonNode *node)
{
    JsonObject *o;
    JsonNode *kbs;

    if (!JSON_NODE_HOLDS_OBJECT(node)) {
        return FALSE;
    }
    o = json_node_get_object(node);
    kbs = json_object_get_member(o, "kbs");
    if (json_object_get_size(o) != 4 ||
        !vo_msu_checked(o, "bundle", VMAUG_NAME_MAX - 1, FALSE) ||
        !vo_msu_checked(o, "version", VMAUG_VERSION_MAX - 1, FALSE) ||
        !vo_msu_checked(o, "manifest_sha256", 64, FALSE) || !kbs ||
        !JSON_NODE_HOLDS_ARRAY(kbs) ||
        json_array_get_length(json_node_get_array(kbs)) >
            VO_MSU_MAX_UPDATES) {
        return FALSE;
    }
    for (guint i = 0; i < json_array_get_length(json_node_get_array(kbs));
         i++) {
        JsonNode *k = json_array_get_element(json_node_get_array(kbs), i);

        if (!JSON_NODE_HOLDS_VALUE(k) ||
            json_node_get_value_type(k) != G_TYPE_STRING ||
            !vo_msu_kb_ok(json_node_get_string(k))) {
            return FALSE;
        }
    }
    return TRUE;
}

/* One record into @s; its outcome into @b. */
static void vo_msu_record_one(VmaugServicing *s, JsonObject *o,
                              GHashTable *codes, JsonBuilder *b,
                              gboolean *recorded)
{
    struct vmaug_servicing_report rep = { 0 };
    g_autoptr(GError) local = NULL;
    g_autofree char *message = NULL;
    const char *bundle = vmaug_json_string(o, "bundle");
    const char *version = vmaug_json_string(o, "version");
    gboolean ok = vo_msu_outcome(json_object_get_array_member(o, "kbs"),
                                 codes, &message);

    json_builder_begin_object(b);
    vo_msu_member(b, "bundle", bundle);
    vo_msu_member(b, "version", version);
    vo_msu_member(b, "message", message);
    json_builder_set_member_name(b, "outcome");
    memcpy(rep.bundle, bundle, strlen(bundle));
    memcpy(rep.version, version, strlen(version));
    rep.outcome = GUINT32_TO_LE(ok ? VMAUG_SERVICING_CONFIRMED :
                                VMAUG_SERVICING_FAILED);
    if (!vmaug_hex_decode_sha256(vmaug_json_string(o, "manifest_sha256"),
                                 rep.manifest_sha256)) {
        g_set_error(&local, VO_ERROR, VO_ERROR_INVALID,
                    "the record's manifest hash is malformed");
    } else if (vmaug_servicing_report(s, &rep, (const guint8 *)message,
                                      strlen(message), &local)) {
        json_builder_add_string_value(b, ok ? "confirmed" : "failed");
        json_builder_end_object(b);
        *recorded = TRUE;
        return;
    }
    json_builder_add_string_value(b, g_error_matches(
                                         local, VMAUG_HOST_ERROR,
                                         VMAUG_HOST_ERROR_EXISTS)
                                     ? "already-reported" : "refused");
    vo_msu_member(b, "reason", local->message);
    json_builder_end_object(b);
}

/* The result shown, refused whole with @why: nothing is recorded. */
static JsonNode *vo_msu_refused(JsonNode *node, const char *why)
{
    JsonNode *copy = json_node_copy(node);

    json_object_set_string_member(json_node_get_object(copy), "status",
                                  "refused");
    json_object_set_string_member(json_node_get_object(copy), "reason", why);
    return copy;
}

JsonNode *vo_msu_result_record(const char *image, JsonNode *node,
                               GError **error)
{
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(VmaugServicing) s = NULL;
    g_autoptr(GError) local = NULL;
    g_autoptr(GHashTable) codes = g_hash_table_new(g_str_hash, g_str_equal);
    g_autoptr(GHashTable) staged = g_hash_table_new(g_str_hash, g_str_equal);
    const char *status, *time;
    JsonNode *results, *records;
    JsonArray *res, *rec;
    JsonObject *o;
    gboolean recorded = FALSE;

    if (!JSON_NODE_HOLDS_OBJECT(node)) {
        vo_msu_malformed(error, "not an object");
        return NULL;
    }
    o = json_node_get_object(node);
    status = vo_msu_string(o, "status", 16);
    if (g_strcmp0(status, "unreadable") == 0 &&
        vo_msu_string(o, "message", VMAUG_SERVICING_MESSAGE_MAX) &&
        json_object_get_size(o) == 2) {
        /* Shown as the guest left it; nothing to record. */
        return json_node_copy(node);
    }
    time = vo_msu_string(o, "time", VO_MSU_MAX_TIME);
    results = json_object_get_member(o, "results");
    records = json_object_get_member(o, "records");
    if (g_strcmp0(status, "reported") != 0 || !time || !results ||
        !JSON_NODE_HOLDS_ARRAY(results) || !records ||
        !JSON_NODE_HOLDS_ARRAY(records) || json_object_get_size(o) != 4) {
        vo_msu_malformed(error, "its members");
        return NULL;
    }
    res = json_node_get_array(results);
    rec = json_node_get_array(records);
    if (json_array_get_length(res) > VO_MSU_MAX_UPDATES ||
        json_array_get_length(rec) > VO_MSU_MAX_RECORDS) {
        vo_msu_malformed(error, "too many results or records");
        return NULL;
    }
    for (guint i = 0; i < json_array_get_length(rec); i++) {
        JsonNode *r = json_array_get_element(rec, i);
        JsonArray *kbs;

        if (!vo_msu_record_ok(r)) {
            vo_msu_malformed(error, "a record's members");
            return NULL;
        }
        kbs = json_object_get_array_member(json_node_get_object(r), "kbs");
        for (guint j = 0; j < json_array_get_length(kbs); j++) {
            g_hash_table_add(staged,
                             (char *)json_array_get_string_element(kbs, j));
        }
    }
    for (guint i = 0; i < json_array_get_length(res); i++) {
        JsonNode *r = json_array_get_element(res, i);
        JsonObject *ro;
        JsonNode *code;
        const char *kb;

        if (!JSON_NODE_HOLDS_OBJECT(r) ||
            json_object_get_size(json_node_get_object(r)) != 2) {
            vo_msu_malformed(error, "a result's members");
            return NULL;
        }
        ro = json_node_get_object(r);
        kb = vmaug_json_string(ro, "kb");
        code = json_object_get_member(ro, "code");
        if (!vo_msu_kb_ok(kb) || !code || !JSON_NODE_HOLDS_VALUE(code) ||
            json_node_get_value_type(code) != G_TYPE_INT64 ||
            json_node_get_int(code) < G_MININT32 ||
            json_node_get_int(code) > G_MAXINT32) {
            vo_msu_malformed(error, "a result's members");
            return NULL;
        }
        /* A result for an update no applied bundle staged is not our
         * installer's: believe none of it. */
        if (!g_hash_table_contains(staged, kb)) {
            g_autofree char *why = g_strdup_printf(
                "%s is not an update that a bundle this result answers for "
                "staged: nothing recorded", kb);

            return vo_msu_refused(node, why);
        }
        g_hash_table_insert(codes, (char *)kb,
                            GINT_TO_POINTER((int)json_node_get_int(code)));
    }

    s = vmaug_servicing_load(image, &local);
    json_builder_begin_object(b);
    vo_msu_member(b, "status", "reported");
    vo_msu_member(b, "time", time);
    json_builder_set_member_name(b, "results");
    json_builder_begin_array(b);
    for (guint i = 0; i < json_array_get_length(res); i++) {
        JsonObject *ro = json_array_get_object_element(res, i);
        gint64 code = json_object_get_int_member(ro, "code");

        json_builder_begin_object(b);
        vo_msu_member(b, "kb", vmaug_json_string(ro, "kb"));
        json_builder_set_member_name(b, "code");
        json_builder_add_int_value(b, code);
        vo_msu_member(b, "meaning", vo_msu_code_meaning(code));
        json_builder_end_object(b);
    }
    json_builder_end_array(b);
    json_builder_set_member_name(b, "records");
    json_builder_begin_array(b);
    for (guint i = 0; s && i < json_array_get_length(rec); i++) {
        vo_msu_record_one(s, json_array_get_object_element(rec, i), codes, b,
                          &recorded);
    }
    json_builder_end_array(b);
    if (s && recorded && !vmaug_servicing_save(s, &local)) {
        vo_msu_member(b, "error", local->message);
    } else if (!s) {
        vo_msu_member(b, "error", local->message);
    }
    json_builder_end_object(b);
    return json_builder_get_root(b);
}
