/*
 * vmaugment QMP commands
 *
 * The host owner's view of the vmaugment devices and of the modules their
 * helper runs.  Commands that need the helper send it the same requests a
 * guest would, from a coroutine, so the monitor waits without blocking the
 * main loop.  Everything the helper answers is checked as strictly as a
 * guest's input.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-vmaugment.h"
#include "qemu/bswap.h"
#include "qemu/cutils.h"
#include "hw/qdev-core.h"
#include "hw/vmaugment/vmaugment.h"
#include "qom/object.h"

/* Entries a listing may return in all, whatever the helper claims. */
#define VMAUGMENT_QMP_LIST_MAX  4096

static const char *const vmaugment_status_names[] = {
    [VMAUG_S_OK] = "ok",
    [VMAUG_S_INVALID] = "invalid request",
    [VMAUG_S_UNSUPPORTED] = "unsupported",
    [VMAUG_S_TOO_BIG] = "too big",
    [VMAUG_S_NO_SPACE] = "answer too big",
    [VMAUG_S_UNAVAILABLE] = "unavailable",
    [VMAUG_S_INTERRUPTED] = "interrupted",
    [VMAUG_S_NOT_FOUND] = "not found",
    [VMAUG_S_EXISTS] = "already exists",
    [VMAUG_S_DENIED] = "denied",
    [VMAUG_S_BUSY] = "busy",
    [VMAUG_S_HASH_MISMATCH] = "hash mismatch",
    [VMAUG_S_IO_ERROR] = "I/O error",
    [VMAUG_S_MODULE_FAILED] = "module failed",
    [VMAUG_S_TIMEOUT] = "timed out",
    [VMAUG_S_INTERNAL] = "internal error",
};

static int vmaugment_collect(Object *obj, void *opaque)
{
    GSList **list = opaque;

    if (object_dynamic_cast(obj, TYPE_VMAUGMENT) && DEVICE(obj)->realized) {
        *list = g_slist_prepend(*list, obj);
    }
    return 0;
}

static GSList *vmaugment_all(void)
{
    GSList *list = NULL;

    object_child_foreach_recursive(object_get_root(), vmaugment_collect,
                                   &list);
    return g_slist_reverse(list);
}

/* The proxy (vmaugment-pci) the user created, if any. */
static DeviceState *vmaugment_proxy(VirtIOVMAugment *s)
{
    BusState *bus = qdev_get_parent_bus(DEVICE(s));

    return bus ? bus->parent : NULL;
}

char *vmaugment_path(VirtIOVMAugment *s)
{
    DeviceState *proxy = vmaugment_proxy(s);

    return object_get_canonical_path(proxy ? OBJECT(proxy) : OBJECT(s));
}

static bool vmaugment_matches(VirtIOVMAugment *s, const char *device)
{
    DeviceState *proxy = vmaugment_proxy(s);
    g_autofree char *path = vmaugment_path(s);
    g_autofree char *own = object_get_canonical_path(OBJECT(s));

    return !strcmp(device, path) || !strcmp(device, own) ||
           (proxy && proxy->id && !strcmp(device, proxy->id)) ||
           (DEVICE(s)->id && !strcmp(device, DEVICE(s)->id));
}

static VirtIOVMAugment *vmaugment_find(const char *device, Error **errp)
{
    g_autoptr(GSList) all = vmaugment_all();
    GSList *l;

    if (!device) {
        if (!all) {
            error_setg(errp, "There is no vmaugment device");
            return NULL;
        }
        if (all->next) {
            error_setg(errp, "There are several vmaugment devices: "
                       "name one with 'device'");
            return NULL;
        }
        return VMAUGMENT(all->data);
    }
    for (l = all; l; l = l->next) {
        if (vmaugment_matches(VMAUGMENT(l->data), device)) {
            return VMAUGMENT(l->data);
        }
    }
    error_setg(errp, "Device '%s' is not a vmaugment device", device);
    return NULL;
}

VmaugmentInfoList *qmp_query_vmaugment(Error **errp)
{
    g_autoptr(GSList) all = vmaugment_all();
    VmaugmentInfoList *head = NULL, **tail = &head;
    GSList *l;

    for (l = all; l; l = l->next) {
        VirtIOVMAugment *s = VMAUGMENT(l->data);
        DeviceState *proxy = vmaugment_proxy(s);
        VmaugmentInfo *info = g_new0(VmaugmentInfo, 1);

        info->path = vmaugment_path(s);
        info->id = g_strdup(proxy && proxy->id ? proxy->id : DEVICE(s)->id);
        info->helper_connected = s->helper_ready;
        info->requests_in_flight = s->n_inflight;
        info->events_pending = s->n_events;
        info->event_mask = s->event_mask;
        info->store = g_strdup(s->conf.store);
        QAPI_LIST_APPEND(tail, info);
    }
    return head;
}

/*
 * Send one request and fail unless the helper answers VMAUG_S_OK.  The
 * answer's payload goes to @answer when the caller wants it.
 */
static bool coroutine_fn vmaugment_qmp_call(const char *device,
                                            uint16_t opcode,
                                            const void *payload,
                                            uint32_t len,
                                            GByteArray **answer,
                                            Error **errp)
{
    VirtIOVMAugment *s = vmaugment_find(device, errp);
    g_autoptr(GByteArray) got = NULL;
    int status;

    if (!s) {
        return false;
    }
    status = vmaugment_admin_call(s, opcode, payload, len, &got, errp);
    if (status < 0) {
        return false;
    }
    if (status != VMAUG_S_OK) {
        /* An error's payload is a message; show it, cut and sanitized. */
        g_autofree char *msg = g_strndup((char *)got->data,
                                         MIN(got->len, 200));

        g_strcanon(msg, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                   "0123456789 .,:;_-+/()'@=", '?');
        error_setg(errp, "vmaugment: the host helper answered: %s%s%s",
                   status <= VMAUG_S_MAX ? vmaugment_status_names[status] :
                   "unknown status", *msg ? ": " : "", msg);
        return false;
    }
    if (answer) {
        *answer = g_steal_pointer(&got);
    }
    return true;
}

static bool vmaugment_fill_ref(struct vmaug_module_ref *ref, const char *name,
                               const char *version, Error **errp)
{
    memset(ref, 0, sizeof(*ref));
    if (!*name || strlen(name) >= sizeof(ref->name)) {
        error_setg(errp, "'name' must have 1 to %zu bytes",
                   sizeof(ref->name) - 1);
        return false;
    }
    if (version && strlen(version) >= sizeof(ref->version)) {
        error_setg(errp, "'version' must have at most %zu bytes",
                   sizeof(ref->version) - 1);
        return false;
    }
    pstrcpy((char *)ref->name, sizeof(ref->name), name);
    pstrcpy((char *)ref->version, sizeof(ref->version), version ?: "");
    return true;
}

/* A fixed string field from the helper, which must end inside it. */
static char *vmaugment_field(const uint8_t *field, size_t size, Error **errp)
{
    if (!memchr(field, 0, size)) {
        error_setg(errp, "vmaugment: the host helper sent an unterminated "
                   "name");
        return NULL;
    }
    return g_strdup((const char *)field);
}

static VmaugmentLifecycleEventList *vmaugment_events_from_mask(uint32_t mask)
{
    VmaugmentLifecycleEventList *head = NULL, **tail = &head;
    int i;

    for (i = 0; i < VMAUGMENT_LIFECYCLE_EVENT__MAX; i++) {
        /* The lifecycle enum follows VMAUG_EVENT_HOST_START..RESUME. */
        if (mask & VMAUG_EVENT_MASK(VMAUG_EVENT_HOST_START + i)) {
            QAPI_LIST_APPEND(tail, i);
        }
    }
    return head;
}

static uint32_t vmaugment_mask_from_events(VmaugmentLifecycleEventList *l)
{
    uint32_t mask = 0;

    for (; l; l = l->next) {
        mask |= VMAUG_EVENT_MASK(VMAUG_EVENT_HOST_START + l->value);
    }
    return mask;
}

/*
 * Fetch a whole listing, page by page.  @parse turns one entry into a
 * list element and appends it; it fails on anything malformed.
 */
typedef bool VMAugmentParseFn(const uint8_t *entry, void *tail, Error **errp);

static bool coroutine_fn vmaugment_list(const char *device, uint32_t what,
                                        size_t entry_size,
                                        VMAugmentParseFn *parse, void *tail,
                                        Error **errp)
{
    uint32_t start = 0, total;

    do {
        struct vmaug_list_req req = {
            .what = cpu_to_le32(what),
            .start = cpu_to_le32(start),
        };
        struct vmaug_list_resp resp;
        g_autoptr(GByteArray) got = NULL;
        uint32_t count, i;

        if (!vmaugment_qmp_call(device, VMAUG_OP_LIST, &req, sizeof(req),
                                &got, errp)) {
            return false;
        }
        if (got->len < sizeof(resp)) {
            error_setg(errp, "vmaugment: short listing from the host helper");
            return false;
        }
        memcpy(&resp, got->data, sizeof(resp));
        count = le32_to_cpu(resp.count);
        total = le32_to_cpu(resp.total);
        if (count > VMAUG_LIST_MAX_ENTRIES ||
            got->len != sizeof(resp) + count * entry_size ||
            total > VMAUGMENT_QMP_LIST_MAX || start + count > total ||
            (count == 0 && start < total)) {
            error_setg(errp, "vmaugment: malformed listing from the host "
                       "helper");
            return false;
        }
        for (i = 0; i < count; i++) {
            if (!parse(got->data + sizeof(resp) + i * entry_size, tail,
                       errp)) {
                return false;
            }
        }
        start += count;
    } while (start < total);
    return true;
}

static bool vmaugment_parse_module(const uint8_t *entry, void *opaque,
                                   Error **errp)
{
    VmaugmentModuleList ***tail = opaque;
    struct vmaug_module_info info;
    g_autoptr(VmaugmentModule) m = g_new0(VmaugmentModule, 1);
    uint32_t kind, state;

    memcpy(&info, entry, sizeof(info));
    kind = le32_to_cpu(info.kind);
    state = le32_to_cpu(info.state);
    if (kind < VMAUG_KIND_UI || kind > VMAUG_KIND_SCANNER ||
        state < VMAUG_MODULE_STORED || state > VMAUG_MODULE_CRASHED) {
        error_setg(errp, "vmaugment: the host helper sent an unknown module "
                   "kind or state");
        return false;
    }
    m->name = vmaugment_field(info.ref.name, sizeof(info.ref.name), errp);
    m->version = m->name ? vmaugment_field(info.ref.version,
                                           sizeof(info.ref.version), errp)
                         : NULL;
    if (!m->version) {
        return false;
    }
    m->kind = kind - VMAUG_KIND_UI;
    m->state = state - VMAUG_MODULE_STORED;
    m->events = vmaugment_events_from_mask(le32_to_cpu(info.events));
    QAPI_LIST_APPEND(*tail, g_steal_pointer(&m));
    return true;
}

static bool vmaugment_parse_registration(const uint8_t *entry, void *opaque,
                                         Error **errp)
{
    VmaugmentRegistrationList ***tail = opaque;
    struct vmaug_registration reg;
    g_autoptr(VmaugmentRegistration) r = g_new0(VmaugmentRegistration, 1);

    memcpy(&reg, entry, sizeof(reg));
    r->name = vmaugment_field(reg.ref.name, sizeof(reg.ref.name), errp);
    r->version = r->name ? vmaugment_field(reg.ref.version,
                                           sizeof(reg.ref.version), errp)
                         : NULL;
    if (!r->version) {
        return false;
    }
    r->events = vmaugment_events_from_mask(le32_to_cpu(reg.events));
    r->required = le32_to_cpu(reg.flags) & VMAUG_REG_F_REQUIRED;
    QAPI_LIST_APPEND(*tail, g_steal_pointer(&r));
    return true;
}

VmaugmentModuleList *coroutine_fn
qmp_query_vmaugment_modules(const char *device, Error **errp)
{
    VmaugmentModuleList *head = NULL, **tail = &head;

    if (!vmaugment_list(device, VMAUG_LIST_MODULES,
                        sizeof(struct vmaug_module_info),
                        vmaugment_parse_module, &tail, errp)) {
        qapi_free_VmaugmentModuleList(head);
        return NULL;
    }
    return head;
}

VmaugmentRegistrationList *coroutine_fn
qmp_query_vmaugment_registrations(const char *device, Error **errp)
{
    VmaugmentRegistrationList *head = NULL, **tail = &head;

    if (!vmaugment_list(device, VMAUG_LIST_REGISTRATIONS,
                        sizeof(struct vmaug_registration),
                        vmaugment_parse_registration, &tail, errp)) {
        qapi_free_VmaugmentRegistrationList(head);
        return NULL;
    }
    return head;
}

void coroutine_fn qmp_vmaugment_register(const char *device, const char *name,
                                         const char *version,
                                         VmaugmentLifecycleEventList *events,
                                         bool has_required, bool required,
                                         Error **errp)
{
    struct vmaug_registration reg = {
        .events = cpu_to_le32(vmaugment_mask_from_events(events)),
        .flags = cpu_to_le32(has_required && required ?
                             VMAUG_REG_F_REQUIRED : 0),
    };

    if (vmaugment_fill_ref(&reg.ref, name, version, errp)) {
        vmaugment_qmp_call(device, VMAUG_OP_REGISTER, &reg, sizeof(reg),
                           NULL, errp);
    }
}

static void coroutine_fn vmaugment_ref_call(const char *device,
                                            uint16_t opcode, const char *name,
                                            const char *version, Error **errp)
{
    struct vmaug_module_ref ref;

    if (vmaugment_fill_ref(&ref, name, version, errp)) {
        vmaugment_qmp_call(device, opcode, &ref, sizeof(ref), NULL, errp);
    }
}

void coroutine_fn qmp_vmaugment_unregister(const char *device,
                                           const char *name,
                                           const char *version, Error **errp)
{
    vmaugment_ref_call(device, VMAUG_OP_UNREGISTER, name, version, errp);
}

void coroutine_fn qmp_vmaugment_unload(const char *device, const char *name,
                                       const char *version, Error **errp)
{
    vmaugment_ref_call(device, VMAUG_OP_UNLOAD, name, version, errp);
}
