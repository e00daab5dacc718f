/*
 * vmaugment-helper: the modules of one VM.
 *
 * Which modules the VM has, loading one when asked (verified again at
 * every load), refusals the guest is told of, and what a module's info
 * says.  Names and versions reaching here were checked by the caller
 * (device.c, lifecycle.c); packages are verified by the store
 * (docs/modules.rst is normative for loading and refusals).
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "registrations.h"
#include "session.h"

/* How long modules of a VM that stopped may run their stop handlers. */
#define SESSION_FINISH_MS       3000
/* Bytes of reason in a VMAUG_EVENT_MODULE_REFUSED. */
#define SESSION_MAX_REFUSAL_TEXT 200

Session *session_new(Helper *helper, VmaugStore *store, const gchar *name,
                     const gchar *image, const ModuleOps *ops,
                     gpointer owner)
{
    Session *s = g_new0(Session, 1);

    s->helper = helper;
    s->ops = ops;
    s->owner = owner;
    s->store = store;
    s->name = g_strdup(name);
    s->image = g_strdup(image);
    s->area = vmaug_vm_area_new(store, image, name, &helper->vm_quota);
    s->modules = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                       NULL);
    return s;
}

void session_free(Session *s)
{
    GHashTableIter it;
    Module *m;

    if (s == NULL) {
        return;
    }
    g_hash_table_iter_init(&it, s->modules);
    while (g_hash_table_iter_next(&it, NULL, (gpointer *)&m)) {
        g_hash_table_iter_remove(&it);
        if (s->stop_seen && !s->helper->quitting) {
            /* The VM stopped in order: its stop handlers may finish,
             * then each module gets its fini. */
            module_finish(m, SESSION_FINISH_MS);
        } else {
            /* The VM is gone: nobody waits for a graceful fini. */
            module_stop(m, TRUE);
        }
    }
    /* Its modules keep their own references while they finish. */
    vmaug_vm_area_unref(s->area);
    g_hash_table_unref(s->modules);
    g_free(s->name);
    g_free(s->image);
    g_free(s);
}

void session_manifests_refresh(Session *s)
{
    Helper *h = s->helper;
    guint64 generation = vmaug_trust_store_refresh(h->trust);

    if (generation != h->manifests_generation) {
        g_hash_table_remove_all(h->manifests);
        g_hash_table_remove_all(h->refusals);
        h->manifests_generation = generation;
    }
}

/*
 * What a stored package says about itself, for QUERY and LIST.  Verified
 * once per content and trust store: a refusal is remembered too (and
 * audited once), or every listing would verify and audit every refused
 * package again; both are forgotten when the trust directory changes
 * (session_manifests_refresh()).  LOAD verifies afresh whatever is
 * remembered here.
 */
const VmaugManifest *session_manifest(Session *s, const VmaugStoreEntry *e,
                                      GError **error)
{
    Helper *h = s->helper;
    VmaugManifest *m = g_hash_table_lookup(h->manifests, e->sha256);
    const GError *refused = g_hash_table_lookup(h->refusals, e->sha256);
    g_autoptr(VmaugPackage) pkg = NULL;
    g_autoptr(GError) local = NULL;

    if (m != NULL) {
        return m;
    }
    if (refused != NULL) {
        g_propagate_error(error, g_error_copy(refused));
        return NULL;
    }
    pkg = vmaug_store_open_package(s->store, e->name, e->version, s->name,
                                   NULL, &local);
    if (pkg == NULL) {
        g_hash_table_insert(h->refusals, g_strdup(e->sha256),
                            g_error_copy(local));
        g_propagate_error(error, g_steal_pointer(&local));
        return NULL;
    }
    m = g_steal_pointer(&pkg->manifest);
    g_hash_table_insert(h->manifests, g_strdup(e->sha256), m);
    return m;
}

void session_fill_info(Session *s, struct vmaug_module_info *info,
                       const gchar *name, const gchar *version,
                       const VmaugManifest *m)
{
    Module *mod = g_hash_table_lookup(s->modules, name);

    module_info_fill(info, name, version, m,
                     mod != NULL && g_strcmp0(mod->version, version) == 0 &&
                     mod->state != 0 ? mod->state : VMAUG_MODULE_STORED);
}

void session_event_refused(Session *s, const gchar *name,
                           const gchar *version, const gchar *why)
{
    struct vmaug_module_ref ref = { 0 };
    g_autofree gchar *text = g_utf8_make_valid(why, -1);
    gsize len = strlen(text);

    g_strlcpy((gchar *)ref.name, name, sizeof(ref.name));
    g_strlcpy((gchar *)ref.version, version != NULL ? version : "",
              sizeof(ref.version));
    if (len > SESSION_MAX_REFUSAL_TEXT) {
        /* Cut at a character boundary. */
        len = g_utf8_offset_to_pointer(text, g_utf8_strlen(text,
                                       SESSION_MAX_REFUSAL_TEXT)) - text;
    }
    s->ops->event(s->owner, VMAUG_EVENT_MODULE_REFUSED, &ref, sizeof(ref),
                  text, len);
}

/* Refused by signature, trust, policy or rollback (not merely absent). */
static gboolean session_is_refusal(const GError *error)
{
    return error->domain == VMAUG_TRUST_ERROR ||
           (error->domain == VMAUG_HOST_ERROR &&
            (error->code == VMAUG_HOST_ERROR_DENIED ||
             error->code == VMAUG_HOST_ERROR_HASH_MISMATCH ||
             error->code == VMAUG_HOST_ERROR_INVALID));
}

static VmaugPackage *session_open_checked(Session *s, const gchar *name,
                                          const gchar *version,
                                          GError **error)
{
    /* An older version stays stored but may not run again: that is
     * what rollback protection is for. */
    if (!vmaug_store_check_version(s->store, name, version, s->name,
                                   error)) {
        return NULL;
    }
    /* Verified again at every load: trust may have changed since the
     * upload, and the file could have been altered. */
    return vmaug_store_open_package(s->store, name, version, s->name,
                                    "load", error);
}

/* Take @m out of the VM and stop it; what it was goes into @ref. */
static void session_drop(Session *s, Module *m, struct vmaug_module_ref *ref)
{
    module_ref_fill(m, ref);
    g_hash_table_remove(s->modules, m->name);
    module_stop(m, FALSE);
}

Module *session_ensure_loaded(Session *s, const gchar *name,
                              const gchar *version, GError **error)
{
    g_autoptr(VmaugStoreEntry) e = NULL;
    g_autoptr(VmaugPackage) pkg = NULL;
    g_autoptr(GError) local = NULL;
    Module *old = g_hash_table_lookup(s->modules, name);
    guint restarts = 0;
    ModuleEnv env = {
        .store = s->store,
        .area = s->area,
        .vm_name = s->name,
    };
    Module *m;

    e = vmaug_store_lookup(s->store, name, version, error);
    if (e == NULL) {
        return NULL;
    }
    if (old != NULL && g_strcmp0(old->version, e->version) == 0 &&
        old->state != VMAUG_MODULE_CRASHED) {
        return old;
    }
    pkg = session_open_checked(s, name, e->version, &local);
    if (pkg == NULL) {
        if (session_is_refusal(local)) {
            session_event_refused(s, name, e->version, local->message);
        }
        g_propagate_error(error, g_steal_pointer(&local));
        return NULL;
    }
    if (old != NULL) {
        restarts = old->state == VMAUG_MODULE_CRASHED ? old->restarts + 1 :
                   old->restarts;
    }
    if (old != NULL) {
        /* Swapping versions: the old one goes first, QEMU stays. */
        struct vmaug_module_ref ref;

        session_drop(s, old, &ref);
        s->ops->event(s->owner, VMAUG_EVENT_MODULE_UNLOADED, &ref,
                      sizeof(ref), NULL, 0);
    }
    m = module_start(s->helper, &env, pkg, s->ops, s->owner, error);
    if (m == NULL) {
        return NULL;
    }
    m->restarts = restarts;
    g_hash_table_insert(s->modules, g_strdup(m->name), m);
    return m;
}

gboolean session_has_module(Session *s, const gchar *module, GError **error)
{
    g_autoptr(VmaugRegSet) set = NULL;

    if (g_hash_table_contains(s->modules, module)) {
        return TRUE;
    }
    set = vmaug_vm_area_regs_load(s->area, NULL);
    if (set != NULL && vmaug_reg_set_find(set, module) != NULL) {
        return TRUE;
    }
    g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_NOT_FOUND,
                "%s is neither loaded nor registered by this VM", module);
    return FALSE;
}

gboolean session_unload(Session *s, const gchar *name, const gchar *version,
                        struct vmaug_module_ref *was, GError **error)
{
    Module *m = g_hash_table_lookup(s->modules, name);

    if (m == NULL || (*version != '\0' &&
                      g_strcmp0(version, m->version) != 0)) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_NOT_FOUND,
                    "%s is not loaded", name);
        return FALSE;
    }
    session_drop(s, m, was);
    return TRUE;
}
