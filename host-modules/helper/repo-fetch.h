/*
 * vmaugment-helper: one package fetched from the configured repository
 * into a store (repo-fetch.c), for lifecycle.c.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef VMAUGMENT_REPO_FETCH_H
#define VMAUGMENT_REPO_FETCH_H

#include "helper.h"

typedef struct _RepoFetch RepoFetch;

/* The fetch ended: installed (@ok), or why not.  Called once, from the
 * main loop; the fetch is freed after it returns. */
typedef void (*RepoFetchDoneFunc)(gboolean ok, const gchar *reason,
                                  gpointer data);

/* Fetch @name @version ("" for the newest) into @store for @actor (the
 * device's name, for the log and audit). */
RepoFetch *repo_fetch_start(Helper *helper, VmaugStore *store,
                            const gchar *actor, const gchar *name,
                            const gchar *version, RepoFetchDoneFunc done,
                            gpointer data, GError **error);
/* Nobody needs it any more: stop the client; @done still runs. */
void repo_fetch_cancel(RepoFetch *fetch);

#endif /* VMAUGMENT_REPO_FETCH_H */
