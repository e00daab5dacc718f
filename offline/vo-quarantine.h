/*
 * A bundle's quarantine instruction (docs/offline.rst, "Quarantine"):
 * every file the host owner's ClamAV database finds in the guest is moved
 * aside into the instruction's directory, in the same atomic apply as the
 * rest of the bundle.  Runs in the offline worker, on guest data only:
 * the scan (vo-scan-engine.c) fills the instruction's hits, this file
 * plans, carries out and verifies the moves.
 *
 * What is moved is decided by the host's database and the guest's bytes
 * alone; the signed bundle decides only that it happens and where to.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#pragma once

#include <json-glib/json-glib.h>

#include "vo-bundle.h"
#include "vo-guest.h"

G_BEGIN_DECLS

/* A quarantined file's record, beside it (<sha256>.json), in bytes. */
#define VO_QUARANTINE_MAX_RECORD (64 * 1024)
/* What a stored file's bytes are XORed with: no scanner (ours at the next
 * start, or the guest's own) finds it again, and nothing runs it. */
#define VO_QUARANTINE_XOR 0xff

/* One file the scan found. */
typedef struct {
    char *path;             /* the guest path, as vo_guest_resolve() takes */
    char *shown;            /* as reports show it (escaped) */
    char *signature;        /* escaped */
} VoQuarantineHit;

VoQuarantineHit *vo_quarantine_hit_new(const char *path, const char *shown,
                                       const char *signature);
void vo_quarantine_hit_free(VoQuarantineHit *hit);

/* Checks the instruction against the guest (its directory, each hit a
 * regular file not a mount point); its plan entry into @plan (an open
 * array).  Refuses a quarantine the scan did not run for. */
gboolean vo_quarantine_plan(VoFileOp *op, VoGuest *guest, JsonBuilder *plan,
                            GError **error);
/* Stores each hit under its SHA-256 with its record, then removes it. */
gboolean vo_quarantine_execute(VoFileOp *op, VoGuest *guest,
                               GError **error);
/*
 * Whether the instruction is in effect: with hits, none of them is at
 * its path any more and each is stored; without a scan (the verify
 * command has no database), each record in the directory: its file is
 * stored and its original path no longer holds it.  @why gets the reason.
 */
gboolean vo_quarantine_verify(VoFileOp *op, VoGuest *guest, char **why);

G_END_DECLS
