/*
 * vmaugment-admin: the host owner's tool for the module store, the trust
 * store, image registrations and the audit log, without a running QEMU.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef VMAUGMENT_ADMIN_H
#define VMAUGMENT_ADMIN_H

#include <glib.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

/* Exit status of every command. */
#define ADMIN_EXIT_OK       0
#define ADMIN_EXIT_REFUSED  1   /* the operation failed or was refused */
#define ADMIN_EXIT_USAGE    2   /* bad command line */

/* Where the helper's documented installation keeps them. */
#define ADMIN_DEFAULT_STORE     "/var/lib/vmaugment/store"
#define ADMIN_DEFAULT_TRUST_DIR "/etc/vmaugment/trust"

/* The actor the store's audit log records for this tool. */
#define ADMIN_ACTOR "admin"

/* Set by "vmaugment-admin --json COMMAND ..." before the command. */
extern gboolean admin_global_json;

/* "vmaugment-admin: <message>" on stderr; returns @status. */
int admin_fail(int status, const gchar *format, ...) G_GNUC_PRINTF(2, 3);
/* Report @error and return ADMIN_EXIT_REFUSED. */
int admin_fail_error(const GError *error);
/*
 * Parse a command's options.  On a usage error, prints it and returns
 * FALSE; the caller returns ADMIN_EXIT_USAGE.  The context gets a --json
 * entry when @json is not NULL.
 */
gboolean admin_parse(GOptionContext *ctx, const GOptionEntry *entries,
                     gboolean *json, int *argc, char ***argv);
/* Print @root as pretty JSON on stdout. */
void admin_print_json(JsonNode *root);
/* Text from a file or a certificate, safe to print on a terminal:
 * valid UTF-8, control characters escaped. */
gchar *admin_printable(const gchar *text, gssize len);
/* A time as ISO 8601 UTC ("2026-11-22T05:02:05Z"), or "-" when @t < 0. */
gchar *admin_format_time(gint64 t);

/* The commands; each returns an exit status. */
int admin_cmd_modules(int argc, char **argv);
int admin_cmd_verify(int argc, char **argv);
int admin_cmd_install(int argc, char **argv);
int admin_cmd_trust(int argc, char **argv);
int admin_cmd_registrations(int argc, char **argv);
int admin_cmd_register(int argc, char **argv);
int admin_cmd_unregister(int argc, char **argv);
int admin_cmd_audit(int argc, char **argv);

G_END_DECLS

#endif /* VMAUGMENT_ADMIN_H */
