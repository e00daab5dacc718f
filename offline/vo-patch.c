/*
 * What a bundle does to a guest: deciding (inventory, "already in
 * effect?", rules, plan), patching its files and registry, and verifying
 * the result.  Runs in the offline worker, on guest data only; the host's
 * side (overlay, journal, commit) is vo-apply.c.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <string.h>

#include "vo-patch.h"
#include "vo-quarantine.h"
#include "vo-registry.h"
#include "vo-rules.h"
#include "vo-unpack.h"

static void vo_patch_member_str(JsonBuilder *b, const char *name,
                                const char *value)
{
    if (value) {
        json_builder_set_member_name(b, name);
        json_builder_add_string_value(b, value);
    }
}

static gboolean vo_patch_fail_op(VoFileOp *op, GError **error, VoError code,
                                 const char *fmt, ...) G_GNUC_PRINTF(4, 5);

static gboolean vo_patch_fail_op(VoFileOp *op, GError **error, VoError code,
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

/*
 * A mount point (vo_guest_resolve()) is only ever a mkdir's path, as the
 * parents a bundle's mkdir implies may be (/var on a disk of its own):
 * the directory exists.  Anything else would change the mount point.
 */
static gboolean vo_patch_check_mount(VoFileOp *op, VoPath *p, GError **error)
{
    g_autoptr(GError) local = NULL;

    if (op->kind == VO_FILE_OP_MKDIR || vo_path_check_not_mount(p, &local)) {
        return TRUE;
    }
    return vo_patch_fail_op(op, error, local->code, "%s", local->message);
}

/* Resolves an instruction's path; a missing parent is fine only when an
 * earlier mkdir instruction creates it. */
static gboolean vo_patch_resolve(VoGuest *guest, VoFileOp *op,
                                 GHashTable *planned_dirs, VoPath *p,
                                 gboolean *parent_planned, GError **error)
{
    g_autoptr(GError) local = NULL;
    g_autofree char *norm = vo_guest_normalize_path(op->path);
    g_autofree char *parent = g_path_get_dirname(norm);

    *parent_planned = FALSE;
    if (vo_guest_resolve(guest, op->path, FALSE, p, &local)) {
        return vo_patch_check_mount(op, p, error);
    }
    if (planned_dirs &&
        g_error_matches(local, VO_ERROR, VO_ERROR_NOT_FOUND) &&
        g_hash_table_contains(planned_dirs, parent)) {
        *parent_planned = TRUE;
        return TRUE;
    }
    return vo_patch_fail_op(op, error, local->code, "%s", local->message);
}

/*
 * Whether the file @p already is what add @op would create: the same
 * bytes, mode and owners.  Then adding it again is no change, as when two
 * bundles install the same helper file before the guest boots.
 */
static gboolean vo_patch_same_file(VoPath *p, VoFileOp *op)
{
    g_autoptr(GBytes) data = NULL;

    if (p->st.type != VO_NODE_REGULAR || p->st.mode != op->mode ||
        p->st.uid != op->uid || p->st.gid != op->gid ||
        p->st.size != g_bytes_get_size(op->data)) {
        return FALSE;
    }
    data = p->fs->ops->read(p->fs, p->node, NULL);
    return data && g_bytes_equal(data, op->data);
}

gboolean vo_patch_plan(VoBundle *bundle, VoGuest *guest, JsonBuilder *plan,
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

        if (op->kind == VO_FILE_OP_QUARANTINE) {
            /* Its paths are what the scan found, each its own entry. */
            if (!vo_quarantine_plan(op, guest, plan, error)) {
                goto fail;
            }
            continue;
        }
        if (!vo_patch_resolve(guest, op, planned, &p, &fresh, error)) {
            goto fail;
        }
        if (p.exists && p.st.type == VO_NODE_SYMLINK &&
            op->kind != VO_FILE_OP_DELETE) {
            /* Writing through a final link is how patches escape. */
            vo_patch_fail_op(op, error, VO_ERROR_ESCAPE,
                             "is a symbolic link; refusing to follow it");
            goto fail;
        }
        if ((op->kind == VO_FILE_OP_CHOWN ||
             (op->kind == VO_FILE_OP_CHMOD)) &&
            !fresh && p.fs && !p.fs->has_owners) {
            vo_patch_fail_op(op, error, VO_ERROR_UNSUPPORTED,
                             "the filesystem has no POSIX owners or modes");
            goto fail;
        }
        switch (op->kind) {
        case VO_FILE_OP_MKDIR:
            if (p.exists && p.st.type != VO_NODE_DIRECTORY) {
                vo_patch_fail_op(op, error, VO_ERROR_EXISTS,
                                 "exists and is not a directory");
                goto fail;
            }
            action = p.exists ? "unchanged" : "mkdir";
            g_hash_table_add(planned, vo_guest_normalize_path(op->path));
            break;
        case VO_FILE_OP_ADD:
            if (p.exists && !vo_patch_same_file(&p, op)) {
                vo_patch_fail_op(op, error, VO_ERROR_EXISTS,
                                 "already exists (use replace)");
                goto fail;
            }
            action = p.exists ? "unchanged" : action;
            break;
        case VO_FILE_OP_REPLACE:
        case VO_FILE_OP_DELETE:
            if (!p.exists || fresh) {
                vo_patch_fail_op(op, error, VO_ERROR_NOT_FOUND,
                                 "does not exist");
                goto fail;
            }
            if (p.st.type == VO_NODE_DIRECTORY ||
                p.st.type == VO_NODE_OTHER ||
                (op->kind == VO_FILE_OP_REPLACE &&
                 p.st.type != VO_NODE_REGULAR)) {
                vo_patch_fail_op(op, error, VO_ERROR_UNSUPPORTED,
                                 "is not a regular file");
                goto fail;
            }
            if (op->old_sha256) {
                g_autoptr(GBytes) data = NULL;

                if (p.st.type != VO_NODE_REGULAR) {
                    vo_patch_fail_op(op, error, VO_ERROR_HASH_MISMATCH,
                                     "is a link, not the expected file");
                    goto fail;
                }
                data = p.fs->ops->read(p.fs, p.node, error);
                if (!data) {
                    goto fail;
                }
                have = vo_sha256(data);
                if (!g_str_equal(have, op->old_sha256)) {
                    vo_patch_fail_op(op, error, VO_ERROR_HASH_MISMATCH,
                                     "expected old sha256 %s, the image has "
                                     "%s", op->old_sha256, have);
                    goto fail;
                }
            }
            break;
        case VO_FILE_OP_QUARANTINE:
            /* Planned by vo_quarantine_plan() above. */
            g_assert_not_reached();
        case VO_FILE_OP_XATTR:
            if (p.fs && !p.fs->ops->set_xattr) {
                vo_patch_fail_op(op, error, VO_ERROR_UNSUPPORTED,
                                 "the filesystem has no extended attributes "
                                 "here");
                goto fail;
            }
            /* fall through */
        case VO_FILE_OP_CHMOD:
        case VO_FILE_OP_CHOWN:
            if (!p.exists || fresh) {
                vo_patch_fail_op(op, error, VO_ERROR_NOT_FOUND,
                                 "does not exist");
                goto fail;
            }
            break;
        }
        {
            json_builder_begin_object(plan);
            vo_patch_member_str(plan, "op", vo_file_op_name(op->kind));
            vo_patch_member_str(plan, "path", op->path);
            vo_patch_member_str(plan, "resolved",
                                p.resolved ? p.resolved : op->path);
            vo_patch_member_str(plan, "action", action);
            vo_patch_member_str(plan, "old_sha256", have);
            vo_patch_member_str(plan, "new_sha256", op->new_sha256);
            vo_patch_member_str(plan, "xattr", op->xattr_name);
            if (op->data) {
                json_builder_set_member_name(plan, "size");
                json_builder_add_int_value(plan, g_bytes_get_size(op->data));
            }
            if (op->has_mode && op->kind != VO_FILE_OP_CHOWN) {
                g_autofree char *m = g_strdup_printf("%04o", op->mode);
                vo_patch_member_str(plan, "mode", m);
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
    if (!vo_registry_plan(bundle->registry, guest, plan, error) ||
        !vo_unpack_plan(bundle, guest, plan, error)) {
        goto fail;
    }
    json_builder_end_array(plan);
    return TRUE;

fail:
    json_builder_end_array(plan);
    return FALSE;
}

gboolean vo_patch_execute(VoBundle *bundle, VoGuest *guest,
                                 GError **error)
{
    for (guint i = 0; i < bundle->files->len; i++) {
        VoFileOp *op = bundle->files->pdata[i];
        g_auto(VoPath) p = { 0 };
        VoStat attrs = {
            .mode = op->mode, .uid = op->uid, .gid = op->gid,
        };
        gboolean ok = TRUE;

        if (op->kind == VO_FILE_OP_QUARANTINE) {
            if (!vo_quarantine_execute(op, guest, error)) {
                return FALSE;
            }
            continue;
        }
        if (!vo_guest_resolve(guest, op->path, FALSE, &p, error) ||
            !vo_patch_check_mount(op, &p, error)) {
            return FALSE;
        }
        switch (op->kind) {
        case VO_FILE_OP_MKDIR:
            if (!p.exists) {
                ok = p.fs->ops->mkdir(p.fs, p.parent, p.leaf, &attrs, error);
            }
            break;
        case VO_FILE_OP_ADD:
            /* Present only when identical (vo_patch_plan()). */
            if (!p.exists) {
                ok = p.fs->ops->create(p.fs, p.parent, p.leaf, &attrs,
                                       op->data, error);
            }
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
        case VO_FILE_OP_QUARANTINE:
            g_assert_not_reached();
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
           vo_unpack_execute(bundle, guest, error) &&
           vo_guest_sync(guest, error);
}

/* One instruction's effect; @why gets the reason when it is missing. */
static gboolean vo_patch_verify_op(VoGuest *guest, VoFileOp *op, char **why)
{
    g_auto(VoPath) p = { 0 };
    g_autoptr(GError) local = NULL;
    g_autoptr(GBytes) data = NULL;
    g_autofree char *have = NULL;
    gboolean owners;

    if (op->kind == VO_FILE_OP_QUARANTINE) {
        return vo_quarantine_verify(op, guest, why);
    }
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

gboolean vo_patch_verify(VoBundle *bundle, VoGuest *guest,
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
        gboolean ok = vo_patch_verify_op(guest, op, &why);

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
            vo_patch_member_str(report, "op", vo_file_op_name(op->kind));
            vo_patch_member_str(report, "path", op->path);
            json_builder_set_member_name(report, "ok");
            json_builder_add_boolean_value(report, ok);
            vo_patch_member_str(report, "problem", why);
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
            vo_patch_member_str(report, "registry", vo_reg_op_name(op->kind));
            vo_patch_member_str(report, "key", what);
            json_builder_set_member_name(report, "ok");
            json_builder_add_boolean_value(report, ok);
            vo_patch_member_str(report, "problem", why);
            json_builder_end_object(report);
        }
    }
    failed += vo_unpack_verify(bundle, guest, report, &first);
    if (report) {
        json_builder_end_array(report);
    }
    if (failed) {
        g_set_error(error, VO_ERROR, VO_ERROR_VERIFY,
                    "%u of %u instructions not in effect (first: %s)", failed,
                    bundle->files->len + bundle->registry->len +
                        bundle->packages->len, first);
        return FALSE;
    }
    return TRUE;
}

static void vo_patch_status(JsonBuilder *report, const char *status)
{
    vo_patch_member_str(report, "status", status);
}

/*
 * Inventory, "already in effect?", rules, plan.  Returns FALSE with
 * @error on refusal; TRUE with *@done when nothing is left to do.  The
 * report's status is set whenever the decision ends the apply.
 */
gboolean vo_patch_decide(VoBundle *bundle, VoGuest *guest,
                                JsonBuilder *report, gboolean *done,
                                GError **error)
{
    g_autoptr(VoInventory) inv = vo_inventory_read(guest, error);

    *done = FALSE;
    if (!inv) {
        vo_patch_status(report, "error");
        return FALSE;
    }
    if (bundle->files->len + bundle->registry->len +
            bundle->packages->len > 0 &&
        vo_patch_verify(bundle, guest, NULL, NULL)) {
        vo_patch_status(report, "already-applied");
        *done = TRUE;
        return TRUE;
    }
    json_builder_set_member_name(report, "rules");
    if (!vo_rules_check(bundle, inv, guest, report, error)) {
        vo_patch_status(report, "not-applicable");
        return FALSE;
    }
    json_builder_set_member_name(report, "plan");
    if (!vo_patch_plan(bundle, guest, report, error)) {
        vo_patch_status(report, "refused");
        return FALSE;
    }
    return TRUE;
}

gboolean vo_patch_check_files_only(VoBundle *bundle, const char *route,
                                   GError **error)
{
    if (vo_bundle_quarantine_op(bundle)) {
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "bundle %s has a quarantine instruction, which %s does "
                    "not carry out (it scans in the offline worker)",
                    bundle->id, route);
        return FALSE;
    }
    if ((bundle->registry && bundle->registry->len) ||
        (bundle->packages && bundle->packages->len)) {
        g_set_error(error, VO_ERROR, VO_ERROR_UNSUPPORTED,
                    "bundle %s has registry or package instructions, which "
                    "%s does not carry out (only file instructions)",
                    bundle->id, route);
        return FALSE;
    }
    return TRUE;
}
