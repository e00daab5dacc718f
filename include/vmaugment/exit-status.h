/*
 * The exit statuses of every vmaugment command-line tool, host and guest
 * alike, and the word a JSON report gives each failure.  The table of
 * docs/cli.rst is normative; tests/cli reads it and checks every tool
 * against it.  Plain C without GLib, so that the guest CLI, which links
 * nothing but libvmaugment, uses the same codes.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef VMAUGMENT_EXIT_STATUS_H
#define VMAUGMENT_EXIT_STATUS_H

/* Done, or nothing needed doing (already applied, already stored). */
#define VMAUG_EXIT_OK               0
/* The operation failed: a missing or unreadable file, malformed input,
 * I/O, no answer. */
#define VMAUG_EXIT_FAILURE          1
/* The command line is wrong: an unknown option or command, a missing or
 * extra argument.  Nothing was done. */
#define VMAUG_EXIT_USAGE            2
/* The input is sound and trusted but does not apply to its target (a
 * bundle whose rules do not hold for the image). */
#define VMAUG_EXIT_NOT_APPLICABLE   3
/* Refused by signature or policy: an unknown signer, a bad signature, an
 * expired or revoked certificate, a rollback, a limit of the policy. */
#define VMAUG_EXIT_REFUSED          4

/* The "status" word of a JSON report for exit status @status. */
static inline const char *vmaug_exit_status_word(int status)
{
    switch (status) {
    case VMAUG_EXIT_OK:
        return "ok";
    case VMAUG_EXIT_USAGE:
        return "usage";
    case VMAUG_EXIT_NOT_APPLICABLE:
        return "not-applicable";
    case VMAUG_EXIT_REFUSED:
        return "refused";
    default:
        return "error";
    }
}

#endif /* VMAUGMENT_EXIT_STATUS_H */
