/*
 * The helper and its service manager: the listening socket systemd may
 * pass, and readiness notifications (systemd.c, docs/service.rst).
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef VMAUG_HELPER_SYSTEMD_H
#define VMAUG_HELPER_SYSTEMD_H

#include <glib.h>

/*
 * Take the service manager's state from the environment, once, and clear
 * it so that module processes never see it.  Returns the listening socket
 * systemd passed (socket activation), -1 without an error when it passed
 * none, or -1 with ERROR set when what it passed is not exactly one
 * listening unix stream socket.
 */
int systemd_take_environment(GError **error);

/* Send STATE (e.g. "READY=1") to the service manager, if there is one. */
void systemd_notify(const gchar *state);

#endif
