/*
 * Windows registry hives through hivex: inventory, rules and the registry
 * instructions of bundles.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#pragma once

#include <json-glib/json-glib.h>

#include "vo-guest.h"

G_BEGIN_DECLS

typedef enum {
    VO_REG_SET,
    VO_REG_DELETE_VALUE,
    VO_REG_DELETE_KEY,
} VoRegOpKind;

typedef struct {
    VoRegOpKind kind;
    char *hive;             /* "SOFTWARE" or "SYSTEM" */
    char *key;              /* backslash-separated, below the hive root */
    char *name;             /* value name; "" is the default value */
    guint32 type;           /* hive_type */
    GBytes *data;           /* encoded value (set) */
    char *display;          /* the value as written in the manifest */
} VoRegOp;

void vo_reg_op_free(VoRegOp *op);
const char *vo_reg_op_name(VoRegOpKind kind);

/* Parses the manifest's "registry" array into VoRegOp*s. */
gboolean vo_registry_parse(JsonNode *node, GPtrArray *ops, GError **error);

/* The Windows part of the inventory: os keys and uninstall entries as
 * (name, version) pairs. */
gboolean vo_registry_inventory(VoGuest *guest, GHashTable *os,
                               GPtrArray *entries, GError **error);
/* The same from the bytes of a SOFTWARE hive already read from a guest. */
gboolean vo_registry_inventory_hive(GBytes *software, GHashTable *os,
                                    GPtrArray *entries, GError **error);

/* Drive letters other than C: that SYSTEM\\MountedDevices assigns to
 * partitions of this disk: @letters gets "D", "E"..., @parts the
 * matching VoPartition* (borrowed). */
gboolean vo_registry_drive_letters(VoGuest *guest, GPtrArray *letters,
                                   GPtrArray *parts, GError **error);

/* Reads one value as a string (REG_SZ/EXPAND_SZ, or a DWORD/QWORD in
 * decimal); NULL with VO_ERROR_NOT_FOUND when absent. */
char *vo_registry_get(VoGuest *guest, const char *hive, const char *key,
                      const char *name, GError **error);

gboolean vo_registry_plan(GPtrArray *ops, VoGuest *guest, JsonBuilder *plan,
                          GError **error);
gboolean vo_registry_execute(GPtrArray *ops, VoGuest *guest, GError **error);
/* One instruction's effect; @why gets the reason when it is missing. */
gboolean vo_registry_verify_op(VoRegOp *op, VoGuest *guest, char **why);

G_END_DECLS
