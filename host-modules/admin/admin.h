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

#include "vmaug-cli.h"

G_BEGIN_DECLS

/* Exit status of every command (docs/cli.rst). */
#define ADMIN_EXIT_OK       VMAUG_EXIT_OK
#define ADMIN_EXIT_FAILED   VMAUG_EXIT_FAILURE
#define ADMIN_EXIT_USAGE    VMAUG_EXIT_USAGE
#define ADMIN_EXIT_REFUSED  VMAUG_EXIT_REFUSED  /* signature or policy */

/* The actor the store's audit log records for this tool. */
#define ADMIN_ACTOR "admin"

/* Set by "vmaugment-admin --json COMMAND ..." before the command. */
extern gboolean admin_global_json;

/* "vmaugment-admin: <message>" on stderr, and a JSON report of it on
 * stdout when the command was asked for JSON; returns @status. */
int admin_fail(int status, const gchar *format, ...) G_GNUC_PRINTF(2, 3);
/* Report @error and return its exit status (vmaug_cli_status()). */
int admin_fail_error(const GError *error);
/*
 * Parse a command's options, with the options every tool has
 * (vmaug_cli_setup()).  Returns FALSE when the command ends here: after a
 * usage error (reported) or --version; the caller returns
 * admin_parse_exit.  The context gets a --json entry when @json is not
 * NULL.
 */
extern int admin_parse_exit;
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
int admin_cmd_invoke(int argc, char **argv);

G_END_DECLS

#endif /* VMAUGMENT_ADMIN_H */
