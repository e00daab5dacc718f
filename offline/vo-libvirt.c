/*
 * Enumerating libvirt's domains for batch.  The connection is read-only:
 * we only need the domain list, each domain's state and its XML.  A disk
 * of a running domain is never opened, even though QEMU's image lock
 * would refuse us anyway, because a domain libvirt reports running may
 * use a lock manager (virtlockd) or a disk we cannot see locked.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#define G_LOG_DOMAIN "vmaugment-offline"

#include <string.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "vo-dl.h"
#include "vo-libvirt.h"

/*
 * libvirt is loaded when batch --libvirt runs, not linked: with the
 * libraries it brings (curl, Kerberos, LDAP, libssh, libnl, ...) it
 * would make every start of vmaugment-offline twice as slow
 * (docs/performance.md).
 */
#define VO_LIBVIRT_CALLS(X) \
    X(virConnectClose) \
    X(virConnectListAllDomains) \
    X(virConnectOpenReadOnly) \
    X(virDomainFree) \
    X(virDomainGetName) \
    X(virDomainGetXMLDesc) \
    X(virDomainIsActive) \
    X(virGetLastErrorMessage) \
    X(virSetErrorFunc)

static VO_DL_TABLE(VO_LIBVIRT_CALLS) vo_virt;

#define virConnectClose (*vo_virt.f.virConnectClose)
#define virConnectListAllDomains (*vo_virt.f.virConnectListAllDomains)
#define virConnectOpenReadOnly (*vo_virt.f.virConnectOpenReadOnly)
#define virDomainFree (*vo_virt.f.virDomainFree)
#define virDomainGetName (*vo_virt.f.virDomainGetName)
#define virDomainGetXMLDesc (*vo_virt.f.virDomainGetXMLDesc)
#define virDomainIsActive (*vo_virt.f.virDomainIsActive)
#define virGetLastErrorMessage (*vo_virt.f.virGetLastErrorMessage)
#define virSetErrorFunc (*vo_virt.f.virSetErrorFunc)

/* One <disk> of <devices>, as the domain XML describes it. */
typedef struct {
    char *type;
    char *device;
    char *format;
    char *source;
    char *target;
    gboolean readonly;
    gboolean shareable;
} VoLibvirtDisk;

typedef struct {
    GPtrArray *disks;       /* VoLibvirtDisk* */
    VoLibvirtDisk *cur;
    guint depth;
    guint disk_depth;       /* depth of the open <disk>, 0 if none */
} VoLibvirtParse;

static void vo_libvirt_disk_free(VoLibvirtDisk *d)
{
    g_free(d->type);
    g_free(d->device);
    g_free(d->format);
    g_free(d->source);
    g_free(d->target);
    g_free(d);
}

static const char *vo_libvirt_attr(const char **names, const char **values,
                                   const char *name)
{
    for (guint i = 0; names[i]; i++) {
        if (g_str_equal(names[i], name)) {
            return values[i];
        }
    }
    return NULL;
}

static void vo_libvirt_start(GMarkupParseContext *ctx, const char *name,
                             const char **names, const char **values,
                             gpointer data, GError **error)
{
    VoLibvirtParse *p = data;
    const GSList *stack = g_markup_parse_context_get_element_stack(ctx);

    p->depth++;
    /* Only /domain/devices/disk: <disk> also appears in snapshots. */
    if (p->depth == 3 && g_str_equal(name, "disk") && stack->next &&
        g_str_equal(stack->next->data, "devices")) {
        p->cur = g_new0(VoLibvirtDisk, 1);
        p->cur->type = g_strdup(vo_libvirt_attr(names, values, "type"));
        p->cur->device = g_strdup(vo_libvirt_attr(names, values, "device"));
        p->disk_depth = p->depth;
        g_ptr_array_add(p->disks, p->cur);
        return;
    }
    /* Children of the disk itself, not of its <backingStore>. */
    if (!p->cur || p->depth != p->disk_depth + 1) {
        return;
    }
    if (g_str_equal(name, "driver")) {
        g_free(p->cur->format);
        p->cur->format = g_strdup(vo_libvirt_attr(names, values, "type"));
    } else if (g_str_equal(name, "source")) {
        const char *src = vo_libvirt_attr(names, values, "file");

        if (!src) {
            src = vo_libvirt_attr(names, values, "dev");
        }
        g_free(p->cur->source);
        p->cur->source = g_strdup(src);
    } else if (g_str_equal(name, "target")) {
        g_free(p->cur->target);
        p->cur->target = g_strdup(vo_libvirt_attr(names, values, "dev"));
    } else if (g_str_equal(name, "readonly")) {
        p->cur->readonly = TRUE;
    } else if (g_str_equal(name, "shareable")) {
        p->cur->shareable = TRUE;
    }
}

static void vo_libvirt_end(GMarkupParseContext *ctx, const char *name,
                           gpointer data, GError **error)
{
    VoLibvirtParse *p = data;

    if (p->cur && p->depth == p->disk_depth) {
        p->cur = NULL;
        p->disk_depth = 0;
    }
    p->depth--;
}

static GPtrArray *vo_libvirt_disks(const char *xml, GError **error)
{
    static const GMarkupParser parser = {
        .start_element = vo_libvirt_start,
        .end_element = vo_libvirt_end,
    };
    VoLibvirtParse p = {
        .disks = g_ptr_array_new_with_free_func(
            (GDestroyNotify)vo_libvirt_disk_free),
    };
    g_autoptr(GMarkupParseContext) ctx = g_markup_parse_context_new(
        &parser, 0, &p, NULL);

    if (!g_markup_parse_context_parse(ctx, xml, -1, error) ||
        !g_markup_parse_context_end_parse(ctx, error)) {
        g_ptr_array_unref(p.disks);
        return NULL;
    }
    return p.disks;
}

/* Why a disk of an inactive domain is not serviced, or NULL if it is. */
static char *vo_libvirt_skip_reason(const VoLibvirtDisk *d)
{
    if (g_strcmp0(d->device, "disk") != 0) {
        return g_strdup_printf("%s device, not a disk",
                               d->device ? d->device : "unnamed");
    }
    if (g_strcmp0(d->type, "file") != 0) {
        return g_strdup_printf("%s disk, not file-backed",
                               d->type ? d->type : "untyped");
    }
    if (!d->source || !g_path_is_absolute(d->source)) {
        return g_strdup("no absolute source file");
    }
    if (d->readonly) {
        return g_strdup("read-only disk");
    }
    /* Another domain, perhaps a running one, may have it open. */
    if (d->shareable) {
        return g_strdup("shareable disk");
    }
    /* The format goes to qemu-img as an argument: a plain word only. */
    if (d->format && (!*d->format ||
                      strspn(d->format, "abcdefghijklmnopqrstuvwxyz0123456789")
                          != strlen(d->format))) {
        return g_strdup("unusable driver type");
    }
    return NULL;
}

/* Target order, as the guest enumerates one bus: vdz before vdaa. */
static gint vo_libvirt_target_cmp(gconstpointer a, gconstpointer b)
{
    const VoLibvirtDisk *x = *(VoLibvirtDisk *const *)a;
    const VoLibvirtDisk *y = *(VoLibvirtDisk *const *)b;
    const char *tx = x->target ? x->target : "";
    const char *ty = y->target ? y->target : "";

    if (strlen(tx) != strlen(ty)) {
        return strlen(tx) < strlen(ty) ? -1 : 1;
    }
    return strcmp(tx, ty);
}

static gboolean vo_libvirt_domain(virDomainPtr dom, GPtrArray *targets,
                                  GError **error)
{
    const char *name = virDomainGetName(dom);
    int active = virDomainIsActive(dom);
    g_autofree char *xml = NULL;
    g_autoptr(GPtrArray) disks = NULL;
    g_autoptr(GPtrArray) skipped = g_ptr_array_new();
    VoBatchTarget *guest = NULL;
    guint first = targets->len;
    char *raw;

    if (active < 0) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "%s: state: %s", name,
                    virGetLastErrorMessage());
        return FALSE;
    }
    /* Inactive: the definition that the next start uses.  Running: the
     * live one, only to name the disks we leave alone. */
    raw = virDomainGetXMLDesc(dom, active ? 0 : VIR_DOMAIN_XML_INACTIVE);
    if (!raw) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "%s: XML: %s", name,
                    virGetLastErrorMessage());
        return FALSE;
    }
    xml = g_strdup(raw);
    free(raw);
    disks = vo_libvirt_disks(xml, error);
    if (!disks) {
        g_prefix_error(error, "%s: ", name);
        return FALSE;
    }
    /* The guest's disks in the order it sees them: /dev/vdb1 in its
     * fstab is the second. */
    g_ptr_array_sort(disks, vo_libvirt_target_cmp);
    for (guint i = 0; i < disks->len; i++) {
        VoLibvirtDisk *d = disks->pdata[i];
        g_autofree char *why = vo_libvirt_skip_reason(d);
        /* No <driver type>: raw, as libvirt's QEMU driver defaults it;
         * probing would let the guest choose. */
        const char *format = d->format ? d->format : "raw";
        VoBatchTarget *t;

        /* Every serviceable disk is one guest with the first: its fstab
         * may mount any of them, and they are patched all or none. */
        if (!why && guest) {
            vo_batch_target_add_disk(guest, d->source, format, d->target);
            continue;
        }
        /* The one constructor: a target in no apt group yet. */
        t = vo_batch_target_new(d->source ? d->source : "");
        t->domain = g_strdup(name);
        t->disk = g_strdup(d->target ? d->target : "");
        t->format = g_strdup(format);
        if (why) {
            t->skip_status = g_strdup("skipped");
            t->skip_reason = g_steal_pointer(&why);
            t->aside = TRUE;
            g_ptr_array_add(skipped, t);
        } else {
            guest = t;
        }
    }
    /* The guest first, then what is not part of it, each in target
     * order: one entry for the disks serviced together. */
    if (guest) {
        g_ptr_array_add(targets, guest);
    }
    for (guint i = 0; i < skipped->len; i++) {
        g_ptr_array_add(targets, skipped->pdata[i]);
    }
    if (active) {
        for (guint i = first; i < targets->len; i++) {
            VoBatchTarget *t = targets->pdata[i];

            g_free(t->skip_status);
            g_free(t->skip_reason);
            t->skip_status = g_strdup("skipped-in-use");
            t->skip_reason = g_strdup_printf("domain %s is running", name);
        }
    }
    return TRUE;
}

static gint vo_libvirt_cmp(gconstpointer a, gconstpointer b)
{
    return strcmp(virDomainGetName(*(virDomainPtr *)a),
                  virDomainGetName(*(virDomainPtr *)b));
}

static void vo_libvirt_quiet(void *opaque, virErrorPtr err)
{
    /* Errors are reported through GError, once, not also on stderr. */
}

gboolean vo_libvirt_collect(const char *uri, GPtrArray *targets,
                            GError **error)
{
    virConnectPtr conn;
    virDomainPtr *doms = NULL;
    static void *lib;
    static const char *const names[] = VO_DL_NAMES(VO_LIBVIRT_CALLS);
    gboolean ok = TRUE;
    int n;

    if (!vo_dl_load(&lib, "libvirt.so.0", names, vo_virt.sym,
                    "batch --libvirt needs libvirt (Debian: libvirt0)",
                    error)) {
        return FALSE;
    }
    virSetErrorFunc(NULL, vo_libvirt_quiet);
    conn = virConnectOpenReadOnly(uri);
    if (!conn) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED, "libvirt %s: %s", uri,
                    virGetLastErrorMessage());
        return FALSE;
    }
    n = virConnectListAllDomains(conn, &doms, 0);
    if (n < 0) {
        g_set_error(error, VO_ERROR, VO_ERROR_FAILED,
                    "libvirt %s: list domains: %s", uri,
                    virGetLastErrorMessage());
        virConnectClose(conn);
        return FALSE;
    }
    qsort(doms, n, sizeof(*doms), vo_libvirt_cmp);
    for (int i = 0; i < n; i++) {
        if (ok && !vo_libvirt_domain(doms[i], targets, error)) {
            ok = FALSE;
        }
        virDomainFree(doms[i]);
    }
    free(doms);
    virConnectClose(conn);
    return ok;
}
