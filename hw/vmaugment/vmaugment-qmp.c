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
#include "qapi/qapi-events-vmaugment.h"
#include "qobject/qdict.h"
#include "qobject/qjson.h"
#include "qemu/bswap.h"
#include "qemu/cutils.h"
#include "hw/qdev-core.h"
#include "hw/vmaugment/vmaugment.h"
#include "standard-headers/vmaugment/protocol-names.h"
#include "qom/object.h"

/* Entries a listing may return in all, whatever the helper claims. */
#define VMAUGMENT_QMP_LIST_MAX  4096

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

/* VMAugmentStart is the device's copy of VmaugmentImageStart. */
QEMU_BUILD_BUG_ON((int)VMAUGMENT_START_WAITING !=
                  (int)VMAUGMENT_IMAGE_START_WAITING ||
                  (int)VMAUGMENT_START_DONE !=
                  (int)VMAUGMENT_IMAGE_START_DONE ||
                  (int)VMAUGMENT_START_FAILED !=
                  (int)VMAUGMENT_IMAGE_START_FAILED);

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
        info->image = g_strdup(s->conf.image);
        info->image_start = (VmaugmentImageStart)s->start;
        info->has_image_start_duration_us = s->start_decided;
        info->image_start_duration_us = s->start_duration_us;
        info->image_start_message = g_strdup(s->start_message);
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
        g_autofree char *msg = vmaugment_helper_text(got->data,
                                                     MIN(got->len, 200));

        error_setg(errp, "vmaugment: the host helper answered: %s%s%s",
                   vmaug_proto_status(status) ?
                   vmaug_proto_status(status)->words : "unknown status",
                   *msg ? ": " : "", msg);
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
 * Fetch a whole listing, page by page.  @parse turns the entry at the
 * start of @avail bytes into a list element and appends it; it returns
 * the bytes the entry took, or 0 on anything malformed.
 */
typedef size_t VMAugmentParseFn(const uint8_t *entry, size_t avail,
                                void *tail, Error **errp);

static bool coroutine_fn vmaugment_list(const char *device, uint32_t what,
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
        size_t off;

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
            total > VMAUGMENT_QMP_LIST_MAX || start + count > total ||
            (count == 0 && start < total)) {
            goto malformed;
        }
        for (i = 0, off = sizeof(resp); i < count; i++) {
            size_t used = parse(got->data + off, got->len - off, tail, errp);

            if (!used) {
                return false;
            }
            off += used;
        }
        if (off != got->len) {
            goto malformed;
        }
        start += count;
    } while (start < total);
    return true;

malformed:
    error_setg(errp, "vmaugment: malformed listing from the host helper");
    return false;
}

/* A fixed-size entry must fit in what is left of the answer. */
static bool vmaugment_entry_fits(size_t size, size_t avail, Error **errp)
{
    if (avail < size) {
        error_setg(errp, "vmaugment: malformed listing from the host "
                   "helper");
        return false;
    }
    return true;
}

static size_t vmaugment_parse_module(const uint8_t *entry, size_t avail,
                                     void *opaque, Error **errp)
{
    VmaugmentModuleList ***tail = opaque;
    struct vmaug_module_info info;
    g_autoptr(VmaugmentModule) m = g_new0(VmaugmentModule, 1);
    uint32_t kind, state;

    if (!vmaugment_entry_fits(sizeof(info), avail, errp)) {
        return 0;
    }
    memcpy(&info, entry, sizeof(info));
    kind = le32_to_cpu(info.kind);
    state = le32_to_cpu(info.state);
    if (kind < VMAUG_KIND_UI || kind > VMAUG_KIND_SCANNER ||
        state < VMAUG_MODULE_STORED || state > VMAUG_MODULE_CRASHED) {
        error_setg(errp, "vmaugment: the host helper sent an unknown module "
                   "kind or state");
        return 0;
    }
    m->name = vmaugment_field(info.ref.name, sizeof(info.ref.name), errp);
    m->version = m->name ? vmaugment_field(info.ref.version,
                                           sizeof(info.ref.version), errp)
                         : NULL;
    if (!m->version) {
        return 0;
    }
    m->kind = kind - VMAUG_KIND_UI;
    m->state = state - VMAUG_MODULE_STORED;
    m->events = vmaugment_events_from_mask(le32_to_cpu(info.events));
    QAPI_LIST_APPEND(*tail, g_steal_pointer(&m));
    return sizeof(info);
}

static size_t vmaugment_parse_registration(const uint8_t *entry,
                                           size_t avail, void *opaque,
                                           Error **errp)
{
    VmaugmentRegistrationList ***tail = opaque;
    struct vmaug_registration reg;
    g_autoptr(VmaugmentRegistration) r = g_new0(VmaugmentRegistration, 1);

    if (!vmaugment_entry_fits(sizeof(reg), avail, errp)) {
        return 0;
    }
    memcpy(&reg, entry, sizeof(reg));
    r->name = vmaugment_field(reg.ref.name, sizeof(reg.ref.name), errp);
    r->version = r->name ? vmaugment_field(reg.ref.version,
                                           sizeof(reg.ref.version), errp)
                         : NULL;
    if (!r->version) {
        return 0;
    }
    r->events = vmaugment_events_from_mask(le32_to_cpu(reg.events));
    r->required = le32_to_cpu(reg.flags) & VMAUG_REG_F_REQUIRED;
    QAPI_LIST_APPEND(*tail, g_steal_pointer(&r));
    return sizeof(reg);
}

/* The sandbox pieces follow the VMAUG_SANDBOX_* bits. */
QEMU_BUILD_BUG_ON(VMAUG_SANDBOX_USER_NS !=
                  1u << VMAUGMENT_SANDBOX_PIECE_USER_NAMESPACE ||
                  VMAUG_SANDBOX_OWN_ID !=
                  1u << VMAUGMENT_SANDBOX_PIECE_OWN_ID ||
                  VMAUG_SANDBOX_NAMESPACES !=
                  1u << VMAUGMENT_SANDBOX_PIECE_NAMESPACES ||
                  VMAUG_SANDBOX_EMPTY_ROOT !=
                  1u << VMAUGMENT_SANDBOX_PIECE_EMPTY_ROOT ||
                  VMAUG_SANDBOX_NO_CAPS !=
                  1u << VMAUGMENT_SANDBOX_PIECE_NO_CAPABILITIES);

static size_t vmaugment_parse_sandbox(const uint8_t *entry, size_t avail,
                                      void *opaque, Error **errp)
{
    VmaugmentSandboxList ***tail = opaque;
    struct vmaug_sandbox_info info;
    g_autoptr(VmaugmentSandbox) sb = g_new0(VmaugmentSandbox, 1);
    VmaugmentSandboxPieceList **missing = &sb->missing;
    uint32_t state, bits;
    int i;

    if (!vmaugment_entry_fits(sizeof(info), avail, errp)) {
        return 0;
    }
    memcpy(&info, entry, sizeof(info));
    state = le32_to_cpu(info.state);
    /* 0: its process is starting, shown as not loaded yet. */
    if (state > VMAUG_MODULE_CRASHED) {
        error_setg(errp, "vmaugment: the host helper sent an unknown "
                   "sandbox state");
        return 0;
    }
    bits = le32_to_cpu(info.missing);
    if (bits >> VMAUGMENT_SANDBOX_PIECE__MAX) {
        error_setg(errp, "vmaugment: the host helper sent an unknown "
                   "sandbox piece");
        return 0;
    }
    sb->name = vmaugment_field(info.ref.name, sizeof(info.ref.name), errp);
    sb->version = sb->name ? vmaugment_field(info.ref.version,
                                             sizeof(info.ref.version), errp)
                           : NULL;
    if (!sb->version) {
        return 0;
    }
    sb->state = state ? state - VMAUG_MODULE_STORED :
                        VMAUGMENT_MODULE_STATE_STORED;
    sb->has_pid = info.pid != 0;
    sb->pid = le32_to_cpu(info.pid);
    sb->memory_limit = le64_to_cpu(info.memory_limit);
    sb->cpu_limit = le64_to_cpu(info.cpu_limit);
    sb->uptime_ms = le64_to_cpu(info.uptime_ms);
    sb->queued_calls = le32_to_cpu(info.queued_calls);
    sb->restarts = le32_to_cpu(info.restarts);
    sb->has_uid = info.pid != 0;
    sb->uid = le32_to_cpu(info.uid);
    for (i = 0; i < VMAUGMENT_SANDBOX_PIECE__MAX; i++) {
        if (bits & (1u << i)) {
            QAPI_LIST_APPEND(missing, i);
        }
    }
    QAPI_LIST_APPEND(*tail, g_steal_pointer(&sb));
    return sizeof(info);
}

/* A JSON object of at most VMAUG_UI_MAX_JSON bytes, padded to 8. */
static size_t vmaugment_parse_ui(const uint8_t *entry, size_t avail,
                                 void *opaque, Error **errp)
{
    VmaugmentUiElementList ***tail = opaque;
    struct vmaug_ui_entry hdr;
    g_autoptr(VmaugmentUiElement) ui = g_new0(VmaugmentUiElement, 1);
    g_autofree char *json = NULL;
    QObject *obj;
    size_t len, size;

    if (!vmaugment_entry_fits(sizeof(hdr), avail, errp)) {
        return 0;
    }
    memcpy(&hdr, entry, sizeof(hdr));
    len = le32_to_cpu(hdr.len);
    size = ROUND_UP(sizeof(hdr) + len, 8);
    if (len < 2 || len > VMAUG_UI_MAX_JSON || hdr.reserved || avail < size) {
        error_setg(errp, "vmaugment: malformed UI element from the host "
                   "helper");
        return 0;
    }
    ui->module = vmaugment_field(hdr.module, sizeof(hdr.module), errp);
    if (!ui->module) {
        return 0;
    }
    json = g_strndup((const char *)entry + sizeof(hdr), len);
    obj = strlen(json) == len ? qobject_from_json(json, NULL) : NULL;
    if (!qobject_to(QDict, obj)) {
        qobject_unref(obj);
        error_setg(errp, "vmaugment: the host helper sent a UI element "
                   "that is not a JSON object");
        return 0;
    }
    ui->element = obj;
    QAPI_LIST_APPEND(*tail, g_steal_pointer(&ui));
    return size;
}

VmaugmentModuleList *coroutine_fn
qmp_query_vmaugment_modules(const char *device, Error **errp)
{
    VmaugmentModuleList *head = NULL, **tail = &head;

    if (!vmaugment_list(device, VMAUG_LIST_MODULES, vmaugment_parse_module,
                        &tail, errp)) {
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
                        vmaugment_parse_registration, &tail, errp)) {
        qapi_free_VmaugmentRegistrationList(head);
        return NULL;
    }
    return head;
}

VmaugmentSandboxList *coroutine_fn
qmp_query_vmaugment_sandboxes(const char *device, Error **errp)
{
    VmaugmentSandboxList *head = NULL, **tail = &head;

    if (!vmaugment_list(device, VMAUG_LIST_SANDBOXES,
                        vmaugment_parse_sandbox, &tail, errp)) {
        qapi_free_VmaugmentSandboxList(head);
        return NULL;
    }
    return head;
}

VmaugmentUiElementList *coroutine_fn
qmp_query_vmaugment_ui(const char *device, Error **errp)
{
    VmaugmentUiElementList *head = NULL, **tail = &head;

    if (!vmaugment_list(device, VMAUG_LIST_UI, vmaugment_parse_ui, &tail,
                        errp)) {
        qapi_free_VmaugmentUiElementList(head);
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

/* ---- Events for the host owner ---- */

/* Tell the host owner (QMP) what happened to a module. */
static void vmaugment_module_change(VirtIOVMAugment *s, uint32_t type,
                                    const uint8_t *data, uint32_t len)
{
    static const struct {
        uint32_t type;
        VmaugmentModuleChange change;
    } changes[] = {
        { VMAUG_EVENT_MODULE_LOADED, VMAUGMENT_MODULE_CHANGE_LOADED },
        { VMAUG_EVENT_MODULE_UNLOADED, VMAUGMENT_MODULE_CHANGE_UNLOADED },
        { VMAUG_EVENT_MODULE_CRASHED, VMAUGMENT_MODULE_CHANGE_CRASHED },
        { VMAUG_EVENT_RESTART_REQUESTED,
          VMAUGMENT_MODULE_CHANGE_RESTART_REQUESTED },
        { VMAUG_EVENT_MODULE_REFUSED, VMAUGMENT_MODULE_CHANGE_REFUSED },
    };
    struct vmaug_module_ref ref;
    struct vmaug_restart restart;
    g_autofree char *path = NULL;
    g_autofree char *reason = NULL;
    bool has_restart = false;
    VmaugmentRestart scope = VMAUGMENT_RESTART_IMAGE;
    size_t i;

    for (i = 0; i < ARRAY_SIZE(changes); i++) {
        if (changes[i].type == type) {
            break;
        }
    }
    /* The helper's names must end inside their fields to be shown. */
    if (i == ARRAY_SIZE(changes) || len < sizeof(ref)) {
        return;
    }
    memcpy(&ref, data, sizeof(ref));
    if (!memchr(ref.name, 0, sizeof(ref.name)) ||
        !memchr(ref.version, 0, sizeof(ref.version))) {
        return;
    }
    if (type == VMAUG_EVENT_MODULE_REFUSED) {
        reason = vmaugment_helper_text(data + sizeof(ref),
                                       MIN(len - sizeof(ref),
                                           VMAUG_HOST_MESSAGE_MAX));
    }
    if (type == VMAUG_EVENT_RESTART_REQUESTED) {
        uint32_t what;

        if (len != sizeof(restart)) {
            return;
        }
        memcpy(&restart, data, sizeof(restart));
        what = le32_to_cpu(restart.what);
        if (what != VMAUG_RESTART_IMAGE && what != VMAUG_RESTART_HOST) {
            return;
        }
        has_restart = true;
        scope = what == VMAUG_RESTART_HOST ? VMAUGMENT_RESTART_HOST :
                                             VMAUGMENT_RESTART_IMAGE;
    }
    path = vmaugment_path(s);
    qapi_event_send_vmaugment_module(path, changes[i].change,
                                     (char *)ref.name, (char *)ref.version,
                                     reason, has_restart, scope);
}

/*
 * Tell the host owner (QMP) that the guest reported an offline update, as
 * the helper accepted and recorded it.
 */
static void vmaugment_servicing_event(VirtIOVMAugment *s,
                                      const uint8_t *data, uint32_t len)
{
    struct vmaug_servicing_report rep;
    g_autofree char *path = NULL;
    g_autofree char *message = NULL;
    uint32_t outcome;

    if (len < sizeof(rep) ||
        len > sizeof(rep) + VMAUG_SERVICING_MESSAGE_MAX) {
        return;
    }
    memcpy(&rep, data, sizeof(rep));
    outcome = le32_to_cpu(rep.outcome);
    /* The helper's strings must end inside their fields to be shown. */
    if (!memchr(rep.bundle, 0, sizeof(rep.bundle)) ||
        !memchr(rep.version, 0, sizeof(rep.version)) ||
        (outcome != VMAUG_SERVICING_CONFIRMED &&
         outcome != VMAUG_SERVICING_FAILED)) {
        return;
    }
    if (len > sizeof(rep)) {
        /* The guest wrote it: shown as helper text is. */
        message = vmaugment_helper_text(data + sizeof(rep),
                                        len - sizeof(rep));
    }
    path = vmaugment_path(s);
    qapi_event_send_vmaugment_servicing(path, (char *)rep.bundle,
                                        (char *)rep.version,
                                        outcome == VMAUG_SERVICING_CONFIRMED,
                                        le32_to_cpu(rep.boot), message);
}

void vmaugment_qmp_helper_event(VirtIOVMAugment *s, uint32_t type,
                                const uint8_t *data, uint32_t len)
{
    vmaugment_module_change(s, type, data, len);
    if (type == VMAUG_EVENT_SERVICING) {
        vmaugment_servicing_event(s, data, len);
    }
}
