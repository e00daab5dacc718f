/*
 * The command-line conventions every host tool follows (docs/cli.rst):
 * locale, --version, -v/--verbose, --json, messages "tool: what: why",
 * and one exit status (include/vmaugment/exit-status.h) for every error
 * of the libraries below the tools.  Trusts nothing; it only reports.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef VMAUGMENT_CLI_H
#define VMAUGMENT_CLI_H

#include <glib.h>
#include <json-glib/json-glib.h>

#include "vmaugment/exit-status.h"

G_BEGIN_DECLS

/*
 * First thing in main(): the user's locale (so that GLib's messages and
 * quotes print in it), the name messages start with, and GLib's program
 * name for --help.
 */
void vmaug_cli_init(const char *tool);
/* The tool's name, as vmaug_cli_init() set it. */
const char *vmaug_cli_tool(void);
/* The version of vmaugment, as --version prints it. */
const char *vmaug_cli_version(void);

/*
 * Adds --version and -v/--verbose to @ctx, and --json when @json is not
 * NULL.  @examples (lines without a trailing newline, may be NULL) become
 * the "Examples:" section of --help, followed by the exit statuses.
 */
void vmaug_cli_setup(GOptionContext *ctx, gboolean *json,
                     const char *const *examples);
/* The same for a daemon whose -v/--verbose is its own (a key of its
 * configuration file): --version and the examples only. */
void vmaug_cli_setup_daemon(GOptionContext *ctx, const char *const *examples);
/* The same, without --version when @version is FALSE (a command whose
 * --version names a module's version) and without -v when @verbose is
 * FALSE. */
void vmaug_cli_setup_full(GOptionContext *ctx, gboolean version,
                          gboolean verbose, gboolean *json,
                          const char *const *examples);
/*
 * Parses @argv.  Returns -1 when the tool goes on, else the exit status
 * to return at once: VMAUG_EXIT_OK after --version (printed) and
 * VMAUG_EXIT_USAGE after a usage error (reported).
 */
int vmaug_cli_parse(GOptionContext *ctx, int *argc, char ***argv);

/* Whether -v/--verbose was given (debug messages are then shown). */
gboolean vmaug_cli_verbose(void);

/*
 * "tool: usage: MESSAGE" and a pointer to --help on stderr; returns
 * VMAUG_EXIT_USAGE.
 */
int vmaug_cli_usage(const char *format, ...) G_GNUC_PRINTF(1, 2);
/* A GError meaning "bad command line", for code that reports errors. */
#define VMAUG_CLI_USAGE_ERROR G_OPTION_ERROR
#define VMAUG_CLI_USAGE_ERROR_CODE G_OPTION_ERROR_FAILED

/* The exit status for @error (docs/cli.rst, "Exit status"). */
int vmaug_cli_status(const GError *error);
/*
 * "tool: WHAT: why" on stderr (or "tool: why" when @what_format is NULL)
 * and returns vmaug_cli_status(@error).
 */
int vmaug_cli_fail(const GError *error, const char *what_format, ...)
    G_GNUC_PRINTF(2, 3);

/* @node as pretty JSON, one document, on stdout. */
void vmaug_cli_print_json(JsonNode *node);
/*
 * Ends the object @b is building with "status" (the word of @status, when
 * @b has none yet: pass NULL for @status_word) and, when @error is set,
 * "error"; prints it.  @b must be inside its top-level object.
 */
void vmaug_cli_print_report(JsonBuilder *b, const char *status_word,
                            const GError *error);
/* {"status": WORD, "error": MESSAGE} for @error on stdout. */
void vmaug_cli_print_failure(const GError *error);

/* The installation's defaults, one definition for every tool. */
const char *vmaug_cli_default_trust_dir(void);
const char *vmaug_cli_default_store_dir(void);
const char *vmaug_cli_default_helper_socket(void);

G_END_DECLS

#endif /* VMAUGMENT_CLI_H */
