/*
 * A bundle's applicability rules, evaluated against the guest's inventory
 * and files (docs/offline.rst, "Rules").  Runs in the offline worker: the
 * inventory and files are the guest's.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <string.h>

#include "json-strict.h"
#include "vo-registry.h"
#include "vo-rules.h"
#include "vo-rpm.h"
#include "vo-version.h"

#define VO_MAX_RULE_DEPTH 16

typedef struct {
    VoInventory *inv;
    VoGuest *guest;
} VoRuleCtx;

static gboolean vo_rules_eval(JsonNode *node, VoRuleCtx *ctx, guint depth,
                              gboolean *result, GString *desc,
                              GError **error);

static gboolean vo_rules_invalid(GError **error, const char *what)
{
    g_set_error(error, VO_ERROR, VO_ERROR_INVALID, "bad rule: %s", what);
    return FALSE;
}

static gboolean vo_rules_os(JsonNode *node, VoRuleCtx *ctx,
                                 gboolean *result, GString *desc,
                                 GError **error)
{
    g_autoptr(GList) members = NULL;
    JsonObject *obj;

    if (!JSON_NODE_HOLDS_OBJECT(node)) {
        return vo_rules_invalid(error, "\"os\" must be an object");
    }
    obj = json_node_get_object(node);
    members = json_object_get_members(obj);
    *result = TRUE;
    for (GList *l = members; l; l = l->next) {
        const char *want = vmaug_json_string(obj, l->data);
        const char *have = g_hash_table_lookup(ctx->inv->os, l->data);

        if (!want) {
            return vo_rules_invalid(error, "\"os\" values are strings");
        }
        g_string_append_printf(desc, "%sos.%s = %s",
                               l == members ? "" : ", ",
                               (const char *)l->data, want);
        if (!have || !g_str_equal(have, want)) {
            *result = FALSE;
        }
    }
    return TRUE;
}

static gboolean vo_rules_package(JsonObject *obj, VoRuleCtx *ctx,
                                      gboolean *result, GString *desc,
                                      GError **error)
{
    const char *name = vmaug_json_string(obj, "package");
    const char *spec = vmaug_json_string(obj, "version");
    JsonNode *inst = json_object_get_member(obj, "installed");
    gboolean want_installed = TRUE;
    VoPackage *pkg;
    gboolean installed;

    if (!name) {
        return vo_rules_invalid(error, "\"package\" must be a string");
    }
    if (inst) {
        if (!JSON_NODE_HOLDS_VALUE(inst) ||
            json_node_get_value_type(inst) != G_TYPE_BOOLEAN || spec) {
            return vo_rules_invalid(error, "\"installed\" is a boolean "
                                         "and excludes \"version\"");
        }
        want_installed = json_node_get_boolean(inst);
    }
    if (json_object_has_member(obj, "version") && !spec) {
        return vo_rules_invalid(error, "\"version\" must be a string");
    }
    pkg = g_hash_table_lookup(ctx->inv->packages, name);
    installed = pkg && vo_package_installed(pkg);
    if (!spec) {
        g_string_append_printf(desc, "package %s %s", name,
                               want_installed ? "installed"
                                              : "not installed");
        *result = installed == want_installed;
        return TRUE;
    }
    {
        g_auto(GStrv) parts = g_strsplit(spec, " ", -1);

        if (g_strv_length(parts) != 2 || !*parts[0] || !*parts[1]) {
            return vo_rules_invalid(error, "\"version\" is \"OP VERSION\","
                                         " e.g. \">= 1.2-3\"");
        }
        g_string_append_printf(desc, "package %s %s %s", name, parts[0],
                               parts[1]);
        if (!installed) {
            *result = FALSE;
            return TRUE;
        }
        /* The guest's own package system judges its versions. */
        if (g_strcmp0(ctx->inv->package_format, "rpm") == 0) {
            return vo_rpm_relate(pkg->version, parts[0], parts[1], result,
                                 error);
        }
        return vo_version_relate(pkg->version, parts[0], parts[1], result,
                                 error);
    }
}

static gboolean vo_rules_file(JsonObject *obj, VoRuleCtx *ctx,
                                   gboolean *result, GString *desc,
                                   GError **error)
{
    const char *path = vmaug_json_string(obj, "file");
    const char *sha = vmaug_json_string(obj, "sha256");
    JsonNode *exists = json_object_get_member(obj, "exists");
    g_autoptr(GError) local = NULL;
    g_autoptr(GBytes) data = NULL;
    g_autofree char *have = NULL;
    gboolean want_exists = TRUE;

    if (!path || !vo_guest_check_path(path, NULL)) {
        return vo_rules_invalid(error, "\"file\" must be an absolute "
                                     "path");
    }
    if (exists) {
        if (!JSON_NODE_HOLDS_VALUE(exists) ||
            json_node_get_value_type(exists) != G_TYPE_BOOLEAN || sha) {
            return vo_rules_invalid(error, "\"exists\" is a boolean and "
                                         "excludes \"sha256\"");
        }
        want_exists = json_node_get_boolean(exists);
    }
    data = vo_guest_read_file(ctx->guest, path, &local);
    if (!data && !g_error_matches(local, VO_ERROR, VO_ERROR_NOT_FOUND)) {
        g_propagate_error(error, g_steal_pointer(&local));
        return FALSE;
    }
    if (sha) {
        g_string_append_printf(desc, "file %s has sha256 %s", path, sha);
        have = data ? vo_sha256(data) : NULL;
        *result = have && g_str_equal(have, sha);
    } else {
        g_string_append_printf(desc, "file %s %s", path,
                               want_exists ? "exists" : "does not exist");
        *result = (data != NULL) == want_exists;
    }
    return TRUE;
}

static gboolean vo_rules_registry(JsonNode *node, VoRuleCtx *ctx,
                                       gboolean *result, GString *desc,
                                       GError **error)
{
    g_autoptr(GError) local = NULL;
    g_autofree char *have = NULL;
    JsonObject *obj;
    const char *hive, *key, *name, *equals;

    if (!JSON_NODE_HOLDS_OBJECT(node)) {
        return vo_rules_invalid(error, "\"registry\" is an object");
    }
    obj = json_node_get_object(node);
    hive = vmaug_json_string(obj, "hive");
    key = vmaug_json_string(obj, "key");
    name = vmaug_json_string(obj, "name");
    equals = vmaug_json_string(obj, "equals");
    if (!hive || !key || !name) {
        return vo_rules_invalid(error, "\"registry\" needs \"hive\", "
                                     "\"key\" and \"name\"");
    }
    if (!g_str_equal(ctx->guest->family, "windows")) {
        g_string_append_printf(desc, "registry %s\\%s\\%s", hive, key, name);
        *result = FALSE;
        return TRUE;
    }
    have = vo_registry_get(ctx->guest, hive, key, name, &local);
    if (!have && !g_error_matches(local, VO_ERROR, VO_ERROR_NOT_FOUND)) {
        g_propagate_error(error, g_steal_pointer(&local));
        return FALSE;
    }
    if (equals) {
        g_string_append_printf(desc, "registry %s\\%s\\%s = %s", hive, key,
                               name, equals);
        *result = have && g_str_equal(have, equals);
    } else {
        g_string_append_printf(desc, "registry %s\\%s\\%s exists", hive,
                               key, name);
        *result = have != NULL;
    }
    return TRUE;
}

static gboolean vo_rules_list(JsonNode *node, VoRuleCtx *ctx,
                                   guint depth, gboolean any,
                                   gboolean *result, GString *desc,
                                   GError **error)
{
    JsonArray *arr;

    if (!JSON_NODE_HOLDS_ARRAY(node)) {
        return vo_rules_invalid(error, "\"any\"/\"all\" take an array");
    }
    arr = json_node_get_array(node);
    *result = !any;
    g_string_append(desc, any ? "any(" : "all(");
    for (guint i = 0; i < json_array_get_length(arr); i++) {
        gboolean r;

        if (i) {
            g_string_append(desc, "; ");
        }
        if (!vo_rules_eval(json_array_get_element(arr, i), ctx, depth + 1, &r,
                           desc, error)) {
            return FALSE;
        }
        *result = any ? (*result || r) : (*result && r);
    }
    g_string_append(desc, ")");
    return TRUE;
}

static gboolean vo_rules_eval(JsonNode *node, VoRuleCtx *ctx, guint depth,
                              gboolean *result, GString *desc,
                              GError **error)
{
    JsonObject *obj;
    JsonNode *member;

    if (depth > VO_MAX_RULE_DEPTH) {
        return vo_rules_invalid(error, "nested too deeply");
    }
    if (!JSON_NODE_HOLDS_OBJECT(node)) {
        return vo_rules_invalid(error, "a rule is an object");
    }
    obj = json_node_get_object(node);
    if ((member = json_object_get_member(obj, "os"))) {
        if (json_object_get_size(obj) != 1) {
            return vo_rules_invalid(error, "\"os\" stands alone");
        }
        return vo_rules_os(member, ctx, result, desc, error);
    }
    if (json_object_has_member(obj, "package")) {
        static const char *const allowed[] = {
            "package", "version", "installed", NULL,
        };
        g_autoptr(GList) members = json_object_get_members(obj);

        for (GList *l = members; l; l = l->next) {
            if (!g_strv_contains(allowed, l->data)) {
                return vo_rules_invalid(error, "unknown member in a "
                                             "package rule");
            }
        }
        return vo_rules_package(obj, ctx, result, desc, error);
    }
    if (json_object_has_member(obj, "file")) {
        return vo_rules_file(obj, ctx, result, desc, error);
    }
    if ((member = json_object_get_member(obj, "registry"))) {
        return vo_rules_registry(member, ctx, result, desc, error);
    }
    if ((member = json_object_get_member(obj, "any")) ||
        (member = json_object_get_member(obj, "all"))) {
        if (json_object_get_size(obj) != 1) {
            return vo_rules_invalid(error, "\"any\"/\"all\" stand alone");
        }
        return vo_rules_list(member, ctx, depth,
                                  json_object_has_member(obj, "any"), result,
                                  desc, error);
    }
    if ((member = json_object_get_member(obj, "not"))) {
        if (json_object_get_size(obj) != 1) {
            return vo_rules_invalid(error, "\"not\" stands alone");
        }
        g_string_append(desc, "not(");
        if (!vo_rules_eval(member, ctx, depth + 1, result, desc, error)) {
            return FALSE;
        }
        g_string_append(desc, ")");
        *result = !*result;
        return TRUE;
    }
    return vo_rules_invalid(error, "unknown rule kind");
}

gboolean vo_rules_check(VoBundle *bundle, VoInventory *inv,
                              VoGuest *guest, JsonBuilder *report,
                              GError **error)
{
    VoRuleCtx ctx = { inv, guest };
    g_autofree char *first_failed = NULL;
    guint n = bundle->rules ? json_array_get_length(bundle->rules) : 0;

    json_builder_begin_array(report);
    for (guint i = 0; i < n; i++) {
        g_autoptr(GString) desc = g_string_new(NULL);
        gboolean result;

        if (!vo_rules_eval(json_array_get_element(bundle->rules, i), &ctx, 0,
                           &result, desc, error)) {
            json_builder_end_array(report);
            return FALSE;
        }
        json_builder_begin_object(report);
        json_builder_set_member_name(report, "rule");
        json_builder_add_string_value(report, desc->str);
        json_builder_set_member_name(report, "holds");
        json_builder_add_boolean_value(report, result);
        json_builder_end_object(report);
        if (!result && !first_failed) {
            first_failed = g_strdup(desc->str);
        }
    }
    json_builder_end_array(report);
    if (first_failed) {
        g_set_error(error, VO_ERROR, VO_ERROR_NOT_APPLICABLE,
                    "bundle %s does not apply to %s: rule \"%s\" does not "
                    "hold", bundle->id, guest->image, first_failed);
        return FALSE;
    }
    return TRUE;
}

