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

/* An installed program: an Uninstall subkey (also under Wow6432Node). */
typedef struct {
    char *key;              /* the subkey's name, virt-inspector's "name" */
    char *display_name;     /* DisplayName, or NULL */
    char *version;          /* DisplayVersion, or NULL */
    char *publisher;        /* Publisher, or NULL */
    char *install_date;     /* InstallDate as stored (YYYYMMDD), or NULL */
} VoWinApp;

/* A servicing package under Component Based Servicing\Packages. */
typedef struct {
    char *package;          /* "Package_for_KB5005112~31bf...~17763.2090.1.7" */
    char *kb;               /* "KB5005112"; NULL for a rollup */
    guint32 state;          /* CurrentState: 112 is installed */
} VoWinUpdate;

void vo_win_app_free(VoWinApp *app);
void vo_win_update_free(VoWinUpdate *update);
/* CurrentState as a word ("installed", "superseded"...; "unknown"). */
const char *vo_registry_cbs_state_name(guint32 state);

/* The Windows part of the inventory: os keys (product, build, UBR and
 * patch level, hostname...), @apps gets VoWinApp*s, @updates the
 * VoWinUpdate*s of update packages. */
gboolean vo_registry_inventory(VoGuest *guest, GHashTable *os,
                               GPtrArray *apps, GPtrArray *updates,
                               GError **error);
/* The SOFTWARE half of the same from the bytes of a hive already read
 * from a guest. */
gboolean vo_registry_inventory_hive(GBytes *software, GHashTable *os,
                                    GPtrArray *apps, GPtrArray *updates,
                                    GError **error);
/* The SYSTEM half: "current_control_set" and "hostname" (that control
 * set's TCP/IP host name, else its computer name). */
gboolean vo_registry_system_hive(GBytes *system, GHashTable *os,
                                 GError **error);

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
