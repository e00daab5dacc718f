/*
 * The dpkg status apt plans with (vo-dpkg-status.h): extracted by the
 * worker from the guest's bytes, checked and written again by the parent.
 *
 * The worker's half runs on hostile bytes inside its sandbox.  The
 * parent's half treats the worker's report as hostile too: only the
 * fields of vo_dpkg_status_fields[] pass, each through its own check, and
 * the file apt reads is our serialisation of the checked values, one
 * field per line, so that nothing the guest wrote can add a field, a
 * package or a line that we did not check.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <string.h>

#include "vo-dpkg-status.h"
#include "vo-inventory.h"
#include "vo-version.h"

#define VO_DPKG_STATUS_MAX_FILE (256u * 1024 * 1024)
#define VO_DPKG_STATUS_MAX_ARCH_FILE (4 * 1024)
#define VO_DPKG_STATUS_MAX_WORD 64

typedef enum {
    VO_DPKG_NAME,           /* a package name */
    VO_DPKG_ARCH,
    VO_DPKG_VERSION,
    VO_DPKG_STATUS,         /* want, error flag, state */
    VO_DPKG_MULTI_ARCH,
    VO_DPKG_YES_NO,
    VO_DPKG_RELATIONS,      /* a, b (>= 1) | c:any, ... */
    VO_DPKG_SOURCE,         /* name or "name (version)" */
    VO_DPKG_WORD,           /* Priority, Section */
    VO_DPKG_NUMBER,         /* Installed-Size */
} VoDpkgKind;

/* The fields apt decides with, in the order we write them.  Recommends
 * tells apt which recommendations of a new version are new (those it
 * installs, or keeps the package back for, as in the guest).
 * Installed-Size, Recommends and Suggests are in apt's hash of a version:
 * without them the installed version would not be the repository's
 * version of the same number. */
static const struct {
    const char *name;
    VoDpkgKind kind;
    gboolean required;
} vo_dpkg_status_fields[] = {
    { "Package", VO_DPKG_NAME, TRUE },
    { "Status", VO_DPKG_STATUS, TRUE },
    { "Priority", VO_DPKG_WORD, FALSE },
    { "Section", VO_DPKG_WORD, FALSE },
    { "Installed-Size", VO_DPKG_NUMBER, FALSE },
    { "Architecture", VO_DPKG_ARCH, TRUE },
    { "Multi-Arch", VO_DPKG_MULTI_ARCH, FALSE },
    { "Essential", VO_DPKG_YES_NO, FALSE },
    { "Protected", VO_DPKG_YES_NO, FALSE },
    { "Source", VO_DPKG_SOURCE, FALSE },
    { "Version", VO_DPKG_VERSION, FALSE },
    { "Replaces", VO_DPKG_RELATIONS, FALSE },
    { "Provides", VO_DPKG_RELATIONS, FALSE },
    { "Pre-Depends", VO_DPKG_RELATIONS, FALSE },
    { "Depends", VO_DPKG_RELATIONS, FALSE },
    { "Recommends", VO_DPKG_RELATIONS, FALSE },
    { "Suggests", VO_DPKG_RELATIONS, FALSE },
    { "Breaks", VO_DPKG_RELATIONS, FALSE },
    { "Conflicts", VO_DPKG_RELATIONS, FALSE },
};

/* dpkg's words for the three parts of Status (lib/dpkg/parsehelp.c). */
static const char *const vo_dpkg_wants[] = {
    "unknown", "install", "hold", "deinstall", "purge", NULL,
};
static const char *const vo_dpkg_eflags[] = { "ok", "reinstreq", NULL };
static const char *const vo_dpkg_states[] = {
    "not-installed", "config-files", "half-installed", "unpacked",
    "half-configured", "triggers-awaited", "triggers-pending", "installed",
    NULL,
};
static const char *const vo_dpkg_multi_arch[] = {
    "no", "same", "foreign", "allowed", NULL,
};
static const char *const vo_dpkg_yes_no[] = { "yes", "no", NULL };

/* ---- Worker ---- */

static int vo_dpkg_status_field_index(const char *name, gsize len)
{
    for (guint i = 0; i < G_N_ELEMENTS(vo_dpkg_status_fields); i++) {
        if (strlen(vo_dpkg_status_fields[i].name) == len &&
            g_ascii_strncasecmp(name, vo_dpkg_status_fields[i].name,
                                len) == 0) {
            return i;
        }
    }
    return -1;
}

/* One paragraph's kept fields as a JSON object; NULL when it has no
 * Package or Status (dpkg would not have written it). */
static gboolean vo_dpkg_status_add(JsonBuilder *b, GString **values,
                                   guint *count, GError **error)
{
    if (!values[0] || !values[1]) {
        return TRUE;
    }
    if (++*count > VO_DPKG_STATUS_MAX_PACKAGES) {
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "the guest's dpkg status lists more than %u packages",
                    VO_DPKG_STATUS_MAX_PACKAGES);
        return FALSE;
    }
    json_builder_begin_object(b);
    for (guint i = 0; i < G_N_ELEMENTS(vo_dpkg_status_fields); i++) {
        if (!values[i]) {
            continue;
        }
        g_strstrip(values[i]->str);
        /* The report is JSON: UTF-8 only; the parent checks the rest. */
        if (!g_utf8_validate(values[i]->str, -1, NULL)) {
            g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT,
                        "the guest's dpkg status has a field that is not "
                        "UTF-8");
            return FALSE;
        }
        json_builder_set_member_name(b, vo_dpkg_status_fields[i].name);
        json_builder_add_string_value(b, values[i]->str);
    }
    json_builder_end_object(b);
    return TRUE;
}

static void vo_dpkg_status_clear(GString **values)
{
    for (guint i = 0; i < G_N_ELEMENTS(vo_dpkg_status_fields); i++) {
        if (values[i]) {
            g_string_free(values[i], TRUE);
            values[i] = NULL;
        }
    }
}

/* Paragraphs of deb822 text; continuation lines of a kept field are
 * folded into it (relationship fields may be folded). */
static gboolean vo_dpkg_status_parse(JsonBuilder *b, const char *text,
                                     gsize len, GError **error)
{
    GString *values[G_N_ELEMENTS(vo_dpkg_status_fields)] = { NULL };
    const char *p = text, *end = text + len;
    guint count = 0;
    int current = -1;
    gboolean ok = TRUE;

    while (ok && p <= end) {
        const char *nl = p < end ? memchr(p, '\n', end - p) : NULL;
        const char *eol = nl ? nl : end;
        const char *colon;

        if (eol == p) {
            ok = vo_dpkg_status_add(b, values, &count, error);
            vo_dpkg_status_clear(values);
            current = -1;
        } else if (*p == ' ' || *p == '\t') {
            if (current >= 0) {
                g_string_append_c(values[current], ' ');
                g_string_append_len(values[current], p, eol - p);
            }
        } else if ((colon = memchr(p, ':', eol - p))) {
            current = vo_dpkg_status_field_index(p, colon - p);
            if (current >= 0) {
                if (values[current]) {
                    g_string_free(values[current], TRUE);
                }
                values[current] = g_string_new_len(colon + 1,
                                                   eol - colon - 1);
            }
        } else {
            current = -1;
        }
        if (current >= 0 &&
            values[current]->len > VO_DPKG_STATUS_MAX_FIELD) {
            g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                        "the guest's dpkg status has a field longer than "
                        "%u bytes", VO_DPKG_STATUS_MAX_FIELD);
            ok = FALSE;
        }
        if (!nl) {
            break;
        }
        p = nl + 1;
    }
    if (ok) {
        ok = vo_dpkg_status_add(b, values, &count, error);
    }
    vo_dpkg_status_clear(values);
    return ok;
}

/* The native architecture is dpkg's own package's. */
static const char *vo_dpkg_status_native(JsonArray *packages)
{
    for (guint i = 0; i < json_array_get_length(packages); i++) {
        JsonObject *o = json_array_get_object_element(packages, i);
        const char *name = json_object_get_string_member_with_default(
            o, "Package", "");
        const char *status = json_object_get_string_member_with_default(
            o, "Status", "");

        if (g_str_equal(name, "dpkg") &&
            g_str_has_suffix(status, " installed")) {
            return json_object_get_string_member_with_default(
                o, "Architecture", NULL);
        }
    }
    return NULL;
}

JsonNode *vo_dpkg_status_extract_bytes(GHashTable *os, GBytes *status,
                                       GBytes *arch, GError **error)
{
    static const char *const os_keys[] = {
        "id", "version_id", "version_codename",
    };
    g_autoptr(JsonBuilder) pb = json_builder_new();
    g_autoptr(JsonBuilder) b = json_builder_new();
    g_autoptr(JsonNode) packages = NULL;
    const char *native;

    json_builder_begin_array(pb);
    if (!vo_dpkg_status_parse(pb, g_bytes_get_data(status, NULL),
                              g_bytes_get_size(status), error)) {
        return NULL;
    }
    json_builder_end_array(pb);
    packages = json_builder_get_root(pb);
    native = vo_dpkg_status_native(json_node_get_array(packages));
    if (!native) {
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "dpkg is not installed: the architecture is unknown");
        return NULL;
    }

    json_builder_begin_object(b);
    json_builder_set_member_name(b, "architectures");
    json_builder_begin_array(b);
    json_builder_add_string_value(b, native);
    /* Foreign architectures: one name a line, as dpkg writes them. */
    if (arch && g_bytes_get_size(arch) <= VO_DPKG_STATUS_MAX_ARCH_FILE) {
        g_autofree char *text = g_strndup(g_bytes_get_data(arch, NULL),
                                          g_bytes_get_size(arch));
        g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
        guint n = 1;

        for (guint i = 0; lines[i] && n < VO_DPKG_STATUS_MAX_ARCHS; i++) {
            g_strstrip(lines[i]);
            if (*lines[i] && !g_str_equal(lines[i], native) &&
                g_utf8_validate(lines[i], -1, NULL)) {
                json_builder_add_string_value(b, lines[i]);
                n++;
            }
        }
    }
    json_builder_end_array(b);
    json_builder_set_member_name(b, "os");
    json_builder_begin_object(b);
    for (guint i = 0; i < G_N_ELEMENTS(os_keys); i++) {
        const char *v = g_hash_table_lookup(os, os_keys[i]);

        if (v && strlen(v) <= VO_DPKG_STATUS_MAX_WORD) {
            json_builder_set_member_name(b, os_keys[i]);
            json_builder_add_string_value(b, v);
        }
    }
    json_builder_end_object(b);
    json_builder_set_member_name(b, "packages");
    json_builder_add_value(b, g_steal_pointer(&packages));
    json_builder_end_object(b);
    return json_builder_get_root(b);
}

JsonNode *vo_dpkg_status_extract(VoGuest *guest, GError **error)
{
    g_autoptr(VoInventory) inv = vo_inventory_read(guest, error);
    g_autoptr(GBytes) status = NULL;
    g_autoptr(GBytes) arch = NULL;
    g_autoptr(GError) local = NULL;
    JsonNode *node;

    if (!inv) {
        return NULL;
    }
    if (!g_str_equal(inv->family, "linux")) {
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "%s is not a Linux guest: apt cannot plan for it",
                    guest->image);
        return NULL;
    }
    status = vo_guest_read_text_max(guest, "/var/lib/dpkg/status",
                                    VO_DPKG_STATUS_MAX_FILE, &local);
    if (!status) {
        g_set_error(error, VO_ERROR, local->code,
                    "%s has no dpkg status to plan with: %s", guest->image,
                    local->message);
        return NULL;
    }
    arch = vo_guest_read_file_max(guest, "/var/lib/dpkg/arch",
                                  VO_DPKG_STATUS_MAX_ARCH_FILE, NULL);
    node = vo_dpkg_status_extract_bytes(inv->os, status, arch, &local);
    if (!node) {
        g_set_error(error, VO_ERROR, local->code, "%s: %s", guest->image,
                    local->message);
    }
    return node;
}

/* ---- Parent ---- */

void vo_dpkg_status_free(VoDpkgStatus *st)
{
    if (!st) {
        return;
    }
    g_free(st->architecture);
    if (st->architectures) {
        g_ptr_array_unref(st->architectures);
    }
    g_free(st->os_id);
    g_free(st->os_version_id);
    g_free(st->release);
    g_free(st->text);
    g_free(st->sha256);
    g_free(st);
}

static gboolean vo_dpkg_status_bad(GError **error, guint index,
                                   const char *field, const char *why)
{
    g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT,
                "the worker's dpkg status is malformed: package %u: %s: %s",
                index, field, why);
    return FALSE;
}

static gboolean vo_dpkg_status_word_ok(const char *s, const char *extra)
{
    if (!*s || strlen(s) > VO_DPKG_STATUS_MAX_WORD) {
        return FALSE;
    }
    for (; *s; s++) {
        if (!g_ascii_islower(*s) && !g_ascii_isdigit(*s) &&
            !strchr(extra, *s)) {
            return FALSE;
        }
    }
    return TRUE;
}

/* "name[:arch] [(op version)]": one term of a relationship field. */
static gboolean vo_dpkg_status_relation_ok(char *term, GError **error)
{
    char *paren = strchr(term, '(');
    char *colon;

    if (paren) {
        static const char *const ops[] = {
            "<<", "<=", ">=", ">>", "=", "<", ">", NULL,
        };
        char *close = strchr(paren, ')');
        char *spec;
        gboolean op_ok = FALSE;

        if (!close || close[1] != '\0') {
            g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                        "malformed version relation");
            return FALSE;
        }
        *close = '\0';
        *paren = '\0';
        spec = g_strstrip(paren + 1);
        for (guint i = 0; ops[i] && !op_ok; i++) {
            if (g_str_has_prefix(spec, ops[i])) {
                spec = g_strstrip(spec + strlen(ops[i]));
                op_ok = TRUE;
            }
        }
        if (!op_ok) {
            g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                        "unknown relation operator");
            return FALSE;
        }
        if (!vo_version_check(spec, error)) {
            return FALSE;
        }
        g_strstrip(term);
    }
    colon = strchr(term, ':');
    if (colon) {
        *colon = '\0';
        /* "any" is a qualifier, not an architecture name of dpkg's. */
        if (!g_str_equal(colon + 1, "any") &&
            !vo_version_check_arch(colon + 1, error)) {
            return FALSE;
        }
    }
    return vo_version_check_package(term, error);
}

static gboolean vo_dpkg_status_relations_ok(const char *value,
                                            GError **error)
{
    g_auto(GStrv) terms = g_strsplit(value, ",", -1);

    for (guint i = 0; terms[i]; i++) {
        g_auto(GStrv) alts = g_strsplit(terms[i], "|", -1);

        for (guint j = 0; alts[j]; j++) {
            if (!vo_dpkg_status_relation_ok(g_strstrip(alts[j]), error)) {
                return FALSE;
            }
        }
    }
    return TRUE;
}

static gboolean vo_dpkg_status_value_ok(VoDpkgKind kind, const char *value,
                                        GError **error)
{
    switch (kind) {
    case VO_DPKG_NAME:
        return vo_version_check_package(value, error);
    case VO_DPKG_ARCH:
        return vo_version_check_arch(value, error);
    case VO_DPKG_VERSION:
        return vo_version_check(value, error);
    case VO_DPKG_STATUS: {
        g_auto(GStrv) w = g_strsplit(value, " ", -1);

        if (g_strv_length(w) == 3 && g_strv_contains(vo_dpkg_wants, w[0]) &&
            g_strv_contains(vo_dpkg_eflags, w[1]) &&
            g_strv_contains(vo_dpkg_states, w[2])) {
            return TRUE;
        }
        break;
    }
    case VO_DPKG_MULTI_ARCH:
        if (g_strv_contains(vo_dpkg_multi_arch, value)) {
            return TRUE;
        }
        break;
    case VO_DPKG_YES_NO:
        if (g_strv_contains(vo_dpkg_yes_no, value)) {
            return TRUE;
        }
        break;
    case VO_DPKG_RELATIONS:
        return vo_dpkg_status_relations_ok(value, error);
    case VO_DPKG_SOURCE: {
        g_autofree char *copy = g_strdup(value);

        /* Its version, if any, is written like a relation's "(= v)". */
        if (strchr(copy, '(')) {
            char *paren = strchr(copy, '(');
            g_autofree char *rel = g_strdup_printf("%.*s(= %s",
                                                   (int)(paren - copy), copy,
                                                   paren + 1);

            return vo_dpkg_status_relation_ok(rel, error);
        }
        return vo_version_check_package(copy, error);
    }
    case VO_DPKG_WORD:
        if (vo_dpkg_status_word_ok(value, "/+.-")) {
            return TRUE;
        }
        break;
    case VO_DPKG_NUMBER:
        if (*value && strlen(value) <= 20 &&
            strspn(value, "0123456789") == strlen(value)) {
            return TRUE;
        }
        break;
    }
    g_set_error(error, VO_ERROR, VO_ERROR_INVALID, "unexpected value");
    return FALSE;
}

/*
 * @value with each run of blanks made one space, as apt's status file
 * holds it; NULL for any other control character (a form feed or carriage
 * return in a relationship field would otherwise pass the term checks,
 * which strip all ASCII space, and reach the line apt reads).
 */
static char *vo_dpkg_status_blanks(const char *value)
{
    GString *out = g_string_sized_new(strlen(value));

    for (const char *c = value; *c; c++) {
        if (*c == ' ' || *c == '\t') {
            if (out->len && out->str[out->len - 1] != ' ') {
                g_string_append_c(out, ' ');
            }
        } else if ((guchar)*c < 0x20 || *c == 0x7f) {
            g_string_free(out, TRUE);
            return NULL;
        } else {
            g_string_append_c(out, *c);
        }
    }
    if (out->len && out->str[out->len - 1] == ' ') {
        g_string_truncate(out, out->len - 1);
    }
    return g_string_free(out, FALSE);
}

/* One package: known string fields only, each checked, written in our
 * order to @out. */
static gboolean vo_dpkg_status_package(JsonNode *node, guint index,
                                       GHashTable *seen, GString *out,
                                       GError **error)
{
    g_autoptr(GList) members = NULL;
    g_autofree char *key = NULL;
    g_autofree char *state = NULL;
    JsonObject *obj;

    if (!JSON_NODE_HOLDS_OBJECT(node)) {
        return vo_dpkg_status_bad(error, index, "package", "not an object");
    }
    obj = json_node_get_object(node);
    members = json_object_get_members(obj);
    for (GList *l = members; l; l = l->next) {
        JsonNode *v = json_object_get_member(obj, l->data);
        int i = vo_dpkg_status_field_index(l->data, strlen(l->data));

        /* Exact names: the worker writes ours. */
        if (i < 0 || !g_str_equal(l->data, vo_dpkg_status_fields[i].name)) {
            return vo_dpkg_status_bad(error, index, "field", "unknown");
        }
        if (!JSON_NODE_HOLDS_VALUE(v) ||
            json_node_get_value_type(v) != G_TYPE_STRING ||
            strlen(json_node_get_string(v)) > VO_DPKG_STATUS_MAX_FIELD) {
            return vo_dpkg_status_bad(error, index, l->data,
                                      "not a bounded string");
        }
    }
    for (guint i = 0; i < G_N_ELEMENTS(vo_dpkg_status_fields); i++) {
        const char *name = vo_dpkg_status_fields[i].name;
        const char *raw = json_object_get_string_member_with_default(
            obj, name, NULL);
        g_autofree char *value = NULL;
        g_autoptr(GError) local = NULL;

        if (!raw) {
            if (vo_dpkg_status_fields[i].required) {
                return vo_dpkg_status_bad(error, index, name, "missing");
            }
            continue;
        }
        /* Only relationship fields are folded over lines; any other
         * field is kept exactly, since the package's key and state are
         * read from it below. */
        value = vo_dpkg_status_blanks(raw);
        if (!value || (vo_dpkg_status_fields[i].kind != VO_DPKG_RELATIONS &&
                       !g_str_equal(value, raw))) {
            return vo_dpkg_status_bad(error, index, name,
                                      "a control character or stray blank");
        }
        if (!vo_dpkg_status_value_ok(vo_dpkg_status_fields[i].kind, value,
                                     &local)) {
            return vo_dpkg_status_bad(error, index, name, local->message);
        }
        g_string_append_printf(out, "%s: %s\n", name, value);
    }
    state = g_strdup(strrchr(json_object_get_string_member(obj, "Status"),
                             ' ') + 1);
    if (!g_str_equal(state, "not-installed") &&
        !json_object_has_member(obj, "Version")) {
        return vo_dpkg_status_bad(error, index, "Version", "missing");
    }
    key = g_strdup_printf("%s:%s",
                          json_object_get_string_member(obj, "Package"),
                          json_object_get_string_member(obj, "Architecture"));
    if (!g_hash_table_add(seen, g_steal_pointer(&key))) {
        return vo_dpkg_status_bad(error, index, "Package", "listed twice");
    }
    g_string_append_c(out, '\n');
    return TRUE;
}

/* An os-release name, if there is one: a plain word. */
static gboolean vo_dpkg_status_os(JsonObject *os, const char *key,
                                  char **out, GError **error)
{
    JsonNode *v = json_object_get_member(os, key);

    if (!v) {
        return TRUE;
    }
    if (!JSON_NODE_HOLDS_VALUE(v) ||
        json_node_get_value_type(v) != G_TYPE_STRING ||
        !vo_dpkg_status_word_ok(json_node_get_string(v), ".-_")) {
        g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT,
                    "the worker's dpkg status is malformed: os %s", key);
        return FALSE;
    }
    *out = g_strdup(json_node_get_string(v));
    return TRUE;
}

VoDpkgStatus *vo_dpkg_status_from_report(JsonNode *node, GError **error)
{
    g_autoptr(VoDpkgStatus) st = g_new0(VoDpkgStatus, 1);
    g_autoptr(GHashTable) seen = g_hash_table_new_full(g_str_hash,
                                                       g_str_equal, g_free,
                                                       NULL);
    g_autoptr(GString) text = g_string_new(NULL);
    g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);
    g_autoptr(GError) local = NULL;
    JsonObject *obj;
    JsonNode *archs, *os, *packages;
    JsonArray *pa;

    if (!JSON_NODE_HOLDS_OBJECT(node)) {
        g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT,
                    "the worker's dpkg status is not an object");
        return NULL;
    }
    obj = json_node_get_object(node);
    archs = json_object_get_member(obj, "architectures");
    os = json_object_get_member(obj, "os");
    packages = json_object_get_member(obj, "packages");
    if (json_object_get_size(obj) != 3 || !archs ||
        !JSON_NODE_HOLDS_ARRAY(archs) || !os || !JSON_NODE_HOLDS_OBJECT(os) ||
        !packages || !JSON_NODE_HOLDS_ARRAY(packages) ||
        json_array_get_length(json_node_get_array(archs)) == 0 ||
        json_array_get_length(json_node_get_array(archs)) >
            VO_DPKG_STATUS_MAX_ARCHS ||
        json_array_get_length(json_node_get_array(packages)) >
            VO_DPKG_STATUS_MAX_PACKAGES) {
        g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT,
                    "the worker's dpkg status is malformed");
        return NULL;
    }
    st->architectures = g_ptr_array_new_with_free_func(g_free);
    for (guint i = 0; i < json_array_get_length(json_node_get_array(archs));
         i++) {
        JsonNode *a = json_array_get_element(json_node_get_array(archs), i);

        if (!JSON_NODE_HOLDS_VALUE(a) ||
            json_node_get_value_type(a) != G_TYPE_STRING ||
            !vo_version_check_arch(json_node_get_string(a), &local) ||
            g_str_equal(json_node_get_string(a), "all") ||
            g_str_equal(json_node_get_string(a), "any")) {
            g_set_error(error, VO_ERROR, VO_ERROR_CORRUPT,
                        "the worker's dpkg status is malformed: "
                        "architectures");
            return NULL;
        }
        g_ptr_array_add(st->architectures,
                        g_strdup(json_node_get_string(a)));
        g_checksum_update(sum, (const guchar *)json_node_get_string(a), -1);
        g_checksum_update(sum, (const guchar *)"\n", 1);
    }
    st->architecture = g_strdup(st->architectures->pdata[0]);
    if (!vo_dpkg_status_os(json_node_get_object(os), "id", &st->os_id,
                           error) ||
        !vo_dpkg_status_os(json_node_get_object(os), "version_id",
                           &st->os_version_id, error) ||
        !vo_dpkg_status_os(json_node_get_object(os), "version_codename",
                           &st->release, error)) {
        return NULL;
    }
    pa = json_node_get_array(packages);
    for (guint i = 0; i < json_array_get_length(pa); i++) {
        if (!vo_dpkg_status_package(json_array_get_element(pa, i), i, seen,
                                    text, error)) {
            return NULL;
        }
    }
    st->n_packages = json_array_get_length(pa);
    g_checksum_update(sum, (const guchar *)"\n", 1);
    g_checksum_update(sum, (const guchar *)text->str, text->len);
    st->sha256 = g_strdup(g_checksum_get_string(sum));
    st->text = g_string_free(g_steal_pointer(&text), FALSE);
    return g_steal_pointer(&st);
}
