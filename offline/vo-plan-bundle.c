/*
 * A signed update bundle from a plan (vo-plan-bundle.h).
 *
 * The plan is the operator's own file, written by 'plan'; it is still
 * read member by member with its types checked, its names and versions
 * checked with libdpkg (they become rules and manifest entries), and
 * each .deb must still have the SHA-256 the plan recorded when apt had
 * verified it.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <string.h>

#include "vo-bundle.h"
#include "vo-configure.h"
#include "vo-plan-bundle.h"
#include "vo-plan.h"
#include "vo-version.h"

static gboolean vo_plan_bundle_bad(GError **error, const char *what)
{
    g_set_error(error, VO_ERROR, VO_ERROR_INVALID, "bad plan: %s", what);
    return FALSE;
}

/* A string member; NULL for JSON null when @nullable. */
static gboolean vo_plan_bundle_string(JsonObject *obj, const char *name,
                                      gboolean nullable, const char **out,
                                      GError **error)
{
    JsonNode *node = json_object_get_member(obj, name);
    g_autofree char *what = NULL;

    *out = NULL;
    if (node && nullable && JSON_NODE_HOLDS_NULL(node)) {
        return TRUE;
    }
    if (!node || !JSON_NODE_HOLDS_VALUE(node) ||
        json_node_get_value_type(node) != G_TYPE_STRING) {
        what = g_strdup_printf("\"%s\" must be a string%s", name,
                               nullable ? " or null" : "");
        return vo_plan_bundle_bad(error, what);
    }
    *out = json_node_get_string(node);
    return TRUE;
}

JsonObject *vo_plan_bundle_group(JsonNode *root, int index, GError **error)
{
    JsonNode *format, *groups, *g;
    guint n;

    if (!JSON_NODE_HOLDS_OBJECT(root)) {
        vo_plan_bundle_bad(error, "the root must be an object");
        return NULL;
    }
    format = json_object_get_member(json_node_get_object(root), "format");
    groups = json_object_get_member(json_node_get_object(root), "groups");
    if (!format || !JSON_NODE_HOLDS_VALUE(format) ||
        json_node_get_value_type(format) != G_TYPE_INT64 ||
        json_node_get_int(format) != VO_PLAN_FORMAT) {
        vo_plan_bundle_bad(error, "unknown \"format\"");
        return NULL;
    }
    if (!groups || !JSON_NODE_HOLDS_ARRAY(groups)) {
        vo_plan_bundle_bad(error, "\"groups\" must be an array");
        return NULL;
    }
    n = json_array_get_length(json_node_get_array(groups));
    if (index < 0 && n != 1) {
        g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                    "the plan has %u groups of images: choose one with "
                    "--group N (0 to %u)", n, n ? n - 1 : 0);
        return NULL;
    }
    if (index < 0) {
        index = 0;
    }
    if ((guint)index >= n) {
        g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                    "the plan has no group %d", index);
        return NULL;
    }
    g = json_array_get_element(json_node_get_array(groups), index);
    if (!JSON_NODE_HOLDS_OBJECT(g)) {
        vo_plan_bundle_bad(error, "a group must be an object");
        return NULL;
    }
    return json_node_get_object(g);
}

GBytes *vo_plan_bundle_file(const char *dir, const char *name,
                            const char *sha256, GError **error)
{
    g_autofree char *path = NULL;
    g_autofree char *have = NULL;
    g_autoptr(GBytes) data = NULL;
    char *contents;
    gsize len;

    if (!*name || name[0] == '.' || strchr(name, '/')) {
        vo_plan_bundle_bad(error, "bad \"deb\" file name");
        return NULL;
    }
    path = g_build_filename(dir, name, NULL);
    if (!g_file_get_contents(path, &contents, &len, error)) {
        return NULL;
    }
    data = g_bytes_new_take(contents, len);
    have = vo_sha256(data);
    if (!g_str_equal(have, sha256)) {
        g_set_error(error, VO_ERROR, VO_ERROR_HASH_MISMATCH,
                    "%s is not the file the plan recorded (SHA-256 %s, the "
                    "plan says %s)", path, have, sha256);
        return NULL;
    }
    return g_steal_pointer(&data);
}

/* The fixed text of each file under VO_CONFIGURE_AUTO: a second bundle
 * naming the same package before the next boot finds it identical. */
static const char vo_plan_bundle_auto_text[] =
    "vmaugment-offline: apt-mark auto at the next boot\n";

/* One planned package: its rule, its @op ("unpack" or "stage") and its
 * payload; a new one's NAME:ARCH added to @auto_names. */
static gboolean vo_plan_bundle_package(JsonNode *node, const char *op,
                                       const char *dir, JsonBuilder *rules,
                                       JsonBuilder *packages,
                                       GHashTable *payloads,
                                       GPtrArray *auto_names, GError **error)
{
    const char *name, *arch, *old, *new, *deb, *sha;
    g_autoptr(GError) local = NULL;
    g_autofree char *payload = NULL;
    g_autofree char *pinned = NULL;
    JsonObject *obj;
    GBytes *data;

    if (!JSON_NODE_HOLDS_OBJECT(node)) {
        return vo_plan_bundle_bad(error, "a package must be an object");
    }
    obj = json_node_get_object(node);
    if (!vo_plan_bundle_string(obj, "name", FALSE, &name, error) ||
        !vo_plan_bundle_string(obj, "architecture", FALSE, &arch, error) ||
        !vo_plan_bundle_string(obj, "old_version", TRUE, &old, error) ||
        !vo_plan_bundle_string(obj, "new_version", FALSE, &new, error) ||
        !vo_plan_bundle_string(obj, "deb", FALSE, &deb, error) ||
        !vo_plan_bundle_string(obj, "sha256", FALSE, &sha, error)) {
        return FALSE;
    }
    if (!vo_version_check_package(name, &local) ||
        !vo_version_check_arch(arch, &local) ||
        !vo_version_check(new, &local) ||
        (old && !vo_version_check(old, &local))) {
        return vo_plan_bundle_bad(error, local->message);
    }
    data = vo_plan_bundle_file(dir, deb, sha, error);
    if (!data) {
        return FALSE;
    }
    /* One version of each package: its name and architecture suffice,
     * in the alphabet payload names allow. */
    payload = g_strdup_printf("%s_%s.deb", name, arch);
    g_hash_table_insert(payloads, g_strdup(payload), data);

    /* The version it replaces, exactly: the bundle applies to nothing
     * else.  A new package must still be absent. */
    pinned = g_strdup_printf("%s:%s", name, arch);
    if (!old) {
        /* apt installs it only as a dependency of an upgrade: apt-get
         * would mark it automatically installed. */
        g_ptr_array_add(auto_names, g_strdup(pinned));
    }
    json_builder_begin_object(rules);
    json_builder_set_member_name(rules, "package");
    json_builder_add_string_value(rules, pinned);
    if (old) {
        g_autofree char *spec = g_strdup_printf("= %s", old);

        json_builder_set_member_name(rules, "version");
        json_builder_add_string_value(rules, spec);
    } else {
        json_builder_set_member_name(rules, "installed");
        json_builder_add_boolean_value(rules, FALSE);
    }
    json_builder_end_object(rules);

    json_builder_begin_object(packages);
    json_builder_set_member_name(packages, "op");
    json_builder_add_string_value(packages, op);
    json_builder_set_member_name(packages, "payload");
    json_builder_add_string_value(packages, payload);
    json_builder_set_member_name(packages, "package");
    json_builder_add_string_value(packages, name);
    json_builder_set_member_name(packages, "architecture");
    json_builder_add_string_value(packages, arch);
    json_builder_set_member_name(packages, "version");
    json_builder_add_string_value(packages, new);
    json_builder_set_member_name(packages, "old_version");
    if (old) {
        json_builder_add_string_value(packages, old);
    } else {
        json_builder_add_null_value(packages);
    }
    json_builder_end_object(packages);
    return TRUE;
}

/* The files marking @auto_names for apt-mark auto, after the
 * directories leading to them (vo_configure_add keeps those). */
static void vo_plan_bundle_auto(JsonBuilder *m, GPtrArray *auto_names,
                                GHashTable *payloads)
{
    static const char *const dirs[] = {
        "/var", "/var/lib", "/var/lib/vmaugment", VO_CONFIGURE_DIR,
        VO_CONFIGURE_AUTO,
    };

    if (auto_names->len == 0) {
        return;
    }
    for (guint i = 0; i < G_N_ELEMENTS(dirs); i++) {
        json_builder_begin_object(m);
        json_builder_set_member_name(m, "op");
        json_builder_add_string_value(m, "mkdir");
        json_builder_set_member_name(m, "path");
        json_builder_add_string_value(m, dirs[i]);
        json_builder_set_member_name(m, "mode");
        json_builder_add_string_value(m, "0755");
        json_builder_end_object(m);
    }
    for (guint i = 0; i < auto_names->len; i++) {
        g_autofree char *path = g_strdup_printf(
            "%s/%s", VO_CONFIGURE_AUTO, (char *)auto_names->pdata[i]);

        json_builder_begin_object(m);
        json_builder_set_member_name(m, "op");
        json_builder_add_string_value(m, "add");
        json_builder_set_member_name(m, "path");
        json_builder_add_string_value(m, path);
        json_builder_set_member_name(m, "payload");
        json_builder_add_string_value(m, "auto-installed");
        json_builder_set_member_name(m, "mode");
        json_builder_add_string_value(m, "0644");
        json_builder_end_object(m);
    }
    g_hash_table_insert(payloads, g_strdup("auto-installed"),
                        g_bytes_new_static(vo_plan_bundle_auto_text,
                                           strlen(vo_plan_bundle_auto_text)));
}

/* "apt-RELEASE-DIGEST" and the plan's time as id and version: names the
 * bundle parser accepts. */
static void vo_plan_bundle_names(JsonObject *root, JsonObject *group,
                                 char **id, char **version)
{
    const char *release = json_object_get_string_member_with_default(
        group, "release", NULL);
    const char *sha = json_object_get_string_member_with_default(
        group, "status_sha256", NULL);
    const char *created = json_object_get_string_member_with_default(
        root, "created", NULL);
    GString *v = g_string_new(NULL);

    if (!release || !vo_version_check_package(release, NULL)) {
        release = "debian";
    }
    *id = g_strdup_printf("apt-%s-%.12s", release,
                          sha && strlen(sha) >= 12 ? sha : "000000000000");
    for (const char *p = created ? created : ""; *p; p++) {
        if (g_ascii_isalnum(*p)) {
            g_string_append_c(v, *p);
        }
    }
    *version = g_string_free(v, v->len == 0);
    if (!*version) {
        *version = g_strdup("1");
    }
}

gboolean vo_plan_bundle_build(const char *plan_path, int group,
                              gboolean stage_preinst, const char *debs_dir,
                              const char *key_path,
                              const char *cert_path, const char *out_path,
                              GError **error)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(JsonBuilder) rules = json_builder_new();
    g_autoptr(JsonBuilder) packages = json_builder_new();
    g_autoptr(JsonBuilder) m = json_builder_new();
    g_autoptr(JsonNode) manifest = NULL;
    g_autoptr(GHashTable) payloads = g_hash_table_new_full(
        g_str_hash, g_str_equal, g_free, (GDestroyNotify)g_bytes_unref);
    g_autofree char *id = NULL;
    g_autofree char *version = NULL;
    g_autofree char *description = NULL;
    g_autoptr(GPtrArray) staged = g_ptr_array_new();
    g_autoptr(GPtrArray) auto_names = g_ptr_array_new_with_free_func(g_free);
    JsonObject *g;
    JsonNode *list, *images, *refused;
    JsonArray *arr;
    guint total;

    if (!json_parser_load_from_file(parser, plan_path, error)) {
        return FALSE;
    }
    g = vo_plan_bundle_group(json_parser_get_root(parser), group, error);
    if (!g) {
        return FALSE;
    }
    list = json_object_get_member(g, "packages");
    images = json_object_get_member(g, "images");
    if (!list || !JSON_NODE_HOLDS_ARRAY(list) || !images ||
        !JSON_NODE_HOLDS_ARRAY(images)) {
        return vo_plan_bundle_bad(error, "a group has \"images\" and "
                                  "\"packages\" arrays");
    }
    arr = json_node_get_array(list);
    /* The packages refused for their preinst, when the operator stages
     * them for the guest's own dpkg. */
    refused = json_object_get_member(g, "refused");
    if (stage_preinst && refused && JSON_NODE_HOLDS_ARRAY(refused)) {
        JsonArray *r = json_node_get_array(refused);

        for (guint i = 0; i < json_array_get_length(r); i++) {
            JsonNode *n = json_array_get_element(r, i);

            if (JSON_NODE_HOLDS_OBJECT(n) &&
                g_strcmp0(json_object_get_string_member_with_default(
                              json_node_get_object(n), "reason", NULL),
                          "preinst") == 0) {
                g_ptr_array_add(staged, n);
            }
        }
    }
    total = json_array_get_length(arr) + staged->len;
    if (total == 0) {
        g_set_error(error, VO_ERROR, VO_ERROR_INVALID,
                    "nothing to bundle: the group plans no package");
        return FALSE;
    }
    if (total > VO_BUNDLE_MAX_OPS) {
        return vo_plan_bundle_bad(error, "too many packages");
    }
    json_builder_begin_array(rules);
    json_builder_begin_array(packages);
    for (guint i = 0; i < json_array_get_length(arr); i++) {
        if (!vo_plan_bundle_package(json_array_get_element(arr, i), "unpack",
                                    debs_dir, rules, packages, payloads,
                                    auto_names, error)) {
            return FALSE;
        }
    }
    for (guint i = 0; i < staged->len; i++) {
        if (!vo_plan_bundle_package(staged->pdata[i], "stage", debs_dir,
                                    rules, packages, payloads, auto_names,
                                    error)) {
            return FALSE;
        }
    }
    json_builder_end_array(rules);
    json_builder_end_array(packages);

    vo_plan_bundle_names(json_node_get_object(json_parser_get_root(parser)),
                         g, &id, &version);
    description = g_strdup_printf(
        "%u package update%s planned by apt for %u image%s", total,
        total == 1 ? "" : "s",
        json_array_get_length(json_node_get_array(images)),
        json_array_get_length(json_node_get_array(images)) == 1 ? "" : "s");
    json_builder_begin_object(m);
    json_builder_set_member_name(m, "format");
    json_builder_add_int_value(m, VO_BUNDLE_FORMAT);
    json_builder_set_member_name(m, "id");
    json_builder_add_string_value(m, id);
    json_builder_set_member_name(m, "version");
    json_builder_add_string_value(m, version);
    json_builder_set_member_name(m, "description");
    json_builder_add_string_value(m, description);
    json_builder_set_member_name(m, "applies");
    json_builder_add_value(m, json_builder_get_root(rules));
    json_builder_set_member_name(m, "files");
    json_builder_begin_array(m);
    vo_plan_bundle_auto(m, auto_names, payloads);
    json_builder_end_array(m);
    json_builder_set_member_name(m, "packages");
    json_builder_add_value(m, json_builder_get_root(packages));
    json_builder_end_object(m);
    manifest = json_builder_get_root(m);
    return vo_bundle_build_manifest(manifest, payloads, key_path, cert_path,
                                    out_path, error);
}
