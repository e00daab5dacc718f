/*
 * Windows updates for dormant images (docs/offline.rst, "Windows updates
 * at the next boot"): a plan from the operator's catalog of .msu files
 * and each image's own build, UBR and installed KBs; a signed bundle
 * from it that stages the files and arms a one-time installer for the
 * next boot; and the installer's result, read by the next inspect.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#pragma once

#include <json-glib/json-glib.h>

#include "vo-guest.h"
#include "vo-plan-guests.h"

G_BEGIN_DECLS

/* Where a bundle puts everything in the guest: its marker, the
 * installer, the KB lists, and the result the installer writes. */
#define VO_MSU_DIR          "C:\\ProgramData\\vmaugment\\offline"
#define VO_MSU_STAGED       VO_MSU_DIR "\\staged"
#define VO_MSU_SCRIPT       VO_MSU_DIR "\\vmaugment-msu-install.cmd"
#define VO_MSU_RESULT       VO_MSU_DIR "\\msu-install.result"
/* Windows runs HKLM\SYSTEM\Setup's CmdLine once at boot, as SYSTEM,
 * before logon, when SetupType is 2 (docs/offline.rst says why this
 * route). */
#define VO_MSU_SETUP_KEY    "Setup"
#define VO_MSU_CMDLINE      "C:\\Windows\\System32\\cmd.exe /d /c " \
                            "\"" VO_MSU_SCRIPT "\""

/* The operator's catalog: a few thousand updates is plenty. */
#define VO_MSU_MAX_CATALOG  (1024 * 1024)
#define VO_MSU_MAX_UPDATES  999

typedef struct {
    GPtrArray *guests;      /* VoPlanGuest*, each read with all its disks */
    const char *catalog;    /* --msu-catalog */
    const char *download_dir;
    /* NULL, or one slot per guest: a guest whose inventory cannot be read
     * gets the message here and is left out of the plan. */
    char **unread;
} VoMsuPlanOptions;

/* The plan, or NULL with @error; nothing is written but copies of the
 * applicable .msu files in @opts->download_dir. */
JsonNode *vo_msu_plan_run(const VoMsuPlanOptions *opts, GError **error);

/* Whether the plan file @path is a plan of .msu files (its "kind");
 * FALSE for anything else, which the apt plan reader then judges. */
gboolean vo_msu_plan_file_is(const char *path);

/*
 * Group @group (-1: the only one) of the .msu plan @plan_path as a
 * signed bundle: the files from @dir (checked against the plan's
 * SHA-256) staged in order, the installer and its arming, rules pinning
 * the build and UBR the plan was made for.
 */
gboolean vo_msu_bundle_build(const char *plan_path, int group,
                             const char *dir, const char *key_path,
                             const char *cert_path, const char *out_path,
                             GError **error);

/*
 * Worker: the installer's result file as the inspect report's member
 * "msu_install": per KB exit codes, the time, and the records (bundle,
 * version, manifest hash, the KBs it staged) it answers for.  NULL when
 * the guest has none; a file that is not one the installer writes is
 * reported with status "unreadable".
 */
JsonNode *vo_msu_result_read(VoGuest *guest);

/*
 * Parent: check the worker's @node (the guest wrote it) and record it in
 * @image's servicing record: each record confirmed when every KB it
 * staged installed (0, 3010 or 2359302), failed otherwise, with the
 * codes as the message.  A result naming a KB that none of its records
 * staged is refused whole and nothing is recorded.  Returns what inspect
 * prints; NULL with @error for a malformed @node.
 */
JsonNode *vo_msu_result_record(const char *image, JsonNode *node,
                               GError **error);

G_END_DECLS
