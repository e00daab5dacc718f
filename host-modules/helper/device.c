/*
 * vmaugment-helper: one device connection (one VM), speaking the "Host
 * helper link" of the protocol header.  Every message is hostile until
 * checked: sizes first, then fixed strings, then meaning.
 *
 * The top layer: requests go to the VM's session (session.c) and its
 * modules, lifecycle events to lifecycle.c; both answer through the
 * callbacks given here.  docs/protocol.rst is normative.
 *
 * Copyright (c) vmaugment contributors
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "device.h"
#include "vmaugment/protocol-rules.h"
#include "registrations.h"
#include "servicing.h"

/* Bit 63 of a tag marks a request of the host owner (QMP), not the guest. */
#define DEVICE_ADMIN_TAG        (G_GUINT64_CONSTANT(1) << 63)
/* A VM's durable writes waiting beside the one under way, the guest's
 * and the host owner's each: far more than a guest that waits for its
 * answers has, and each takes two syncs. */
#define DEVICE_MAX_WRITES       32
/* Error messages returned to the guest are short. */
#define DEVICE_MAX_ERROR_TEXT   200

static guint64 *tag_dup(guint64 tag)
{
    return g_memdup2(&tag, sizeof(tag));
}

/* ---- Sending ---- */

/* A response on the link, whatever waits for @tag. */
static void device_send_response(Device *dev, guint64 tag, guint16 status,
                                 const void *data, gsize len)
{
    struct virtio_vmaugment_resp resp = { 0 };

    if (dev->closed) {
        return;
    }
    if (len > VMAUG_MAX_RESP_PAYLOAD) {
        /* The device takes a response only with as many bytes as its
         * header says, and at most this many: anything else would drop
         * the VM's link. */
        g_warning("device %s: an answer of %" G_GSIZE_FORMAT " bytes does "
                  "not fit a response", dev->name, len);
        status = VMAUG_S_INTERNAL;
        len = 0;
    }
    resp.len = GUINT32_TO_LE((guint32)len);
    resp.status = GUINT16_TO_LE(status);
    /* A guest's request came on the channel when the device took it. */
    if (dev->use_channel && !(tag & DEVICE_ADMIN_TAG)) {
        vmaug_link_send(dev->channel, VMAUG_HOST_RESPONSE, tag, &resp,
                        sizeof(resp), data, len, -1);
        helper_poll_arm(&dev->helper->poll);
    } else {
        vmaug_link_send(dev->link, VMAUG_HOST_RESPONSE, tag, &resp,
                        sizeof(resp), data, len, -1);
    }
}

/* The answer to the request of @tag, which is then no longer in flight. */
static void device_reply(Device *dev, guint64 tag, guint16 status,
                  const void *data, gsize len)
{
    if (g_hash_table_remove(dev->cancelled, &tag)) {
        return;     /* the guest will never see it */
    }
    g_hash_table_remove(dev->pending, &tag);
    device_send_response(dev, tag, status, data, len);
}

static void device_reply_error(Device *dev, guint64 tag, const GError *error)
{
    g_autofree gchar *msg = g_utf8_make_valid(error->message, -1);
    gsize len = strlen(msg);

    if (len > DEVICE_MAX_ERROR_TEXT) {
        /* Cut at a character boundary. */
        len = g_utf8_offset_to_pointer(msg, g_utf8_strlen(msg,
                                       DEVICE_MAX_ERROR_TEXT)) - msg;
    }
    device_reply(dev, tag, vmaug_host_error_status(error), msg, len);
}

static void device_event(Device *dev, guint32 type, const void *a, gsize alen,
                  const void *b, gsize blen)
{
    struct virtio_vmaugment_event ev = { 0 };

    if (dev->closed || !dev->hello ||
        alen + blen > VMAUG_MAX_EVENT_PAYLOAD) {
        return;
    }
    ev.type = GUINT32_TO_LE(type);
    ev.len = GUINT32_TO_LE((guint32)(alen + blen));
    {
        g_autofree guint8 *body = g_malloc(sizeof(ev) + alen + blen);

        memcpy(body, &ev, sizeof(ev));
        if (alen > 0) {
            memcpy(body + sizeof(ev), a, alen);
        }
        if (blen > 0) {
            memcpy(body + sizeof(ev) + alen, b, blen);
        }
        vmaug_link_send(dev->link, VMAUG_HOST_EVENT, 0, body,
                        sizeof(ev) + alen + blen, NULL, 0, -1);
    }
}

/* What modules answer and tell their VM (module.h). */
static void device_module_reply(gpointer owner, guint64 tag, guint16 status,
                                const void *data, gsize len)
{
    device_reply(owner, tag, status, data, len);
}

static void device_module_event(gpointer owner, guint32 type, const void *a,
                                gsize alen, const void *b, gsize blen)
{
    device_event(owner, type, a, alen, b, blen);
}

/* The access in flight ends: whoever waits hears how, once. */
static void device_access_end(Device *dev, guint16 status, const gchar *why)
{
    ModuleImageAccessFunc done = dev->access_done;

    if (done == NULL) {
        return;
    }
    dev->access_done = NULL;
    dev->access_op = 0;
    dev->access_tag = 0;
    done(status, why, dev->access_data);
}

static gboolean device_access_busy(gpointer data)
{
    Device *dev = data;

    dev->access_idle = 0;
    device_access_end(dev, VMAUG_S_BUSY, "the image start is not held");
    return G_SOURCE_REMOVE;
}

/*
 * A module's broker (image-quarantine) asks for the image: only while the
 * device holds the image start, with that start's tag, which the device
 * checks again (docs/protocol.rst, "Image access").
 */
static void device_module_image_access(gpointer owner, guint32 op,
                                       ModuleImageAccessFunc done,
                                       gpointer data)
{
    Device *dev = owner;
    struct vmaug_host_image_access req = { .op = GUINT32_TO_LE(op) };
    guint64 tag = dev->closed ? 0 :
                  lifecycle_engine_held_start(dev->lifecycle);

    if (dev->access_done != NULL || tag == 0) {
        /* Answered later, as the device's answer would be. */
        if (dev->access_done != NULL) {
            done(VMAUG_S_BUSY, "another image access is in flight", data);
            return;
        }
        dev->access_done = done;
        dev->access_data = data;
        dev->access_idle = g_idle_add(device_access_busy, dev);
        return;
    }
    dev->access_op = op;
    dev->access_tag = tag;
    dev->access_done = done;
    dev->access_data = data;
    vmaug_link_send(dev->link, VMAUG_HOST_IMAGE_ACCESS, tag, &req,
                    sizeof(req), NULL, 0, -1);
}

static const ModuleOps device_module_ops = {
    .reply = device_module_reply,
    .event = device_module_event,
    .image_access = device_module_image_access,
};

/* The device's answer to our IMAGE_ACCESS: for what we asked, or a
 * protocol error. */
static gboolean device_access_answer(Device *dev, guint64 tag,
                                     const guint8 *data, guint32 len,
                                     const gchar **why)
{
    struct vmaug_host_image_access_done done;
    g_autofree gchar *text = NULL;

    if (len < sizeof(done) ||
        len - sizeof(done) > VMAUG_HOST_MESSAGE_MAX) {
        *why = "IMAGE_ACCESS_DONE of a wrong size";
        return FALSE;
    }
    memcpy(&done, data, sizeof(done));
    if (dev->access_done == NULL || dev->access_tag == 0 ||
        tag != dev->access_tag ||
        GUINT32_FROM_LE(done.op) != dev->access_op) {
        *why = "IMAGE_ACCESS_DONE for nothing asked";
        return FALSE;
    }
    /* QEMU's words reach logs and the module: one valid line. */
    text = g_utf8_make_valid((const gchar *)data + sizeof(done),
                             len - sizeof(done));
    g_strdelimit(text, "\n\r\t", ' ');
    device_access_end(dev, GUINT16_FROM_LE(done.status),
                      *text != '\0' ? text : NULL);
    return TRUE;
}

static void device_lifecycle_answer(gpointer owner, guint64 tag,
                                    const struct vmaug_host_lifecycle_done
                                    *done, const gchar *msg, gsize len)
{
    Device *dev = owner;

    if (!dev->closed) {
        vmaug_link_send(dev->link, VMAUG_HOST_LIFECYCLE_DONE, tag, done,
                        sizeof(*done), msg, len, -1);
    }
}

/* ---- Registrations: the image's sidecar or the VM's area ---- */

static VmaugRegSet *device_regs(Device *dev, GError **error)
{
    return vmaug_vm_area_regs_load(dev->session->area, error);
}

/* ---- Requests ---- */

typedef struct {
    gchar *name;
    gchar *version;                 /* "" for the newest */
} DeviceRef;

static void device_ref_clear(DeviceRef *r)
{
    g_free(r->name);
    g_free(r->version);
}

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(DeviceRef, device_ref_clear)

static gboolean device_parse_ref(const struct vmaug_module_ref *raw,
                                 DeviceRef *out, GError **error)
{
    out->name = vmaug_fixed_string(raw->name, sizeof(raw->name));
    out->version = vmaug_fixed_string(raw->version, sizeof(raw->version));
    if (out->name == NULL || out->version == NULL ||
        !vmaug_name_is_valid(out->name) ||
        (*out->version != '\0' && !vmaug_version_is_valid(out->version))) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "invalid module name or version");
        return FALSE;
    }
    return TRUE;
}

static void device_defer(Device *dev, guint64 tag)
{
    g_hash_table_add(dev->pending, tag_dup(tag));
}

static gboolean device_query(Device *dev, guint64 tag, const guint8 *p,
                             guint32 len, GError **error)
{
    g_auto(DeviceRef) ref = { 0 };
    g_autoptr(VmaugStoreEntry) e = NULL;
    struct vmaug_module_info info;
    const VmaugManifest *m;

    if (!device_parse_ref((const void *)p, &ref, error)) {
        return FALSE;
    }
    e = vmaug_store_lookup(dev->store, ref.name, ref.version, error);
    if (e == NULL) {
        return FALSE;
    }
    session_manifests_refresh(dev->session);
    if ((m = session_manifest(dev->session, e, error)) == NULL) {
        return FALSE;
    }
    session_fill_info(dev->session, &info, e->name, e->version, m);
    device_reply(dev, tag, VMAUG_S_OK, &info, sizeof(info));
    return TRUE;
}

/* A guest's (or the owner's) LOAD: answered when the module is ready. */
static gboolean device_load(Device *dev, guint64 tag, const gchar *name,
                            const gchar *version, GError **error)
{
    Module *m = session_ensure_loaded(dev->session, name, version,
                                       error);

    if (m == NULL) {
        return FALSE;
    }
    if (m->state == VMAUG_MODULE_LOADED) {
        struct vmaug_module_info info;

        session_fill_info(dev->session, &info, m->name, m->version,
                          m->manifest);
        device_reply(dev, tag, VMAUG_S_OK, &info, sizeof(info));
    } else {
        device_defer(dev, tag);
        module_add_load_waiter(m, tag);
    }
    return TRUE;
}

static gboolean device_unload(Device *dev, guint64 tag, const guint8 *p,
                              guint32 len, GError **error)
{
    g_auto(DeviceRef) ref = { 0 };
    struct vmaug_module_ref raw;

    if (!device_parse_ref((const void *)p, &ref, error) ||
        !session_unload(dev->session, ref.name, ref.version, &raw, error)) {
        return FALSE;
    }
    device_reply(dev, tag, VMAUG_S_OK, NULL, 0);
    device_event(dev, VMAUG_EVENT_MODULE_UNLOADED, &raw, sizeof(raw), NULL,
                 0);
    return TRUE;
}

/* A commit in flight: its device may be gone when it ends. */
typedef struct {
    Device *dev;                    /* NULL once the device is freed */
    VmaugStore *store;              /* the helper's: outlives devices */
    guint64 tag;
} DeviceCommit;

static void device_commit_done(GObject *source, GAsyncResult *result,
                               gpointer data)
{
    g_autofree DeviceCommit *dc = data;
    Device *dev = dc->dev;
    g_autoptr(GError) error = NULL;
    g_autoptr(VmaugManifest) m = NULL;
    struct vmaug_module_info info;

    /* The store ends the session whether or not anyone still waits. */
    m = vmaug_store_upload_commit_finish(dc->store, result, &error);
    if (dev == NULL) {
        return;
    }
    g_ptr_array_remove_fast(dev->commits, dc);
    if (m == NULL) {
        device_reply_error(dev, dc->tag, error);
        return;
    }
    session_fill_info(dev->session, &info, m->name, m->version, m);
    device_reply(dev, dc->tag, VMAUG_S_OK, &info, sizeof(info));
}

/* @area_data: an UPLOAD_CHUNK's data, when it came in the upload area. */
static gboolean device_upload(Device *dev, guint64 tag, guint16 opcode,
                              const guint8 *p, guint32 len,
                              const guint8 *area_data, GError **error)
{
    /* Uploads are the VM's own: nobody else may resume, feed or end
     * them. */
    const gchar *owner = vmaug_vm_area_get_id(dev->session->area);
    struct vmaug_upload_state st = { 0 };
    guint64 id, offset = 0;

    switch (opcode) {
    case VMAUG_OP_UPLOAD_BEGIN: {
        const struct vmaug_upload_begin *b = (const void *)p;
        g_auto(DeviceRef) ref = { 0 };

        if (!device_parse_ref(&b->ref, &ref, error)) {
            return FALSE;
        }
        if (*ref.version == '\0') {
            g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                        "an upload names its version");
            return FALSE;
        }
        if (!vmaug_store_upload_begin(dev->store, owner,
                                      GUINT64_FROM_LE(b->total_size),
                                      b->sha256, ref.name, ref.version,
                                      dev->name, &id, &offset, error)) {
            return FALSE;
        }
        break;
    }
    case VMAUG_OP_UPLOAD_CHUNK: {
        struct vmaug_upload_chunk c;

        memcpy(&c, p, sizeof(c));
        id = GUINT64_FROM_LE(c.upload_id);
        if (area_data != NULL) {
            /* Answered before it is written, from the slot: the guest's
             * next chunk is on its way into the other slot meanwhile
             * (docs/performance.md, "Upload chunks in a shared area"). */
            if (!vmaug_store_upload_chunk_check(dev->store, owner, id,
                                                GUINT64_FROM_LE(c.offset),
                                                len - sizeof(c), &offset,
                                                error)) {
                return FALSE;
            }
            st.upload_id = GUINT64_TO_LE(id);
            st.offset = GUINT64_TO_LE(offset);
            device_reply(dev, tag, VMAUG_S_OK, &st, sizeof(st));
            vmaug_store_upload_chunk_write(dev->store, owner, id,
                                           GUINT64_FROM_LE(c.offset),
                                           area_data, len - sizeof(c));
            return TRUE;
        }
        if (!vmaug_store_upload_chunk(dev->store, owner, id,
                                      GUINT64_FROM_LE(c.offset),
                                      p + sizeof(c), len - sizeof(c),
                                      &offset, error)) {
            return FALSE;
        }
        break;
    }
    case VMAUG_OP_UPLOAD_COMMIT: {
        /* Answered when the store's commit thread is done: hashing and
         * syncing a large package keeps no other request, of this VM or
         * another, waiting. */
        struct vmaug_upload_ref r;
        DeviceCommit *dc = g_new0(DeviceCommit, 1);

        memcpy(&r, p, sizeof(r));
        dc->dev = dev;
        dc->store = dev->store;
        dc->tag = tag;
        g_ptr_array_add(dev->commits, dc);
        device_defer(dev, tag);
        vmaug_store_upload_commit_async(dev->store, owner,
                                        GUINT64_FROM_LE(r.upload_id),
                                        dev->name, device_commit_done, dc);
        return TRUE;
    }
    default: {
        struct vmaug_upload_ref r;

        memcpy(&r, p, sizeof(r));
        if (!vmaug_store_upload_abort(dev->store, owner,
                                      GUINT64_FROM_LE(r.upload_id),
                                      dev->name, error)) {
            return FALSE;
        }
        device_reply(dev, tag, VMAUG_S_OK, NULL, 0);
        return TRUE;
    }
    }
    st.upload_id = GUINT64_TO_LE(id);
    st.offset = GUINT64_TO_LE(offset);
    device_reply(dev, tag, VMAUG_S_OK, &st, sizeof(st));
    return TRUE;
}

static gboolean device_invoke(Device *dev, guint64 tag, const guint8 *p,
                              guint32 len, GError **error)
{
    const struct vmaug_invoke *inv = (const void *)p;
    g_autofree gchar *module = NULL;
    g_autofree gchar *function = NULL;
    Module *m;

    module = vmaug_fixed_string(inv->module, sizeof(inv->module));
    function = vmaug_fixed_string(inv->function, sizeof(inv->function));
    if (module == NULL || function == NULL || !vmaug_name_is_valid(module) ||
        *function == '\0') {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "invalid module or function name");
        return FALSE;
    }
    m = g_hash_table_lookup(dev->session->modules, module);
    if (m == NULL) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_NOT_FOUND,
                    "%s is not loaded", module);
        return FALSE;
    }
    if (m->state == VMAUG_MODULE_CRASHED) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_MODULE_FAILED,
                    "%s crashed; load it again", module);
        return FALSE;
    }
    /* Only what the signed manifest exports reaches the module. */
    if (!vmaug_manifest_has_function(m->manifest, function)) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_NOT_FOUND,
                    "%s does not export %s", module, function);
        return FALSE;
    }
    if (!module_invoke(m, tag, function, p + sizeof(*inv),
                       len - sizeof(*inv), error)) {
        return FALSE;
    }
    device_defer(dev, tag);
    return TRUE;
}

/*
 * A VM's durable writes: CONFIG_SET of the guest's namespace, REGISTER
 * and UNREGISTER (QMP's too).  Each ends with a sync of a file and of
 * its directory, which on a disk that other writers keep busy takes
 * seconds, and the helper serves every VM from one thread: they run on
 * the helper's write threads instead and are answered when written.
 *
 * A VM's writes run one at a time in the order they came (each loads
 * what the one before saved), the host owner's (QMP's) ahead of the
 * guest's waiting ones.  The queue is the VM's area's, not its device's:
 * a device that left may still be writing when the next device for the
 * same image (a migration, a restarted QEMU) writes too.  Different
 * areas' files differ, but for the registrations of images in one
 * directory, whose lock the helper's threads take in turns
 * (registrations.c).  The job keeps the area; only the main thread takes
 * and drops references.  Not the store's job thread: a write must not
 * wait behind another VM's upload commit.  The module's own namespace is
 * written on the main thread (module-api.c), another file of the same
 * directory: a VM whose module and guest write at the same moment may
 * pass its configuration quota by one value.
 */
struct _DeviceWrite {
    Device *dev;                    /* NULL once the device is freed */
    Helper *helper;
    VmaugVmArea *area;
    VmaugStore *store;              /* the helper's: outlives devices */
    gchar *actor;                   /* the device's name, for the audit */
    guint64 tag;
    guint16 opcode;
    gboolean admin;                 /* the host owner's, through QMP */
    gchar *module;                  /* the module, or the registered one */
    gchar *version;
    gchar *key;                     /* CONFIG_SET */
    GBytes *value;
    guint32 events;                 /* REGISTER */
    guint32 flags;
    gchar *saved;                   /* where registrations were saved */
    GError *error;                  /* the write's failure */
};

/* An area's writes: the one under way, the others in order. */
typedef struct {
    DeviceWrite *running;
    GQueue waiting;
    /* Each bounded: a QEMU is no more trusted than its guest, and it
     * alone sets the host owner's bit of a tag. */
    guint guest_waiting;
    guint admin_waiting;
} WriteQueue;

static DeviceWrite *device_write_new(Device *dev, guint64 tag, guint16 opcode)
{
    DeviceWrite *dw = g_new0(DeviceWrite, 1);

    dw->dev = dev;
    dw->helper = dev->helper;
    dw->area = vmaug_vm_area_ref(dev->session->area);
    dw->store = dev->store;
    dw->actor = g_strdup(dev->name);
    dw->tag = tag;
    dw->opcode = opcode;
    dw->admin = (tag & DEVICE_ADMIN_TAG) != 0;
    return dw;
}

static void device_write_free(DeviceWrite *dw)
{
    if (dw->dev != NULL) {
        g_ptr_array_remove_fast(dw->dev->writes, dw);
    }
    vmaug_vm_area_unref(dw->area);
    g_free(dw->actor);
    g_free(dw->module);
    g_free(dw->version);
    g_free(dw->key);
    g_clear_pointer(&dw->value, g_bytes_unref);
    g_free(dw->saved);
    g_clear_error(&dw->error);
    g_free(dw);
}

static WriteQueue *device_write_queue(Helper *h, VmaugVmArea *area,
                                      gboolean make)
{
    const gchar *id = vmaug_vm_area_get_id(area);
    WriteQueue *q = g_hash_table_lookup(h->write_queues, id);

    if (q == NULL && make) {
        q = g_new0(WriteQueue, 1);
        g_hash_table_insert(h->write_queues, g_strdup(id), q);
    }
    return q;
}

/* On a write thread: files only, nothing the main thread touches. */
static void device_write_work(DeviceWrite *dw)
{
    g_autoptr(VmaugRegSet) set = NULL;

    if (dw->opcode == VMAUG_OP_CONFIG_SET) {
        vmaug_vm_area_config_set(dw->area, dw->module, VMAUG_CONFIG_GUEST,
                                 dw->key, g_bytes_get_data(dw->value, NULL),
                                 g_bytes_get_size(dw->value), &dw->error);
    } else if ((set = vmaug_vm_area_regs_load_for_update(dw->area,
                                                         &dw->error))) {
        /*
         * The set checks events and flags against what may be
         * registered, and refuses to change a pin: QMP's requests come
         * here too, and QEMU runs beside the guest, so only
         * vmaugment-admin, writing the sidecar itself, changes a pin.
         */
        if ((dw->opcode == VMAUG_OP_REGISTER
                 ? vmaug_reg_set_put(set, dw->module, dw->version,
                                     dw->events, dw->flags, &dw->error)
                 : vmaug_reg_set_remove(set, dw->module, &dw->error)) &&
            vmaug_reg_set_save(set, &dw->error)) {
            dw->saved = g_strdup(set->path);
        }
    }
}

/* Answered, recorded, gone; the main thread's. */
static void device_write_end(DeviceWrite *dw)
{
    const gchar *action = dw->opcode == VMAUG_OP_CONFIG_SET ? "config-set"
                          : dw->opcode == VMAUG_OP_REGISTER ? "register"
                                                            : "unregister";

    /* The host owner learns of attempts to change what it pinned (device
     * or no device), through the audit log, which bounds what a guest
     * repeating them can write. */
    if (g_error_matches(dw->error, VMAUG_HOST_ERROR,
                        VMAUG_HOST_ERROR_DENIED)) {
        vmaug_store_audit(dw->store, dw->actor, action, dw->module,
                          dw->version, NULL, NULL, dw->error);
    }
    if (dw->saved != NULL) {
        g_message("device %s %s %s %s in %s", dw->actor,
                  dw->admin ? "(host owner)" : "(guest)",
                  dw->opcode == VMAUG_OP_REGISTER ? "registered"
                                                  : "unregistered",
                  dw->module, dw->saved);
    }
    if (dw->dev != NULL) {
        if (dw->error != NULL) {
            device_reply_error(dw->dev, dw->tag, dw->error);
        } else {
            device_reply(dw->dev, dw->tag, VMAUG_S_OK, NULL, 0);
        }
    }
    device_write_free(dw);
}

static void device_write_unqueued(WriteQueue *q, DeviceWrite *dw)
{
    if (dw->admin) {
        q->admin_waiting--;
    } else {
        q->guest_waiting--;
    }
}

static gboolean device_write_done(gpointer data);

/*
 * The area's next write, if none runs: one whose device left is void
 * (nobody was told it was done); a CONFIG_SET is for a module the VM
 * uses when it is written, not when it came (a REGISTER may be before
 * it).  Without threads (the device fuzzer), writes are made here, one
 * per turn of the loop.
 */
static void device_write_run(Helper *h, WriteQueue *q, const gchar *id)
{
    DeviceWrite *dw;

    while (q->running == NULL &&
           (dw = g_queue_pop_head(&q->waiting)) != NULL) {
        device_write_unqueued(q, dw);
        if (dw->dev == NULL || dw->dev->closed) {
            device_write_free(dw);
            continue;
        }
        if (dw->opcode == VMAUG_OP_CONFIG_SET &&
            !session_has_module(dw->dev->session, dw->module, &dw->error)) {
            device_write_end(dw);
            continue;
        }
        q->running = dw;
        h->writes++;
        if (h->write_pool == NULL) {
            /* Made here, and ended from the loop as a thread's write is:
             * the VM's next writes wait behind it all the same. */
            device_write_work(dw);
            g_idle_add_full(G_PRIORITY_DEFAULT, device_write_done, dw, NULL);
            break;
        }
        g_thread_pool_push(h->write_pool, dw, NULL);
    }
    if (q->running == NULL && g_queue_is_empty(&q->waiting)) {
        g_hash_table_remove(h->write_queues, id);
    }
}

static gboolean device_write_done(gpointer data)
{
    DeviceWrite *dw = data;
    Helper *h = dw->helper;
    g_autofree gchar *id = g_strdup(vmaug_vm_area_get_id(dw->area));
    WriteQueue *q = device_write_queue(h, dw->area, FALSE);

    h->writes--;
    q->running = NULL;
    device_write_end(dw);
    device_write_run(h, q, id);
    return G_SOURCE_REMOVE;
}

static void device_write_thread(gpointer data, gpointer user_data)
{
    device_write_work(data);
    /* Always on the main thread (g_main_context_invoke() would run it
     * here whenever nobody owns the context, as while the helper stops). */
    g_idle_add_full(G_PRIORITY_DEFAULT, device_write_done, data, NULL);
}

void device_writes_init(Helper *h, gboolean threads)
{
    g_autoptr(GError) local = NULL;

    h->write_queues = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
                                            g_free);
    if (!threads) {
        return;
    }
    /* One per device at most: a VM's writes run one at a time. */
    h->write_pool = g_thread_pool_new(device_write_thread, NULL,
                                      HELPER_MAX_DEVICES, FALSE, &local);
    if (h->write_pool == NULL) {
        /* Slower for the others, never lost: on the main thread. */
        g_warning("no threads for the VMs' writes: %s", local->message);
    }
}

void device_writes_end(Helper *h)
{
    /* They keep their VMs' areas, which point into the stores; each ends
     * within its syncs. */
    while (h->writes > 0) {
        g_main_context_iteration(NULL, TRUE);
    }
    if (h->write_pool != NULL) {
        g_thread_pool_free(h->write_pool, FALSE, TRUE);
        h->write_pool = NULL;
    }
    g_clear_pointer(&h->write_queues, g_hash_table_unref);
}

static void device_write_push(Device *dev, DeviceWrite *dw)
{
    Helper *h = dev->helper;
    WriteQueue *q = device_write_queue(h, dw->area, TRUE);
    g_autofree gchar *id = g_strdup(vmaug_vm_area_get_id(dw->area));

    if ((dw->admin ? q->admin_waiting : q->guest_waiting) >=
        DEVICE_MAX_WRITES) {
        static const gchar why[] = "too many writes of this VM waiting";

        /* Only behind one that runs: the queue stays as it is. */
        device_reply(dev, dw->tag, VMAUG_S_BUSY, why, strlen(why));
        dw->dev = NULL;
        device_write_free(dw);
        return;
    }
    if (dw->admin) {
        GList *l = q->waiting.head;

        /* Behind the host owner's own, ahead of the guest's. */
        while (l != NULL && ((DeviceWrite *)l->data)->admin) {
            l = l->next;
        }
        g_queue_insert_before(&q->waiting, l, dw);
        q->admin_waiting++;
    } else {
        g_queue_push_tail(&q->waiting, dw);
        q->guest_waiting++;
    }
    g_ptr_array_add(dev->writes, dw);
    device_defer(dev, dw->tag);
    device_write_run(h, q, id);
}

/*
 * Takes @dw out of its queue if it waits there (not if it runs).  A write
 * waits only behind one that runs, so the queue stays.
 */
static gboolean device_write_unwait(Helper *h, DeviceWrite *dw)
{
    WriteQueue *q = device_write_queue(h, dw->area, FALSE);

    if (q->running == dw || !g_queue_remove(&q->waiting, dw)) {
        return FALSE;
    }
    device_write_unqueued(q, dw);
    return TRUE;
}

/* The device gave up on @tag: a write of it not begun is void. */
static void device_write_cancel(Device *dev, guint64 tag)
{
    for (guint i = 0; i < dev->writes->len; i++) {
        DeviceWrite *dw = g_ptr_array_index(dev->writes, i);

        if (dw->tag != tag) {
            continue;
        }
        if (device_write_unwait(dev->helper, dw)) {
            g_hash_table_remove(dev->pending, &tag);
            device_write_free(dw);
        }
        return;
    }
}

/* Where the guest's CONFIG_GET looks, in order. */
static const VmaugConfigSpace device_config_reads[] = {
    VMAUG_CONFIG_MODULE, VMAUG_CONFIG_HOST, VMAUG_CONFIG_GUEST,
};

/*
 * The guest's configuration requests.  What the guest sets is kept in the
 * module's guest namespace, apart from the module's own keys: it reaches
 * the module only as "guest.<key>", for the module to validate, and can
 * never pass for something the module decided.  A read sees the module's
 * own key first, then the host owner's, then the guest's.  A key the host
 * owner set with the module's pin is not the guest's to set.
 */
static gboolean device_config(Device *dev, guint64 tag, guint16 opcode,
                              const guint8 *p, guint32 len, GError **error)
{
    const struct vmaug_config_ref *c = (const void *)p;
    g_autofree gchar *module = NULL;
    g_autofree gchar *key = NULL;
    g_autoptr(GBytes) value = NULL;
    g_autoptr(GError) local = NULL;

    module = vmaug_fixed_string(c->module, sizeof(c->module));
    key = vmaug_fixed_string(c->key, sizeof(c->key));
    if (module == NULL || key == NULL || !vmaug_name_is_valid(module)) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "invalid module or key");
        return FALSE;
    }
    if (opcode == VMAUG_OP_CONFIG_SET) {
        DeviceWrite *dw;

        /* Configuration for modules the VM does not use would only fill
         * the host's disk: checked when it is written.  A key or value
         * that no file makes valid waits for no other write. */
        if (!vmaug_vm_area_config_set_ok(module, key, len - sizeof(*c),
                                         error)) {
            return FALSE;
        }
        dw = device_write_new(dev, tag, opcode);

        dw->module = g_steal_pointer(&module);
        dw->key = g_steal_pointer(&key);
        dw->value = g_bytes_new(p + sizeof(*c), len - sizeof(*c));
        device_write_push(dev, dw);
        return TRUE;
    }
    /*
     * The guest reads the value in force: where the host owner set the
     * key, the module reads the host's value for the guest's, so the
     * guest's own would only mislead.
     */
    for (guint i = 0; i < G_N_ELEMENTS(device_config_reads); i++) {
        g_clear_error(&local);
        if (vmaug_vm_area_config_get(dev->session->area, module,
                                     device_config_reads[i], key, &value,
                                     &local)) {
            break;
        }
        if (!g_error_matches(local, VMAUG_HOST_ERROR,
                             VMAUG_HOST_ERROR_NOT_FOUND) ||
            i == G_N_ELEMENTS(device_config_reads) - 1) {
            g_propagate_error(error, g_steal_pointer(&local));
            return FALSE;
        }
    }
    device_reply(dev, tag, VMAUG_S_OK, g_bytes_get_data(value, NULL),
                 g_bytes_get_size(value));
    return TRUE;
}

static gboolean device_register(Device *dev, guint64 tag, guint16 opcode,
                                const guint8 *p, guint32 len, GError **error)
{
    g_auto(DeviceRef) ref = { 0 };
    struct vmaug_registration r = { 0 };
    DeviceWrite *dw;

    if (opcode == VMAUG_OP_REGISTER) {
        memcpy(&r, p, sizeof(r));
    } else {
        memcpy(&r.ref, p, sizeof(r.ref));
    }
    if (!device_parse_ref(&r.ref, &ref, error)) {
        return FALSE;
    }
    dw = device_write_new(dev, tag, opcode);
    dw->module = g_steal_pointer(&ref.name);
    dw->version = g_steal_pointer(&ref.version);
    dw->events = GUINT32_FROM_LE(r.events);
    dw->flags = GUINT32_FROM_LE(r.flags);
    device_write_push(dev, dw);
    return TRUE;
}

static void device_list_modules(Device *dev, guint32 start,
                                GByteArray *out, guint32 *count,
                                guint32 *total)
{
    g_autoptr(GPtrArray) list = vmaug_store_list(dev->store);

    *total = list->len;
    session_manifests_refresh(dev->session);
    for (guint i = start; i < list->len && *count < VMAUG_LIST_MAX_ENTRIES;
         i++) {
        VmaugStoreEntry *e = g_ptr_array_index(list, i);
        const VmaugManifest *m = session_manifest(dev->session, e, NULL);
        struct vmaug_module_info info;

        if (m == NULL) {
            /* Refused at load too; listed so the guest sees it. */
            memset(&info, 0, sizeof(info));
            g_strlcpy((gchar *)info.ref.name, e->name,
                      sizeof(info.ref.name));
            g_strlcpy((gchar *)info.ref.version, e->version,
                      sizeof(info.ref.version));
            info.state = GUINT32_TO_LE(VMAUG_MODULE_STORED);
        } else {
            session_fill_info(dev->session, &info, e->name, e->version, m);
        }
        g_byte_array_append(out, (const guint8 *)&info, sizeof(info));
        (*count)++;
    }
}

static gboolean device_list_regs(Device *dev, guint32 start, GByteArray *out,
                                 guint32 *count, guint32 *total,
                                 GError **error)
{
    g_autoptr(VmaugRegSet) set = device_regs(dev, error);

    if (set == NULL) {
        return FALSE;
    }
    *total = set->regs->len;
    for (guint i = start; i < set->regs->len &&
                          *count < VMAUG_LIST_MAX_ENTRIES; i++) {
        const VmaugRegistration *r = g_ptr_array_index(set->regs, i);
        struct vmaug_registration raw = { 0 };

        g_strlcpy((gchar *)raw.ref.name, r->name, sizeof(raw.ref.name));
        g_strlcpy((gchar *)raw.ref.version, r->version,
                  sizeof(raw.ref.version));
        raw.events = GUINT32_TO_LE(r->events);
        raw.flags = GUINT32_TO_LE(r->flags);
        g_byte_array_append(out, (const guint8 *)&raw, sizeof(raw));
        (*count)++;
    }
    return TRUE;
}

static gint device_cmp_modules(gconstpointer a, gconstpointer b)
{
    const Module *ma = *(Module *const *)a;
    const Module *mb = *(Module *const *)b;

    return strcmp(ma->name, mb->name);
}

/* The listing reports the library's pieces as they are. */
G_STATIC_ASSERT(SANDBOX_USER_NS == VMAUG_SANDBOX_USER_NS &&
                SANDBOX_OWN_ID == VMAUG_SANDBOX_OWN_ID &&
                SANDBOX_NAMESPACES == VMAUG_SANDBOX_NAMESPACES &&
                SANDBOX_EMPTY_ROOT == VMAUG_SANDBOX_EMPTY_ROOT &&
                SANDBOX_NO_CAPS == VMAUG_SANDBOX_NO_CAPS);

static void device_list_sandboxes(Device *dev, guint32 start,
                                  GByteArray *out, guint32 *count,
                                  guint32 *total)
{
    Helper *h = dev->helper;
    g_autoptr(GPtrArray) mods = g_ptr_array_new();
    GHashTableIter it;
    Module *m;
    gint64 now = g_get_monotonic_time();

    g_hash_table_iter_init(&it, dev->session->modules);
    while (g_hash_table_iter_next(&it, NULL, (gpointer *)&m)) {
        g_ptr_array_add(mods, m);
    }
    /* By name: pages of a listing line up between calls. */
    g_ptr_array_sort(mods, device_cmp_modules);
    *total = mods->len;
    for (guint i = start; i < mods->len && *count < VMAUG_LIST_MAX_ENTRIES;
         i++) {
        struct vmaug_sandbox_info sb = { 0 };

        m = g_ptr_array_index(mods, i);
        module_ref_fill(m, &sb.ref);
        sb.state = GUINT32_TO_LE(m->state);
        sb.pid = GUINT32_TO_LE(m->pid > 0 ? (guint32)m->pid : 0);
        sb.memory_limit = GUINT64_TO_LE(h->limits.memory_bytes);
        sb.cpu_limit = GUINT64_TO_LE(h->limits.cpu_seconds);
        sb.uptime_ms = GUINT64_TO_LE(m->pid > 0 ?
                                     (guint64)(now - m->started_us) / 1000 :
                                     0);
        sb.queued_calls = GUINT32_TO_LE(g_queue_get_length(&m->calls));
        sb.restarts = GUINT32_TO_LE(m->restarts);
        sb.uid = GUINT32_TO_LE(m->pid > 0 ?
                               sandbox_child_uid(&h->sandbox,
                                                 h->sandbox_pieces, m->pid) :
                               0);
        sb.missing = GUINT32_TO_LE(SANDBOX_ALL & ~h->sandbox_pieces);
        g_byte_array_append(out, (const guint8 *)&sb, sizeof(sb));
        (*count)++;
    }
}

/* The UI elements of one module's file (<area>/ui/<module>.json, written
 * by module-brokers.c), as compact JSON texts in id order. */
static void device_ui_elements(Device *dev, const gchar *module,
                               GPtrArray *texts)
{
    g_autofree gchar *name = g_strconcat(module, ".json", NULL);
    g_autofree gchar *path = g_build_filename(
        vmaug_vm_area_get_dir(dev->session->area), "ui", name, NULL);
    g_autoptr(GBytes) blob = NULL;
    g_autoptr(JsonParser) parser = json_parser_new_immutable();
    g_autoptr(GList) ids = NULL;
    JsonNode *root;
    JsonObject *o;

    /* Written by us, but from a module's words: bounded and checked. */
    blob = vmaug_trust_read_file(path, 1024 * 1024, NULL);
    if (blob == NULL ||
        !json_parser_load_from_data(parser, g_bytes_get_data(blob, NULL),
                                    g_bytes_get_size(blob), NULL) ||
        (root = json_parser_get_root(parser)) == NULL ||
        !JSON_NODE_HOLDS_OBJECT(root)) {
        return;
    }
    o = json_node_get_object(root);
    ids = json_object_get_members(o);
    ids = g_list_sort(ids, (GCompareFunc)g_strcmp0);
    for (GList *l = ids; l != NULL; l = l->next) {
        JsonNode *el = json_object_get_member(o, l->data);
        gchar *text;

        if (!JSON_NODE_HOLDS_OBJECT(el)) {
            continue;
        }
        text = json_to_string(el, FALSE);
        if (strlen(text) < 2 || strlen(text) > VMAUG_UI_MAX_JSON) {
            g_free(text);
            continue;
        }
        g_ptr_array_add(texts, text);
    }
}

/* g_ptr_array_sort() passes pointers to the elements. */
static gint device_cmp_strings(gconstpointer a, gconstpointer b)
{
    return strcmp(*(const gchar *const *)a, *(const gchar *const *)b);
}

static void device_list_ui(Device *dev, guint32 start, GByteArray *out,
                           guint32 *count, guint32 *total)
{
    g_autofree gchar *dir = g_build_filename(
        vmaug_vm_area_get_dir(dev->session->area), "ui", NULL);
    g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
    g_autoptr(GPtrArray) modules = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GPtrArray) owners = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GPtrArray) texts = g_ptr_array_new_with_free_func(g_free);
    const gchar *e;

    while (d != NULL && (e = g_dir_read_name(d)) != NULL) {
        g_autofree gchar *mod = NULL;

        if (!g_str_has_suffix(e, ".json")) {
            continue;
        }
        mod = g_strndup(e, strlen(e) - strlen(".json"));
        if (vmaug_name_is_valid(mod)) {
            g_ptr_array_add(modules, g_steal_pointer(&mod));
        }
    }
    g_ptr_array_sort(modules, device_cmp_strings);
    for (guint i = 0; i < modules->len; i++) {
        const gchar *mod = g_ptr_array_index(modules, i);
        guint before = texts->len;

        device_ui_elements(dev, mod, texts);
        for (guint j = before; j < texts->len; j++) {
            g_ptr_array_add(owners, g_strdup(mod));
        }
    }
    *total = texts->len;
    for (guint i = start; i < texts->len && *count < VMAUG_LIST_MAX_ENTRIES;
         i++) {
        const gchar *text = g_ptr_array_index(texts, i);
        struct vmaug_ui_entry ui = { 0 };
        static const guint8 zeros[8];
        gsize len = strlen(text);
        gsize pad = (8 - len % 8) % 8;

        if (out->len + sizeof(ui) + len + pad > VMAUG_MAX_RESP_PAYLOAD) {
            break;      /* the rest on the next page */
        }
        g_strlcpy((gchar *)ui.module, g_ptr_array_index(owners, i),
                  sizeof(ui.module));
        ui.len = GUINT32_TO_LE((guint32)len);
        g_byte_array_append(out, (const guint8 *)&ui, sizeof(ui));
        g_byte_array_append(out, (const guint8 *)text, len);
        g_byte_array_append(out, zeros, pad);
        (*count)++;
    }
}

static gboolean device_list(Device *dev, guint64 tag, const guint8 *p,
                            guint32 len, GError **error)
{
    struct vmaug_list_req req;
    struct vmaug_list_resp resp = { 0 };
    g_autoptr(GByteArray) out = g_byte_array_new();
    guint32 start, what, count = 0, total = 0;

    memcpy(&req, p, sizeof(req));
    start = GUINT32_FROM_LE(req.start);
    what = GUINT32_FROM_LE(req.what);
    g_byte_array_append(out, (const guint8 *)&resp, sizeof(resp));
    /* Sandboxes and UI elements are the host owner's view; the device
     * refuses them from the guest, and so do we. */
    if ((what == VMAUG_LIST_SANDBOXES || what == VMAUG_LIST_UI) &&
        !(tag & DEVICE_ADMIN_TAG)) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_DENIED,
                    "only the host owner may list this");
        return FALSE;
    }
    switch (what) {
    case VMAUG_LIST_MODULES:
        device_list_modules(dev, start, out, &count, &total);
        break;
    case VMAUG_LIST_REGISTRATIONS:
        if (!device_list_regs(dev, start, out, &count, &total, error)) {
            return FALSE;
        }
        break;
    case VMAUG_LIST_SANDBOXES:
        device_list_sandboxes(dev, start, out, &count, &total);
        break;
    case VMAUG_LIST_UI:
        device_list_ui(dev, start, out, &count, &total);
        break;
    default:
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_INVALID,
                    "unknown list");
        return FALSE;
    }
    resp.total = GUINT32_TO_LE(total);
    resp.count = GUINT32_TO_LE(count);
    memcpy(out->data, &resp, sizeof(resp));
    device_reply(dev, tag, VMAUG_S_OK, out->data, out->len);
    return TRUE;
}

/*
 * VMAUG_OP_SERVICING_REPORT: the guest reports an offline update of its
 * image.  It counts only against the image's servicing record, which
 * vmaugment-offline wrote when it applied the bundle (servicing.h).
 */
static gboolean device_servicing(Device *dev, guint64 tag, const guint8 *p,
                                 guint32 len, GError **error)
{
    struct vmaug_servicing_report rep;
    g_autoptr(VmaugServicing) record = NULL;
    g_autoptr(GError) local = NULL;
    VmaugServicingEntry *e;
    const gchar *action;

    memcpy(&rep, p, sizeof(rep));
    /* Only the host owner's image has a record; a VM without one has
     * nothing it could confirm. */
    if (dev->image == NULL) {
        g_set_error(error, VMAUG_HOST_ERROR, VMAUG_HOST_ERROR_NOT_FOUND,
                    "this VM runs no disk image the host serviced");
    } else if ((record = vmaug_servicing_load(dev->image, &local)) != NULL &&
               (e = vmaug_servicing_report(record, &rep, p + sizeof(rep),
                                           len - sizeof(rep),
                                           &local)) != NULL &&
               vmaug_servicing_save(record, &local)) {
        action = e->state == VMAUG_SERVICING_STATE_CONFIRMED ?
                 "servicing-confirmed" : "servicing-failed";
        g_message("device %s: bundle %s %s %s at boot %u%s%s", dev->name,
                  e->bundle, e->version, action, e->boot,
                  e->message ? ": " : "", e->message ? e->message : "");
        vmaug_store_audit(dev->store, dev->name, action, e->bundle,
                          e->version, e->manifest_sha256, NULL, NULL);
        rep.boot = GUINT32_TO_LE(e->boot);
        device_reply(dev, tag, VMAUG_S_OK, &rep, sizeof(rep));
        device_event(dev, VMAUG_EVENT_SERVICING, &rep, sizeof(rep),
                     e->message, e->message ? strlen(e->message) : 0);
        return TRUE;
    }
    if (local != NULL) {
        g_propagate_error(error, g_steal_pointer(&local));
    }
    {
        g_autofree gchar *bundle = vmaug_fixed_string(rep.bundle,
                                                      sizeof(rep.bundle));
        g_autofree gchar *version = vmaug_fixed_string(rep.version,
                                                       sizeof(rep.version));

        vmaug_store_audit(dev->store, dev->name, "servicing-report",
                          bundle, version, NULL, NULL, *error);
    }
    return FALSE;
}

/*
 * A guest's request: its header and @len - sizeof(header) bytes of
 * payload at @data, followed by @area_len more in the upload area at
 * @area_data (an UPLOAD_CHUNK's data; device_area_request()).
 */
static void device_request(Device *dev, guint64 tag, const guint8 *data,
                           guint32 len, const guint8 *area_data,
                           guint32 area_len)
{
    g_autoptr(GError) error = NULL;
    struct virtio_vmaugment_req req;
    const guint8 *p = data + sizeof(req);
    const struct vmaug_proto_op *op;
    const gchar *why = NULL;
    guint32 plen;
    guint16 opcode, status;
    gboolean ok;

    /* The device validated this, but a QEMU is no more trusted than its
     * guest: the header and its length must agree. */
    if (len < sizeof(req)) {
        device_reply(dev, tag, VMAUG_S_INVALID, NULL, 0);
        return;
    }
    memcpy(&req, data, sizeof(req));
    plen = GUINT32_FROM_LE(req.len);
    if (plen != len - sizeof(req) + area_len || plen > VMAUG_MAX_REQ_PAYLOAD ||
        req.flags != 0) {
        device_reply(dev, tag, VMAUG_S_INVALID, NULL, 0);
        return;
    }
    /* The protocol's rules for each payload (protocol-rules.h), which the
     * device applied already; what the device answers itself never comes
     * here.  The handlers rely on these sizes. */
    opcode = GUINT16_FROM_LE(req.opcode);
    op = vmaug_proto_op(opcode);
    if (op == NULL || op->device_only) {
        device_reply(dev, tag, VMAUG_S_UNSUPPORTED, NULL, 0);
        return;
    }
    status = vmaug_proto_op_check(op, p, plen, &why);
    if (status != VMAUG_S_OK) {
        device_reply(dev, tag, status, why, strlen(why));
        return;
    }
    switch (opcode) {
    case VMAUG_OP_QUERY:
        ok = device_query(dev, tag, p, plen, &error);
        break;
    case VMAUG_OP_LOAD: {
        g_auto(DeviceRef) ref = { 0 };

        ok = device_parse_ref((const void *)p, &ref, &error) &&
             device_load(dev, tag, ref.name, ref.version, &error);
        break;
    }
    case VMAUG_OP_UNLOAD:
        ok = device_unload(dev, tag, p, plen, &error);
        break;
    case VMAUG_OP_UPLOAD_BEGIN:
    case VMAUG_OP_UPLOAD_CHUNK:
    case VMAUG_OP_UPLOAD_COMMIT:
    case VMAUG_OP_UPLOAD_ABORT:
        ok = device_upload(dev, tag, opcode, p, plen, area_data, &error);
        break;
    case VMAUG_OP_INVOKE:
        ok = device_invoke(dev, tag, p, plen, &error);
        break;
    case VMAUG_OP_CONFIG_GET:
    case VMAUG_OP_CONFIG_SET:
        ok = device_config(dev, tag, opcode, p, plen, &error);
        break;
    case VMAUG_OP_REGISTER:
    case VMAUG_OP_UNREGISTER:
        ok = device_register(dev, tag, opcode, p, plen, &error);
        break;
    case VMAUG_OP_LIST:
        ok = device_list(dev, tag, p, plen, &error);
        break;
    case VMAUG_OP_SERVICING_REPORT:
        ok = device_servicing(dev, tag, p, plen, &error);
        break;
    default:
        device_reply(dev, tag, VMAUG_S_UNSUPPORTED, NULL, 0);
        return;
    }
    if (!ok) {
        device_reply_error(dev, tag, error);
    }
}

/*
 * Tags in flight are unique; a reused one would pair answers with the
 * wrong requests.  The one in flight (even given up on) keeps its tag:
 * the refusal, answered here, leaves it as it is.
 */
static gboolean device_tag_in_use(Device *dev, guint64 tag)
{
    if (g_hash_table_contains(dev->pending, &tag) ||
        g_hash_table_contains(dev->cancelled, &tag)) {
        device_send_response(dev, tag, VMAUG_S_BUSY, NULL, 0);
        return TRUE;
    }
    return FALSE;
}

/* The device may write @slot (little-endian) again. */
static void device_area_release(Device *dev, guint32 slot)
{
    struct vmaug_host_area_release rel = { .slot = slot };

    vmaug_link_send(dev->channel, VMAUG_HOST_AREA_RELEASE, 0, &rel,
                    sizeof(rel), NULL, 0, -1);
}

/*
 * An UPLOAD_CHUNK whose data the device put in a slot of the upload area
 * (docs/protocol.rst, AREA_REQUEST).  What frames it is the device's
 * word and ends the device when wrong; the request itself is checked as
 * any other.  The slot is read here and never again: AREA_RELEASE says
 * so, after the answer.
 */
static gboolean device_area_request(Device *dev, guint64 tag,
                                    const guint8 *data, guint32 len,
                                    const gchar **why)
{
    struct vmaug_host_area_request ar;
    struct virtio_vmaugment_req req;
    const guint8 *slot_data;
    guint32 plen;

    if (dev->area == NULL) {
        *why = "AREA_REQUEST without an upload area";
        return FALSE;
    }
    if (len != sizeof(ar) + sizeof(req) + sizeof(struct vmaug_upload_chunk)) {
        *why = "AREA_REQUEST of the wrong size";
        return FALSE;
    }
    memcpy(&ar, data, sizeof(ar));
    memcpy(&req, data + sizeof(ar), sizeof(req));
    plen = GUINT32_FROM_LE(req.len);
    if (GUINT16_FROM_LE(req.opcode) != VMAUG_OP_UPLOAD_CHUNK ||
        ar.reserved != 0 || plen <= sizeof(struct vmaug_upload_chunk)) {
        *why = "AREA_REQUEST not for an upload chunk";
        return FALSE;
    }
    slot_data = upload_area_slot(dev->area, GUINT32_FROM_LE(ar.slot),
                                 plen - sizeof(struct vmaug_upload_chunk));
    if (slot_data == NULL) {
        *why = "AREA_REQUEST beyond its slot";
        return FALSE;
    }
    if (!device_tag_in_use(dev, tag)) {
        device_request(dev, tag, data + sizeof(ar), len - sizeof(ar),
                       slot_data, plen - sizeof(struct vmaug_upload_chunk));
    }
    device_area_release(dev, ar.slot);
    return TRUE;
}

/* The upload area the device asked for, sent on the link. */
static void device_offer_area(Device *dev)
{
    struct vmaug_host_upload_area msg = {
        .slots = GUINT32_TO_LE(VMAUG_HOST_AREA_SLOTS),
        .slot_size = GUINT32_TO_LE(VMAUG_CHUNK_MAX_DATA),
    };
    g_autoptr(GError) error = NULL;
    int fd = -1;

    dev->area = upload_area_new(&fd, &error);
    if (dev->area == NULL) {
        /* Chunks come on the channel as before. */
        g_warning("device %s: %s", dev->name, error->message);
        return;
    }
    vmaug_link_send(dev->link, VMAUG_HOST_UPLOAD_AREA, 0, &msg, sizeof(msg),
                    NULL, 0, fd);
}

/* A path of the device's HELLO: UTF-8, no NUL. */
static gchar *device_hello_path(const guint8 *p, gsize len)
{
    gchar *path = g_strndup((const gchar *)p, len);

    if (strlen(path) != len || !g_utf8_validate(path, len, NULL)) {
        g_free(path);
        return NULL;
    }
    return path;
}

static gboolean device_hello_store(Device *dev, const gchar *store_path,
                                   const gchar **why)
{
    Helper *h = dev->helper;
    g_autofree gchar *canon = NULL;
    g_autoptr(GError) error = NULL;
    VmaugStore *store;

    canon = g_canonicalize_filename(*store_path != '\0' ? store_path :
                                    h->default_store, NULL);
    /* QEMU may only pick among stores the host owner listed. */
    if (g_strcmp0(canon, h->default_store) != 0 &&
        !g_ptr_array_find_with_equal_func(h->allowed_stores, canon,
                                          g_str_equal, NULL)) {
        g_warning("device %s asks for store %s, which is not allowed",
                  dev->name, canon);
        *why = "store not allowed";
        return FALSE;
    }
    store = helper_store_open(h, canon, &error);
    if (store == NULL) {
        g_warning("store %s: %s", canon, error->message);
        *why = "store unavailable";
        return FALSE;
    }
    dev->store = store;
    return TRUE;
}

/*
 * The image's registrations are written next to it: QEMU may only name
 * images in directories the host owner listed (--image-dir), compared
 * after resolving symlinks so that a link cannot lead the sidecar
 * elsewhere.
 */
static gboolean device_hello_image(Device *dev, const gchar *image,
                                   const gchar **why)
{
    Helper *h = dev->helper;
    g_autofree gchar *dir = g_path_get_dirname(image);
    g_autofree gchar *base = g_path_get_basename(image);
    g_autofree gchar *real = NULL;

    if (!g_path_is_absolute(image) || g_strcmp0(base, ".") == 0 ||
        g_strcmp0(base, "..") == 0 || g_strcmp0(base, "/") == 0) {
        g_warning("device %s names image \"%s\", which is not an absolute "
                  "file path; refusing it", dev->name, image);
        *why = "bad image path";
        return FALSE;
    }
    real = realpath(dir, NULL);
    if (real == NULL ||
        !g_ptr_array_find_with_equal_func(h->image_dirs, real, g_str_equal,
                                          NULL)) {
        g_warning("device %s names image %s, whose directory %s is not "
                  "one of the helper's --image-dir; refusing it", dev->name,
                  image, real != NULL ? real : dir);
        *why = "image directory not allowed";
        return FALSE;
    }
    dev->image = g_build_filename(real, base, NULL);
    /* One image, one VM: its area (configuration, state, uploads) is
     * never shared between two connections. */
    for (GList *l = h->devices; l != NULL; l = l->next) {
        Device *other = l->data;

        if (other != dev && other->hello && !other->closed &&
            g_strcmp0(other->image, dev->image) == 0) {
            g_warning("device %s names image %s, which device %s is "
                      "running; refusing it", dev->name, dev->image,
                      other->name);
            *why = "image in use by another device";
            return FALSE;
        }
    }
    return TRUE;
}

static gboolean device_hello(Device *dev, const guint8 *data, guint32 len,
                             const gchar **why)
{
    struct vmaug_host_hello hello;
    g_autofree gchar *store_path = NULL;
    g_autofree gchar *image = NULL;
    gsize store_len, image_len;
    guint32 flags;

    if (len < sizeof(hello)) {
        *why = "bad HELLO";
        return FALSE;
    }
    memcpy(&hello, data, sizeof(hello));
    if (GUINT32_FROM_LE(hello.proto_version) != VMAUG_PROTO_VERSION) {
        *why = "device speaks another protocol version";
        return FALSE;
    }
    flags = GUINT32_FROM_LE(hello.flags);
    if ((flags & ~(VMAUG_HOST_HELLO_F_CHANNEL |
                   VMAUG_HOST_HELLO_F_UPLOAD_AREA)) ||
        ((flags & VMAUG_HOST_HELLO_F_UPLOAD_AREA) &&
         !(flags & VMAUG_HOST_HELLO_F_CHANNEL)) ||
        hello.reserved != 0) {
        *why = "bad HELLO flags";
        return FALSE;
    }
    store_len = GUINT16_FROM_LE(hello.store_len);
    image_len = GUINT16_FROM_LE(hello.image_len);
    if (store_len > VMAUG_HOST_PATH_MAX || image_len > VMAUG_HOST_PATH_MAX ||
        len - sizeof(hello) != store_len + image_len) {
        *why = "bad HELLO lengths";
        return FALSE;
    }
    dev->name = vmaug_fixed_string(hello.name, sizeof(hello.name));
    if (dev->name == NULL) {
        *why = "bad device name";
        return FALSE;
    }
    g_strcanon(dev->name, "abcdefghijklmnopqrstuvwxyz"
               "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:/ ", '_');
    store_path = device_hello_path(data + sizeof(hello), store_len);
    image = device_hello_path(data + sizeof(hello) + store_len, image_len);
    if (store_path == NULL || image == NULL) {
        *why = "bad store or image path";
        return FALSE;
    }
    if (!device_hello_store(dev, store_path, why) ||
        (*image != '\0' && !device_hello_image(dev, image, why))) {
        return FALSE;
    }
    dev->session = session_new(dev->helper, dev->store, dev->name,
                               dev->image, &device_module_ops, dev);
    dev->lifecycle = lifecycle_engine_new(dev->session,
                                          device_lifecycle_answer, dev);
    dev->use_channel = (flags & VMAUG_HOST_HELLO_F_CHANNEL) != 0;
    if (!dev->use_channel) {
        vmaug_link_free(dev->channel);
        dev->channel = NULL;
    }
    if (dev->channel != NULL && (flags & VMAUG_HOST_HELLO_F_UPLOAD_AREA)) {
        device_offer_area(dev);
    }
    dev->hello = TRUE;
    g_message("device %s connected (store %s, image %s, area %s)", dev->name,
              vmaug_store_get_dir(dev->store),
              dev->image != NULL ? dev->image : "none",
              vmaug_vm_area_get_id(dev->session->area));
    return TRUE;
}

static gboolean device_on_message(VmaugLink *link, guint16 type, guint64 tag,
                                  const guint8 *data, guint32 len,
                                  gpointer user_data, const gchar **why)
{
    Device *dev = user_data;
    gboolean guest_request = (type == VMAUG_HOST_REQUEST ||
                              type == VMAUG_HOST_AREA_REQUEST ||
                              type == VMAUG_HOST_CANCEL) &&
                             !(tag & DEVICE_ADMIN_TAG);

    /* Each message on its own side: an answer goes where its request
     * came from, and a CANCEL must not overtake its REQUEST. */
    if (link == dev->channel ? !guest_request
                             : guest_request && dev->use_channel) {
        *why = link == dev->channel ? "not a guest request on the channel"
                                    : "a guest request beside the channel";
        return FALSE;
    }
    if (type == VMAUG_HOST_HELLO) {
        if (dev->hello) {
            *why = "second HELLO";
            return FALSE;
        }
        return device_hello(dev, data, len, why);
    }
    if (!dev->hello) {
        *why = "message before HELLO";
        return FALSE;
    }
    switch (type) {
    case VMAUG_HOST_REQUEST:
        if (!device_tag_in_use(dev, tag)) {
            device_request(dev, tag, data, len, NULL, 0);
        }
        return TRUE;
    case VMAUG_HOST_AREA_REQUEST:
        return device_area_request(dev, tag, data, len, why);
    case VMAUG_HOST_LIFECYCLE:
        return lifecycle_engine_message(dev->lifecycle, tag, data, len, why);
    case VMAUG_HOST_IMAGE_ACCESS_DONE:
        return device_access_answer(dev, tag, data, len, why);
    case VMAUG_HOST_CANCEL:
        if (len != 0) {
            *why = "CANCEL with a payload";
            return FALSE;
        }
        device_write_cancel(dev, tag);
        if (g_hash_table_remove(dev->pending, &tag)) {
            /* Bounded: the device cancels only what is in flight. */
            g_hash_table_add(dev->cancelled, tag_dup(tag));
        }
        return TRUE;
    default:
        *why = "unexpected message type";
        return FALSE;
    }
}

/*
 * Room in QEMU's end of the request channel for two of the largest
 * requests (an upload's chunks): a chunk then goes in whole from the
 * thread that relays it, where with the default (about 200 KiB) the
 * rest waited for QEMU's main loop to write it piece by piece.  Beyond
 * net.core.wmem_max only with CAP_NET_ADMIN, which a helper run as root
 * has; otherwise as much as the host allows.
 */
static void device_channel_room(int fd)
{
    int size = 2 * (int)(sizeof(struct vmaug_host_msg) + VMAUG_HOST_MAX_MSG);

    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size)) < 0) {
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
    }
}

static gboolean device_free_idle(gpointer data)
{
    device_free(data);
    return G_SOURCE_REMOVE;
}

static void device_on_closed(VmaugLink *link, const gchar *why,
                             gpointer user_data)
{
    Device *dev = user_data;
    VmaugLink *other = link == dev->channel ? dev->link : dev->channel;

    if (dev->closed) {
        return;     /* the other of the two, closed below */
    }
    dev->closed = TRUE;
    /* The channel is the device's as much as the link: QEMU closes both,
     * and a protocol error on either ends the device. */
    if (other != NULL) {
        vmaug_link_close(other, why);
    }
    g_message("device %s disconnected: %s",
              dev->name != NULL ? dev->name : "(no hello)", why);
    dev->helper->devices = g_list_remove(dev->helper->devices, dev);
    /* Not from inside the link's own callback. */
    g_idle_add(device_free_idle, dev);
}

Device *device_new(Helper *helper, int fd)
{
    Device *dev = g_new0(Device, 1);
    struct vmaug_host_hello hello = {
        .proto_version = GUINT32_TO_LE(VMAUG_PROTO_VERSION),
        .flags = GUINT32_TO_LE(VMAUG_HOST_HELLO_F_CHANNEL),
    };
    int sv[2] = { -1, -1 };

    dev->helper = helper;
    dev->pending = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free,
                                         NULL);
    dev->cancelled = g_hash_table_new_full(g_int64_hash, g_int64_equal,
                                           g_free, NULL);
    dev->commits = g_ptr_array_new();
    dev->writes = g_ptr_array_new();
    dev->link = vmaug_link_new(fd, VMAUG_HOST_MAGIC,
                               MAX(VMAUG_HOST_MAX_MSG,
                                   sizeof(struct vmaug_host_hello) +
                                   2 * VMAUG_HOST_PATH_MAX),
                               HELPER_MAX_QUEUED_OUT, device_on_message,
                               device_on_closed, dev);
    helper->devices = g_list_prepend(helper->devices, dev);
    g_strlcpy((gchar *)hello.name, HELPER_VERSION_STRING,
              sizeof(hello.name));
    /* The request channel: QEMU's vCPU thread writes guest requests to it
     * and waits a bounded time for their answers on it, where the link is
     * read by QEMU's main loop (docs/performance.md). */
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0) {
        device_channel_room(sv[1]);
        dev->channel = vmaug_link_new(sv[0], VMAUG_HOST_MAGIC,
                                      VMAUG_HOST_MAX_MSG,
                                      HELPER_MAX_QUEUED_OUT,
                                      device_on_message, device_on_closed,
                                      dev);
    } else {
        g_warning("no request channel for a device: socketpair: %s",
                  g_strerror(errno));
        hello.flags = 0;
    }
    vmaug_link_send(dev->link, VMAUG_HOST_HELLO, 0, &hello, sizeof(hello),
                    NULL, 0, sv[1]);
    return dev;
}

void device_free(Device *dev)
{
    if (dev->access_idle != 0) {
        g_source_remove(dev->access_idle);
    }
    /* Its QEMU is gone, or no longer listens. */
    device_access_end(dev, VMAUG_S_INTERRUPTED, "the device disconnected");
    /* Events still running go on without the device, then its modules
     * finish or stop. */
    lifecycle_engine_free(dev->lifecycle);
    session_free(dev->session);
    if (!dev->closed) {
        dev->helper->devices = g_list_remove(dev->helper->devices, dev);
    }
    if (dev->store != NULL && dev->name != NULL) {
        /* What its flood held back is written now, not at some later
         * window. */
        vmaug_store_audit_flush(dev->store, dev->name);
    }
    for (guint i = 0; i < dev->commits->len; i++) {
        /* They end without us (device_commit_done()). */
        ((DeviceCommit *)g_ptr_array_index(dev->commits, i))->dev = NULL;
    }
    /* Its writes end without it: the one under way is written, those not
     * begun are void, and leave their queues now (the next device for the
     * same image must not find them in its way). */
    while (dev->writes->len > 0) {
        DeviceWrite *dw = g_ptr_array_index(dev->writes, 0);

        g_ptr_array_remove_index_fast(dev->writes, 0);
        dw->dev = NULL;
        if (device_write_unwait(dev->helper, dw)) {
            device_write_free(dw);
        }
    }
    g_ptr_array_unref(dev->writes);
    g_ptr_array_unref(dev->commits);
    vmaug_link_free(dev->link);
    vmaug_link_free(dev->channel);
    upload_area_free(dev->area);
    g_hash_table_unref(dev->pending);
    g_hash_table_unref(dev->cancelled);
    g_free(dev->name);
    g_free(dev->image);
    g_free(dev);
}
