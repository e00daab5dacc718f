/*
 * Applicability, planning, atomic application and verification of bundles.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "servicing.h"
#include "vo-apply.h"
#include "vo-registry.h"
#include "vo-version.h"

#define VO_MAX_RULE_DEPTH 16

typedef struct {
    VoInventory *inv;
    VoGuest *guest;
} VoRuleCtx;

static gboolean vo_apply_rule(JsonNode *node, VoRuleCtx *ctx, guint depth,
                              gboolean *result, GString *desc,
                              GError **error);

static gboolean vo_apply_rule_invalid(GError **error, const char *what)
{
    g_set_error(error, VO_ERROR, VO_ERROR_INVALID, "bad rule: %s", what);
    return FALSE;
}

static const char *vo_apply_rule_string(JsonObject *obj, const char *member)
{
    JsonNode *node = json_object_get_member(obj, member);

    if (!node || !JSON_NODE_HOLDS_VALUE(node) ||
        json_node_get_value_type(node) != G_TYPE_STRING) {
        return NULL;
    }
    return json_node_get_string(node);
}

static gboolean vo_apply_rule_os(JsonNode *node, VoRuleCtx *ctx,
                                 gboolean *result, GString *desc,
                                 GError **error)
{
    g_autoptr(GList) members = NULL;
    JsonObject *obj;

    if (!JSON_NODE_HOLDS_OBJECT(node)) {
        return vo_apply_rule_invalid(error, "\"os\" must be an object");
    }
    obj = json_node_get_object(node);
    members = json_object_get_members(obj);
    *result = TRUE;
    for (GList *l = members; l; l = l->next) {
        const char *want = vo_apply_rule_string(obj, l->data);
        const char *have = g_hash_table_lookup(ctx->inv->os, l->data);

        if (!want) {
            return vo_apply_rule_invalid(error, "\"os\" values are strings");
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

static gboolean vo_apply_rule_package(JsonObject *obj, VoRuleCtx *ctx,
                                      gboolean *result, GString *desc,
                                      GError **error)
{
    const char *name = vo_apply_rule_string(obj, "package");
    const char *spec = vo_apply_rule_string(obj, "version");
    JsonNode *inst = json_object_get_member(obj, "installed");
    gboolean want_installed = TRUE;
    VoPackage *pkg;
    gboolean installed;

    if (!name) {
        return vo_apply_rule_invalid(error, "\"package\" must be a string");
    }
    if (inst) {
        if (!JSON_NODE_HOLDS_VALUE(inst) ||
            json_node_get_value_type(inst) != G_TYPE_BOOLEAN || spec) {
            return vo_apply_rule_invalid(error, "\"installed\" is a boolean "
                                         "and excludes \"version\"");
        }
        want_installed = json_node_get_boolean(inst);
    }
    if (json_object_has_member(obj, "version") && !spec) {
        return vo_apply_rule_invalid(error, "\"version\" must be a string");
    }
    pkg = g_hash_table_lookup(ctx->inv->packages, name);
    installed = pkg && g_str_has_suffix(pkg->status, " installed");
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
            return vo_apply_rule_invalid(error, "\"version\" is \"OP VERSION\","
                                         " e.g. \">= 1.2-3\"");
        }
        g_string_append_printf(desc, "package %s %s %s", name, parts[0],
                               parts[1]);
        if (!installed) {
            *result = FALSE;
            return TRUE;
        }
        return vo_version_relate(pkg->version, parts[0], parts[1], result,
                                 error);
    }
}

static gboolean vo_apply_rule_file(JsonObject *obj, VoRuleCtx *ctx,
                                   gboolean *result, GString *desc,
                                   GError **error)
{
    const char *path = vo_apply_rule_string(obj, "file");
    const char *sha = vo_apply_rule_string(obj, "sha256");
    JsonNode *exists = json_object_get_member(obj, "exists");
    g_autoptr(GError) local = NULL;
    g_autoptr(GBytes) data = NULL;
    g_autofree char *have = NULL;
    gboolean want_exists = TRUE;

    if (!path || !vo_guest_check_path(path, NULL)) {
        return vo_apply_rule_invalid(error, "\"file\" must be an absolute "
                                     "path");
    }
    if (exists) {
        if (!JSON_NODE_HOLDS_VALUE(exists) ||
            json_node_get_value_type(exists) != G_TYPE_BOOLEAN || sha) {
            return vo_apply_rule_invalid(error, "\"exists\" is a boolean and "
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

static gboolean vo_apply_rule_registry(JsonNode *node, VoRuleCtx *ctx,
                                       gboolean *result, GString *desc,
                                       GError **error)
{
    g_autoptr(GError) local = NULL;
    g_autofree char *have = NULL;
    JsonObject *obj;
    const char *hive, *key, *name, *equals;

    if (!JSON_NODE_HOLDS_OBJECT(node)) {
        return vo_apply_rule_invalid(error, "\"registry\" is an object");
    }
    obj = json_node_get_object(node);
    hive = vo_apply_rule_string(obj, "hive");
    key = vo_apply_rule_string(obj, "key");
    name = vo_apply_rule_string(obj, "name");
    equals = vo_apply_rule_string(obj, "equals");
    if (!hive || !key || !name) {
        return vo_apply_rule_invalid(error, "\"registry\" needs \"hive\", "
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

static gboolean vo_apply_rule_list(JsonNode *node, VoRuleCtx *ctx,
                                   guint depth, gboolean any,
                                   gboolean *result, GString *desc,
                                   GError **error)
{
    JsonArray *arr;

    if (!JSON_NODE_HOLDS_ARRAY(node)) {
        return vo_apply_rule_invalid(error, "\"any\"/\"all\" take an array");
    }
    arr = json_node_get_array(node);
    *result = !any;
    g_string_append(desc, any ? "any(" : "all(");
    for (guint i = 0; i < json_array_get_length(arr); i++) {
        gboolean r;

        if (i) {
            g_string_append(desc, "; ");
        }
        if (!vo_apply_rule(json_array_get_element(arr, i), ctx, depth + 1, &r,
                           desc, error)) {
            return FALSE;
        }
        *result = any ? (*result || r) : (*result && r);
    }
    g_string_append(desc, ")");
    return TRUE;
}

static gboolean vo_apply_rule(JsonNode *node, VoRuleCtx *ctx, guint depth,
                              gboolean *result, GString *desc,
                              GError **error)
{
    JsonObject *obj;
    JsonNode *member;

    if (depth > VO_MAX_RULE_DEPTH) {
        return vo_apply_rule_invalid(error, "nested too deeply");
    }
    if (!JSON_NODE_HOLDS_OBJECT(node)) {
        return vo_apply_rule_invalid(error, "a rule is an object");
    }
    obj = json_node_get_object(node);
    if ((member = json_object_get_member(obj, "os"))) {
        if (json_object_get_size(obj) != 1) {
            return vo_apply_rule_invalid(error, "\"os\" stands alone");
        }
        return vo_apply_rule_os(member, ctx, result, desc, error);
    }
    if (json_object_has_member(obj, "package")) {
        static const char *const allowed[] = {
            "package", "version", "installed", NULL,
        };
        g_autoptr(GList) members = json_object_get_members(obj);

        for (GList *l = members; l; l = l->next) {
            if (!g_strv_contains(allowed, l->data)) {
                return vo_apply_rule_invalid(error, "unknown member in a "
                                             "package rule");
            }
        }
        return vo_apply_rule_package(obj, ctx, result, desc, error);
    }
    if (json_object_has_member(obj, "file")) {
        return vo_apply_rule_file(obj, ctx, result, desc, error);
    }
    if ((member = json_object_get_member(obj, "registry"))) {
        return vo_apply_rule_registry(member, ctx, result, desc, error);
    }
    if ((member = json_object_get_member(obj, "any")) ||
        (member = json_object_get_member(obj, "all"))) {
        if (json_object_get_size(obj) != 1) {
            return vo_apply_rule_invalid(error, "\"any\"/\"all\" stand alone");
        }
        return vo_apply_rule_list(member, ctx, depth,
                                  json_object_has_member(obj, "any"), result,
                                  desc, error);
    }
    if ((member = json_object_get_member(obj, "not"))) {
        if (json_object_get_size(obj) != 1) {
            return vo_apply_rule_invalid(error, "\"not\" stands alone");
        }
        g_string_append(desc, "not(");
        if (!vo_apply_rule(member, ctx, depth + 1, result, desc, error)) {
            return FALSE;
        }
        g_string_append(desc, ")");
        *result = !*result;
        return TRUE;
    }
    return vo_apply_rule_invalid(error, "unknown rule kind");
}

gboolean vo_apply_check_rules(VoBundle *bundle, VoInventory *inv,
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

        if (!vo_apply_rule(json_array_get_element(bundle->rules, i), &ctx, 0,
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

static void vo_apply_member_str(JsonBuilder *b, const char *name,
                                const char *value)
{
    if (value) {
        json_builder_set_member_name(b, name);
        json_builder_add_string_value(b, value);
    }
}

static gboolean vo_apply_fail_op(VoFileOp *op, GError **error, VoError code,
                                 const char *fmt, ...) G_GNUC_PRINTF(4, 5);

static gboolean vo_apply_fail_op(VoFileOp *op, GError **error, VoError code,
                                 const char *fmt, ...)
{
    va_list ap;
    g_autofree char *msg = NULL;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error(error, VO_ERROR, code, "%s %s: %s", vo_file_op_name(op->kind),
                op->path, msg);
    return FALSE;
}

/* Resolves an instruction's path; a missing parent is fine only when an
 * earlier mkdir instruction creates it. */
static gboolean vo_apply_resolve(VoGuest *guest, VoFileOp *op,
                                 GHashTable *planned_dirs, VoPath *p,
                                 gboolean *parent_planned, GError **error)
{
    g_autoptr(GError) local = NULL;
    g_autofree char *norm = vo_guest_normalize_path(op->path);
    g_autofree char *parent = g_path_get_dirname(norm);

    *parent_planned = FALSE;
    if (vo_guest_resolve(guest, op->path, FALSE, p, &local)) {
        return TRUE;
    }
    if (planned_dirs &&
        g_error_matches(local, VO_ERROR, VO_ERROR_NOT_FOUND) &&
        g_hash_table_contains(planned_dirs, parent)) {
        *parent_planned = TRUE;
        return TRUE;
    }
    return vo_apply_fail_op(op, error, local->code, "%s", local->message);
}

gboolean vo_apply_plan(VoBundle *bundle, VoGuest *guest, JsonBuilder *plan,
                       GError **error)
{
    g_autoptr(GHashTable) planned = g_hash_table_new_full(g_str_hash,
                                                          g_str_equal,
                                                          g_free, NULL);
    g_autoptr(JsonBuilder) scratch = NULL;

    if (!plan) {
        plan = scratch = json_builder_new();
    }
    json_builder_begin_array(plan);
    for (guint i = 0; i < bundle->files->len; i++) {
        VoFileOp *op = bundle->files->pdata[i];
        g_auto(VoPath) p = { 0 };
        g_autofree char *have = NULL;
        const char *action = vo_file_op_name(op->kind);
        gboolean fresh;

        if (!vo_apply_resolve(guest, op, planned, &p, &fresh, error)) {
            goto fail;
        }
        if (p.exists && p.st.type == VO_NODE_SYMLINK &&
            op->kind != VO_FILE_OP_DELETE) {
            /* Writing through a final link is how patches escape. */
            vo_apply_fail_op(op, error, VO_ERROR_ESCAPE,
                             "is a symbolic link; refusing to follow it");
            goto fail;
        }
        if ((op->kind == VO_FILE_OP_CHOWN ||
             (op->kind == VO_FILE_OP_CHMOD)) &&
            !fresh && p.fs && !p.fs->has_owners) {
            vo_apply_fail_op(op, error, VO_ERROR_UNSUPPORTED,
                             "the filesystem has no POSIX owners or modes");
            goto fail;
        }
        switch (op->kind) {
        case VO_FILE_OP_MKDIR:
            if (p.exists && p.st.type != VO_NODE_DIRECTORY) {
                vo_apply_fail_op(op, error, VO_ERROR_EXISTS,
                                 "exists and is not a directory");
                goto fail;
            }
            action = p.exists ? "unchanged" : "mkdir";
            g_hash_table_add(planned, vo_guest_normalize_path(op->path));
            break;
        case VO_FILE_OP_ADD:
            if (p.exists) {
                vo_apply_fail_op(op, error, VO_ERROR_EXISTS,
                                 "already exists (use replace)");
                goto fail;
            }
            break;
        case VO_FILE_OP_REPLACE:
        case VO_FILE_OP_DELETE:
            if (!p.exists || fresh) {
                vo_apply_fail_op(op, error, VO_ERROR_NOT_FOUND,
                                 "does not exist");
                goto fail;
            }
            if (p.st.type == VO_NODE_DIRECTORY ||
                p.st.type == VO_NODE_OTHER ||
                (op->kind == VO_FILE_OP_REPLACE &&
                 p.st.type != VO_NODE_REGULAR)) {
                vo_apply_fail_op(op, error, VO_ERROR_UNSUPPORTED,
                                 "is not a regular file");
                goto fail;
            }
            if (op->old_sha256) {
                g_autoptr(GBytes) data = NULL;

                if (p.st.type != VO_NODE_REGULAR) {
                    vo_apply_fail_op(op, error, VO_ERROR_HASH_MISMATCH,
                                     "is a link, not the expected file");
                    goto fail;
                }
                data = p.fs->ops->read(p.fs, p.node, error);
                if (!data) {
                    goto fail;
                }
                have = vo_sha256(data);
                if (!g_str_equal(have, op->old_sha256)) {
                    vo_apply_fail_op(op, error, VO_ERROR_HASH_MISMATCH,
                                     "expected old sha256 %s, the image has "
                                     "%s", op->old_sha256, have);
                    goto fail;
                }
            }
            break;
        case VO_FILE_OP_XATTR:
            if (p.fs && !p.fs->ops->set_xattr) {
                vo_apply_fail_op(op, error, VO_ERROR_UNSUPPORTED,
                                 "the filesystem has no extended attributes "
                                 "here");
                goto fail;
            }
            /* fall through */
        case VO_FILE_OP_CHMOD:
        case VO_FILE_OP_CHOWN:
            if (!p.exists || fresh) {
                vo_apply_fail_op(op, error, VO_ERROR_NOT_FOUND,
                                 "does not exist");
                goto fail;
            }
            break;
        }
        {
            json_builder_begin_object(plan);
            vo_apply_member_str(plan, "op", vo_file_op_name(op->kind));
            vo_apply_member_str(plan, "path", op->path);
            vo_apply_member_str(plan, "resolved",
                                p.resolved ? p.resolved : op->path);
            vo_apply_member_str(plan, "action", action);
            vo_apply_member_str(plan, "old_sha256", have);
            vo_apply_member_str(plan, "new_sha256", op->new_sha256);
            vo_apply_member_str(plan, "xattr", op->xattr_name);
            if (op->data) {
                json_builder_set_member_name(plan, "size");
                json_builder_add_int_value(plan, g_bytes_get_size(op->data));
            }
            if (op->has_mode && op->kind != VO_FILE_OP_CHOWN) {
                g_autofree char *m = g_strdup_printf("%04o", op->mode);
                vo_apply_member_str(plan, "mode", m);
            }
            if (op->has_uid && op->kind != VO_FILE_OP_CHMOD) {
                json_builder_set_member_name(plan, "uid");
                json_builder_add_int_value(plan, op->uid);
            }
            if (op->has_gid && op->kind != VO_FILE_OP_CHMOD) {
                json_builder_set_member_name(plan, "gid");
                json_builder_add_int_value(plan, op->gid);
            }
            json_builder_end_object(plan);
        }
    }
    if (!vo_registry_plan(bundle->registry, guest, plan, error)) {
        goto fail;
    }
    json_builder_end_array(plan);
    return TRUE;

fail:
    json_builder_end_array(plan);
    return FALSE;
}

static gboolean vo_apply_execute(VoBundle *bundle, VoGuest *guest,
                                 GError **error)
{
    for (guint i = 0; i < bundle->files->len; i++) {
        VoFileOp *op = bundle->files->pdata[i];
        g_auto(VoPath) p = { 0 };
        VoStat attrs = {
            .mode = op->mode, .uid = op->uid, .gid = op->gid,
        };
        gboolean ok = TRUE;

        if (!vo_guest_resolve(guest, op->path, FALSE, &p, error)) {
            return FALSE;
        }
        switch (op->kind) {
        case VO_FILE_OP_MKDIR:
            if (!p.exists) {
                ok = p.fs->ops->mkdir(p.fs, p.parent, p.leaf, &attrs, error);
            }
            break;
        case VO_FILE_OP_ADD:
            ok = p.fs->ops->create(p.fs, p.parent, p.leaf, &attrs, op->data,
                                   error);
            break;
        case VO_FILE_OP_REPLACE:
            ok = p.fs->ops->replace(p.fs, p.node, op->data, error);
            break;
        case VO_FILE_OP_DELETE:
            ok = p.fs->ops->remove(p.fs, p.parent, p.leaf, p.node, error);
            break;
        case VO_FILE_OP_XATTR:
            ok = p.fs->ops->set_xattr(p.fs, p.node, op->xattr_name,
                                      op->xattr_value, error);
            break;
        case VO_FILE_OP_CHMOD:
        case VO_FILE_OP_CHOWN:
            ok = p.fs->ops->set_attrs(p.fs, p.node,
                                      op->kind == VO_FILE_OP_CHMOD ? &op->mode
                                                                   : NULL,
                                      op->has_uid ? &op->uid : NULL,
                                      op->has_gid ? &op->gid : NULL, error);
            break;
        }
        if (!ok) {
            g_prefix_error(error, "%s %s: ", vo_file_op_name(op->kind),
                           op->path);
            return FALSE;
        }
    }
    return vo_registry_execute(bundle->registry, guest, error) &&
           vo_guest_sync(guest, error);
}

/* One instruction's effect; @why gets the reason when it is missing. */
static gboolean vo_apply_verify_op(VoGuest *guest, VoFileOp *op, char **why)
{
    g_auto(VoPath) p = { 0 };
    g_autoptr(GError) local = NULL;
    g_autoptr(GBytes) data = NULL;
    g_autofree char *have = NULL;
    gboolean owners;

    if (!vo_guest_resolve(guest, op->path, FALSE, &p, &local)) {
        if (op->kind == VO_FILE_OP_DELETE &&
            g_error_matches(local, VO_ERROR, VO_ERROR_NOT_FOUND)) {
            return TRUE;
        }
        *why = g_strdup(local->message);
        return FALSE;
    }
    if (op->kind == VO_FILE_OP_DELETE) {
        if (p.exists) {
            *why = g_strdup("still exists");
        }
        return !p.exists;
    }
    if (!p.exists) {
        *why = g_strdup("does not exist");
        return FALSE;
    }
    if (op->kind == VO_FILE_OP_MKDIR) {
        if (p.st.type != VO_NODE_DIRECTORY) {
            *why = g_strdup("is not a directory");
        }
        return p.st.type == VO_NODE_DIRECTORY;
    }
    if (p.st.type == VO_NODE_SYMLINK) {
        *why = g_strdup("is a symbolic link");
        return FALSE;
    }
    if (op->data) {
        data = p.fs->ops->read(p.fs, p.node, &local);
        if (!data) {
            *why = g_strdup(local->message);
            return FALSE;
        }
        have = vo_sha256(data);
        if (!g_str_equal(have, op->new_sha256)) {
            *why = g_strdup_printf("content has sha256 %s, expected %s", have,
                                   op->new_sha256);
            return FALSE;
        }
    }
    if (op->kind == VO_FILE_OP_XATTR) {
        g_autoptr(GBytes) have_value = NULL;

        if (!p.fs->ops->get_xattr) {
            *why = g_strdup("the filesystem has no extended attributes");
            return FALSE;
        }
        have_value = p.fs->ops->get_xattr(p.fs, p.node, op->xattr_name,
                                          &local);
        if (!op->xattr_value) {
            if (have_value) {
                *why = g_strdup_printf("attribute %s still set",
                                       op->xattr_name);
            }
            return have_value == NULL;
        }
        if (!have_value || !g_bytes_equal(have_value, op->xattr_value)) {
            *why = g_strdup_printf("attribute %s not set as expected",
                                   op->xattr_name);
            return FALSE;
        }
        return TRUE;
    }
    owners = p.fs->has_owners;
    if (!owners &&
        (op->kind == VO_FILE_OP_CHMOD || op->kind == VO_FILE_OP_CHOWN)) {
        *why = g_strdup("the filesystem has no POSIX owners or modes");
        return FALSE;
    }
    if (owners && op->has_mode && op->kind != VO_FILE_OP_CHOWN &&
        p.st.mode != op->mode) {
        *why = g_strdup_printf("mode is %04o, expected %04o", p.st.mode,
                               op->mode);
        return FALSE;
    }
    if (owners && op->kind != VO_FILE_OP_CHMOD &&
        ((op->has_uid && p.st.uid != op->uid) ||
         (op->has_gid && p.st.gid != op->gid))) {
        *why = g_strdup_printf("owner is %u:%u, expected %u:%u", p.st.uid,
                               p.st.gid, op->uid, op->gid);
        return FALSE;
    }
    return TRUE;
}

gboolean vo_apply_verify(VoBundle *bundle, VoGuest *guest,
                         JsonBuilder *report, GError **error)
{
    guint failed = 0;
    g_autofree char *first = NULL;

    if (report) {
        json_builder_begin_array(report);
    }
    for (guint i = 0; i < bundle->files->len; i++) {
        VoFileOp *op = bundle->files->pdata[i];
        g_autofree char *why = NULL;
        gboolean ok = vo_apply_verify_op(guest, op, &why);

        if (!ok) {
            failed++;
            if (!first) {
                first = g_strdup_printf("%s %s: %s",
                                        vo_file_op_name(op->kind), op->path,
                                        why);
            }
        }
        if (report) {
            json_builder_begin_object(report);
            vo_apply_member_str(report, "op", vo_file_op_name(op->kind));
            vo_apply_member_str(report, "path", op->path);
            json_builder_set_member_name(report, "ok");
            json_builder_add_boolean_value(report, ok);
            vo_apply_member_str(report, "problem", why);
            json_builder_end_object(report);
        }
    }
    for (guint i = 0; i < bundle->registry->len; i++) {
        VoRegOp *op = bundle->registry->pdata[i];
        g_autofree char *why = NULL;
        g_autofree char *what = g_strdup_printf("%s\\%s%s%s", op->hive,
                                                op->key, op->name ? "\\" : "",
                                                op->name ? op->name : "");
        gboolean ok = vo_registry_verify_op(op, guest, &why);

        if (!ok) {
            failed++;
            if (!first) {
                first = g_strdup_printf("registry %s %s: %s",
                                        vo_reg_op_name(op->kind), what, why);
            }
        }
        if (report) {
            json_builder_begin_object(report);
            vo_apply_member_str(report, "registry", vo_reg_op_name(op->kind));
            vo_apply_member_str(report, "key", what);
            json_builder_set_member_name(report, "ok");
            json_builder_add_boolean_value(report, ok);
            vo_apply_member_str(report, "problem", why);
            json_builder_end_object(report);
        }
    }
    if (report) {
        json_builder_end_array(report);
    }
    if (failed) {
        g_set_error(error, VO_ERROR, VO_ERROR_VERIFY,
                    "%u of %u instructions not in effect (first: %s)", failed,
                    bundle->files->len + bundle->registry->len, first);
        return FALSE;
    }
    return TRUE;
}

/* Files an apply keeps next to the image, on the same filesystem. */
static char *vo_apply_sidecar(const char *image, const char *suffix)
{
    g_autofree char *dir = g_path_get_dirname(image);
    g_autofree char *base = g_path_get_basename(image);
    g_autofree char *name = g_strdup_printf(".%s.vmaugment-%s", base, suffix);

    return g_build_filename(dir, name, NULL);
}

static gboolean vo_apply_sync_dir(const char *path, GError **error)
{
    g_autofree char *dir = g_path_get_dirname(path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0 || fsync(fd) < 0) {
        int saved = errno;

        if (fd >= 0) {
            close(fd);
        }
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "cannot sync %s: %s",
                    dir, g_strerror(saved));
        return FALSE;
    }
    close(fd);
    return TRUE;
}

static gboolean vo_apply_write_journal(const char *journal, const char *text,
                                       GError **error)
{
    g_autofree char *tmp = g_strdup_printf("%s.tmp", journal);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    gsize len = strlen(text);

    if (fd < 0 || write(fd, text, len) != (ssize_t)len || fsync(fd) < 0) {
        int saved = errno;

        if (fd >= 0) {
            close(fd);
        }
        g_unlink(tmp);
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "cannot write %s: %s",
                    tmp, g_strerror(saved));
        return FALSE;
    }
    close(fd);
    /* The rename is the commit point of the whole apply. */
    if (rename(tmp, journal) < 0) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "cannot rename %s: %s",
                    tmp, g_strerror(errno));
        g_unlink(tmp);
        return FALSE;
    }
    return vo_apply_sync_dir(journal, error);
}

static gboolean vo_apply_qemu_img(const char *const *args, GError **error)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    g_autofree char *err = NULL;
    int status;

    g_ptr_array_add(argv, (char *)vo_disk_qemu_tool("qemu-img"));
    for (guint i = 0; args[i]; i++) {
        g_ptr_array_add(argv, (char *)args[i]);
    }
    g_ptr_array_add(argv, NULL);
    if (!g_spawn_sync(NULL, (char **)argv->pdata, NULL, G_SPAWN_SEARCH_PATH,
                      NULL, NULL, NULL, &err, &status, error)) {
        return FALSE;
    }
    if (!g_spawn_check_wait_status(status, NULL)) {
        g_set_error(error, VO_ERROR,
                    strstr(err, "lock") ? VO_ERROR_IN_USE : VO_ERROR_FAILED,
                    "qemu-img %s failed: %s", args[0], g_strstrip(err));
        return FALSE;
    }
    return TRUE;
}

/* Copies the verified overlay into the image and removes the sidecars. */
static gboolean vo_apply_commit(const char *overlay, const char *journal,
                                GError **error)
{
    const char *args[] = {
        /* -d keeps the overlay intact, so a killed commit can be redone. */
        "commit", "-q", "-d", "-f", "qcow2", overlay, NULL,
    };

    if (!vo_apply_qemu_img(args, error)) {
        return FALSE;
    }
    /*
     * The overlay goes first: a journal alone says "committed", while an
     * overlay alone says "never written" and would have recover report a
     * finished commit as rolled back.
     */
    if (g_unlink(overlay) < 0 && errno != ENOENT) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "cannot remove %s: %s",
                    overlay, g_strerror(errno));
        return FALSE;
    }
    if (!vo_apply_sync_dir(overlay, error)) {
        return FALSE;
    }
    if (g_unlink(journal) < 0 && errno != ENOENT) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "cannot remove %s: %s",
                    journal, g_strerror(errno));
        return FALSE;
    }
    return vo_apply_sync_dir(journal, error);
}

/*
 * One vmaugment-offline at a time per image: a second apply would take the
 * first one's overlay for debris and delete it.  flock() locks are
 * independent of the OFD byte locks QEMU takes on the same file (on local
 * filesystems), so qemu-nbd and qemu-img still get theirs.
 */
static int vo_apply_lock(const char *image, GError **error)
{
    int fd = open(image, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        g_set_error(error, VO_ERROR, VO_ERROR_NOT_FOUND, "cannot open %s: %s",
                    image, g_strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int saved = errno;

        close(fd);
        g_set_error(error, VO_ERROR, VO_ERROR_IN_USE,
                    saved == EWOULDBLOCK
                        ? "%s is being serviced by another vmaugment-offline"
                        : "cannot lock %s: %s",
                    image, g_strerror(saved));
        return -1;
    }
    return fd;
}

static void vo_apply_unlock(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
    }
}

static gboolean vo_apply_recover_locked(const char *image,
                                        const char **action, GError **error);

gboolean vo_apply_recover(const char *image, const char **action,
                          GError **error)
{
    int fd = vo_apply_lock(image, error);
    gboolean ok;

    if (fd < 0) {
        return FALSE;
    }
    ok = vo_apply_recover_locked(image, action, error);
    close(fd);
    return ok;
}

static gboolean vo_apply_recover_locked(const char *image,
                                        const char **action, GError **error)
{
    g_autofree char *overlay = vo_apply_sidecar(image, "overlay.qcow2");
    g_autofree char *journal = vo_apply_sidecar(image, "journal");
    g_autofree char *journal_tmp = g_strdup_printf("%s.tmp", journal);
    gboolean have_overlay = g_file_test(overlay, G_FILE_TEST_EXISTS);
    gboolean have_journal = g_file_test(journal, G_FILE_TEST_EXISTS);

    if (action) {
        *action = "none";
    }
    g_unlink(journal_tmp);
    if (!have_overlay && !have_journal) {
        return TRUE;
    }
    if (!vo_disk_check_unlocked(image, error)) {
        return FALSE;
    }
    if (have_journal) {
        if (!have_overlay) {
            /* The commit finished; only the journal's removal did not. */
            g_unlink(journal);
            return vo_apply_sync_dir(journal, error);
        }
        g_message("%s: finishing an interrupted apply", image);
        if (!vo_apply_commit(overlay, journal, error)) {
            g_prefix_error(error, "cannot finish the interrupted apply: ");
            return FALSE;
        }
        if (action) {
            *action = "rolled-forward";
        }
        return TRUE;
    }
    /* No journal: the image was never written; drop the half-done work. */
    g_unlink(overlay);
    if (action) {
        *action = "rolled-back";
    }
    return TRUE;
}

static void vo_apply_status(JsonBuilder *report, const char *status)
{
    vo_apply_member_str(report, "status", status);
}

/*
 * Inventory, "already in effect?", rules, plan.  Returns FALSE with
 * @error on refusal; TRUE with *@done when nothing is left to do.  The
 * report's status is set whenever the decision ends the apply.
 */
static gboolean vo_apply_decide(VoBundle *bundle, VoGuest *guest,
                                JsonBuilder *report, gboolean *done,
                                GError **error)
{
    g_autoptr(VoInventory) inv = vo_inventory_read(guest, error);

    *done = FALSE;
    if (!inv) {
        vo_apply_status(report, "error");
        return FALSE;
    }
    if (bundle->files->len + bundle->registry->len > 0 &&
        vo_apply_verify(bundle, guest, NULL, NULL)) {
        vo_apply_status(report, "already-applied");
        *done = TRUE;
        return TRUE;
    }
    json_builder_set_member_name(report, "rules");
    if (!vo_apply_check_rules(bundle, inv, guest, report, error)) {
        vo_apply_status(report, "not-applicable");
        return FALSE;
    }
    json_builder_set_member_name(report, "plan");
    if (!vo_apply_plan(bundle, guest, report, error)) {
        vo_apply_status(report, "refused");
        return FALSE;
    }
    return TRUE;
}

/* The image's servicing record awaits @bundle's report (servicing.h). */
static gboolean vo_apply_await_report(const char *image, VoBundle *bundle,
                                      GError **error)
{
    g_autoptr(VmaugServicing) record = NULL;
    g_autoptr(GError) local = NULL;

    record = vmaug_servicing_load(image, &local);
    if (record != NULL) {
        vmaug_servicing_applied(record, bundle->id, bundle->version,
                                bundle->marker_sha256);
        if (vmaug_servicing_save(record, &local)) {
            return TRUE;
        }
    }
    g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "%s", local->message);
    return FALSE;
}

gboolean vo_apply_image(const char *image, const char *format,
                        VoBundle *bundle, VoApplyFlags flags,
                        JsonBuilder *report, GError **error)
{
    g_autoptr(VoGuest) guest = NULL;
    g_autofree char *fmt = NULL;
    g_autofree char *absimage = g_canonicalize_filename(image, NULL);
    g_autofree char *overlay = vo_apply_sidecar(absimage, "overlay.qcow2");
    g_autofree char *journal = vo_apply_sidecar(absimage, "journal");
    g_autofree char *journal_text = NULL;
    const char *recovered;
    gboolean done;
    /* Held until we return, whichever way. */
    __attribute__((cleanup(vo_apply_unlock))) int lock_fd = -1;

    vo_apply_member_str(report, "image", image);
    vo_apply_member_str(report, "bundle", bundle->id);
    vo_apply_member_str(report, "bundle_version", bundle->version);
    vo_apply_member_str(report, "signer", bundle->signer);
    lock_fd = vo_apply_lock(absimage, error);
    if (lock_fd < 0 ||
        !vo_apply_recover_locked(absimage, &recovered, error)) {
        vo_apply_status(report, "error");
        return FALSE;
    }
    vo_apply_member_str(report, "recovery", recovered);

    if (flags & VO_APPLY_DRY_RUN) {
        /* A dry run leaves no file behind: it reads the image itself. */
        guest = vo_guest_open(absimage, format, FALSE, error);
        if (!guest) {
            vo_apply_status(report, "error");
            return FALSE;
        }
        if (!vo_apply_decide(bundle, guest, report, &done, error)) {
            return FALSE;
        }
        if (!done) {
            vo_apply_status(report, "dry-run");
        }
        return TRUE;
    }

    if (!vo_disk_check_unlocked(absimage, error) ||
        !(fmt = vo_disk_probe_format(absimage, format, TRUE, error))) {
        vo_apply_status(report, "error");
        return FALSE;
    }
    {
        const char *args[] = {
            "create", "-q", "-f", "qcow2", "-b", absimage, "-F", fmt,
            overlay, NULL,
        };

        if (!vo_apply_qemu_img(args, error)) {
            vo_apply_status(report, "error");
            return FALSE;
        }
    }
    /*
     * From here until the journal exists, any end means: drop the overlay.
     * Deciding reads the image through the still-empty overlay, so the
     * decision and the patch see exactly the same bytes.
     */
    g_debug("%s: deciding", image);
    guest = vo_guest_open_overlay(overlay, error);
    if (!guest) {
        goto fail;
    }
    g_free(guest->image);
    guest->image = g_strdup(image);
    if (!vo_apply_decide(bundle, guest, report, &done, error)) {
        g_clear_pointer(&guest, vo_guest_free);
        g_unlink(overlay);
        return FALSE;
    }
    if (done) {
        g_clear_pointer(&guest, vo_guest_free);
        g_unlink(overlay);
        return TRUE;
    }
    g_debug("%s: patching the overlay", image);
    if (!vo_apply_execute(bundle, guest, error)) {
        goto fail;
    }

    g_debug("%s: verifying the overlay", image);
    json_builder_set_member_name(report, "verify");
    if (!vo_guest_reopen_read_only(guest, error) ||
        !vo_apply_verify(bundle, guest, report, error)) {
        goto fail;
    }
    g_clear_pointer(&guest, vo_guest_free);

    {
        g_autoptr(JsonBuilder) jb = json_builder_new();
        g_autoptr(JsonGenerator) gen = json_generator_new();
        g_autoptr(JsonNode) root = NULL;

        /* For people: recovery needs only the journal's existence. */
        json_builder_begin_object(jb);
        vo_apply_member_str(jb, "image", absimage);
        vo_apply_member_str(jb, "bundle", bundle->id);
        vo_apply_member_str(jb, "version", bundle->version);
        json_builder_end_object(jb);
        root = json_builder_get_root(jb);
        json_generator_set_root(gen, root);
        journal_text = json_generator_to_data(gen, NULL);
    }
    if (!vo_apply_write_journal(journal, journal_text, error)) {
        goto fail;
    }
    /*
     * From the journal on the patch will be in the image (recover finishes
     * it), so the host now awaits the guest's report of it.  Without the
     * record the guest's report would be refused: undo rather than leave
     * an update nobody can confirm.
     */
    if (bundle->marker_sha256 != NULL &&
        !vo_apply_await_report(absimage, bundle, error)) {
        g_unlink(journal);
        goto fail;
    }
    g_debug("%s: committing", image);
    if (!vo_apply_commit(overlay, journal, error)) {
        g_prefix_error(error, "commit interrupted (run 'vmaugment-offline "
                       "recover %s' to finish it): ", image);
        vo_apply_status(report, "error");
        return FALSE;
    }
    g_debug("%s: applied", image);
    vo_apply_status(report, "applied");
    return TRUE;

fail:
    g_clear_pointer(&guest, vo_guest_free);
    g_unlink(overlay);
    vo_apply_status(report, "error");
    return FALSE;
}
