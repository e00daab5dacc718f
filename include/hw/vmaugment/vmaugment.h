/*
 * vmaugment virtio device: lets guest software ask the host to load,
 * upload and call sandboxed extension modules.
 *
 * The device answers VERSION, PING and SUBSCRIBE itself and relays every
 * other request to the vmaugment host helper over a chardev.  Its files:
 *
 *   vmaugment.c            the virtqueues, requests, migration, realize
 *   vmaugment-events.c     events for the guest
 *   vmaugment-link.c       the link to the host helper (below the rest;
 *                          it reports through VMAugmentLinkOps)
 *   vmaugment-lifecycle.c  lifecycle events, and every decision to hold,
 *                          reset or stop the VM
 *   vmaugment-qmp.c        the QMP commands and events
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef QEMU_VMAUGMENT_H
#define QEMU_VMAUGMENT_H

#include "hw/qdev-core.h"
#include "hw/virtio/virtio.h"
#include "chardev/char-fe.h"
#include "qemu/coroutine.h"
#include "qemu/queue.h"
#include "qemu/timer.h"
#include "system/runstate.h"
#include "standard-headers/linux/virtio_vmaugment.h"
#include "standard-headers/vmaugment/host-link.h"

#define TYPE_VMAUGMENT "vmaugment-device"
OBJECT_DECLARE_SIMPLE_TYPE(VirtIOVMAugment, VMAUGMENT)

/* Stop taking guest requests while this much is queued for the helper. */
#define VMAUGMENT_OUT_HIGH_WATER    (4 * 1024 * 1024)
/*
 * How long the thread that relayed a guest's requests waits for their
 * answers on the request channel (property relay-wait-us; vmaugment.c):
 * longer than a relayed QUERY or INVOKE takes the helper on an idle host,
 * short beside what the BQL, held meanwhile, may be held for.
 */
#define VMAUGMENT_DEFAULT_RELAY_WAIT_US  200
#define VMAUGMENT_MAX_RELAY_WAIT_US      2000
/*
 * The same for an upload chunk whose data the device put in the upload
 * area (property chunk-wait-us, at most VMAUGMENT_MAX_RELAY_WAIT_US): its
 * kick relays only a header, and its answer comes once the helper has
 * written the chunk before it, past the 200 us of a query on a host like
 * ours (docs/performance.md, "Upload chunks in a shared area").
 */
#define VMAUGMENT_DEFAULT_CHUNK_WAIT_US  1000
/* Of which polled before sleeping (vmaugment_link_wait()). */
#define VMAUGMENT_RELAY_SPIN_NS          (50 * SCALE_US)
/*
 * No wait after a kick that relayed more than this through the sockets:
 * an upload's chunks carried in their REQUESTs (no upload area, or its
 * slots busy), answered once the helper has read and written them;
 * waiting would take the CPU the helper needs.
 */
#define VMAUGMENT_RELAY_WAIT_MAX_BYTES   (64 * 1024)
/* Events kept for the guest while it has no event buffer posted. */
#define VMAUGMENT_EVENTS_PENDING    64

typedef struct VMAugmentConf {
    CharBackend chr;
    char *store;
    char *image;
    uint32_t request_timeout_ms;
    uint32_t start_timeout_ms;
    uint32_t relay_wait_us;
    uint32_t chunk_wait_us;
    bool upload_area;
    bool allow_restart;
} VMAugmentConf;

/* Where the image start is (VmaugmentImageStart in the QAPI schema). */
typedef enum VMAugmentStart {
    VMAUGMENT_START_WAITING,
    VMAUGMENT_START_DONE,
    VMAUGMENT_START_FAILED,
} VMAugmentStart;

/* A guest request relayed to the helper and not yet answered. */
typedef struct VMAugmentRequest {
    VirtQueueElement *elem;
    uint64_t tag;
    uint64_t id;
    uint16_t opcode;
    int64_t deadline_ns;
    int64_t relayed_ns;         /* QEMU_CLOCK_REALTIME */
    bool in_area;               /* an upload chunk in the upload area */
    /* The answer, while it waits for the VM to run. */
    uint16_t status;
    uint32_t answer_len;
    uint8_t *answer;
    QTAILQ_ENTRY(VMAugmentRequest) next;
} VMAugmentRequest;

/*
 * A request the host itself (QMP) sends to the helper.  Its tags have
 * VMAUGMENT_ADMIN_TAG set; guest requests count up from 0 and never get
 * there.
 */
#define VMAUGMENT_ADMIN_TAG         (1ULL << 63)

typedef struct VMAugmentAdminCall {
    VirtIOVMAugment *dev;
    Coroutine *co;
    uint64_t tag;
    QEMUTimer *timer;
    bool done;
    uint16_t status;
    GByteArray *answer;
    QTAILQ_ENTRY(VMAugmentAdminCall) next;
} VMAugmentAdminCall;

/*
 * What the helper link (vmaugment-link.c) reports to the rest of the
 * device; the link itself calls nothing above it.
 */
typedef struct VMAugmentLinkOps {
    /* The helper's HELLO arrived (true), or the link closed (false). */
    void (*ready)(VirtIOVMAugment *s, bool ready);
    /* The helper's answer to the guest request @tag. */
    void (*response)(VirtIOVMAugment *s, uint64_t tag, uint16_t status,
                     const uint8_t *data, uint32_t len);
    /* An event of a known type, its length checked. */
    void (*event)(VirtIOVMAugment *s, uint32_t type, const uint8_t *data,
                  uint32_t len);
    /* LIFECYCLE_DONE; false (with *why) is a protocol error. */
    bool (*lifecycle_done)(VirtIOVMAugment *s, uint64_t tag,
                           const uint8_t *data, uint32_t len,
                           const char **why);
    /* IMAGE_ACCESS; false (with *why) is a protocol error. */
    bool (*image_access)(VirtIOVMAugment *s, uint64_t tag,
                         const uint8_t *data, uint32_t len,
                         const char **why);
    /* What is queued for the helper fell below VMAUGMENT_OUT_HIGH_WATER. */
    void (*drained)(VirtIOVMAugment *s);
} VMAugmentLinkOps;

typedef struct VMAugmentEvent {
    uint32_t type;
    uint32_t len;
    QSIMPLEQ_ENTRY(VMAugmentEvent) next;
    uint8_t data[];
} VMAugmentEvent;

struct VirtIOVMAugment {
    VirtIODevice parent_obj;

    VMAugmentConf conf;
    VirtQueue *req_vq;
    VirtQueue *event_vq;
    VMChangeStateEntry *vmstate_change;
    QEMUBH *resume_bh;
    bool vm_running;

    /* Guest request being validated; large enough for the biggest one. */
    uint8_t *req_buf;

    /* The link to the host helper (vmaugment-link.c). */
    const VMAugmentLinkOps *link_ops;
    bool helper_open;           /* socket connected */
    bool helper_ready;          /* and the helper's HELLO arrived */
    GByteArray *out;            /* bytes queued for the helper */
    size_t out_done;            /* bytes of @out already written */
    guint out_watch;
    uint8_t *in_buf;            /* message being received */
    size_t in_len;
    /*
     * The request channel (docs/protocol.rst), -1 without one: guest
     * requests go out on it from whichever thread relays them, and their
     * answers come back on it, read by the thread that relayed them while
     * it waits (vmaugment.c), or by the main loop while @chan_watched.
     */
    bool chan_asked;            /* our HELLO asked for one */
    int chan_fd;
    bool chan_watched;
    bool chan_read_on;          /* the fd handlers set now */
    bool chan_write_on;
    GByteArray *chan_out;       /* what the channel did not take yet */
    size_t chan_out_done;
    uint8_t *chan_in_buf;       /* message being received */
    size_t chan_in_len;
    uint8_t *chan_rbuf;         /* what one read takes */
    /*
     * The upload area the helper shares (UPLOAD_AREA), NULL without one:
     * an upload chunk's data is copied from guest memory into a free
     * slot, and only its header goes on the channel.  A slot is busy from
     * its AREA_REQUEST until the helper's AREA_RELEASE of it.
     */
    bool area_asked;            /* our HELLO asked for one */
    uint8_t *area;
    bool area_busy[VMAUG_HOST_AREA_SLOTS];

    QTAILQ_HEAD(, VMAugmentRequest) inflight;
    uint32_t n_inflight;
    uint64_t next_tag;
    /*
     * How long the relaying thread waits for answers: relay-wait-us, or
     * 0 after a wait in vain until an answer comes within it again.
     */
    int64_t relay_wait_ns;
    int64_t chunk_wait_ns;      /* the same for upload chunks in the area */
    uint64_t kick_bytes;        /* bytes relayed on sockets since the kick */
    bool kick_area;             /* and an upload chunk in the area */
    QEMUTimer *timeout_timer;
    /*
     * Requests whose answer waits for the VM to run again: nothing is
     * written to guest memory while it is stopped, as migration may have
     * copied it already.  Restored requests wait here too, interrupted.
     */
    QTAILQ_HEAD(, VMAugmentRequest) answered;

    QTAILQ_HEAD(, VMAugmentAdminCall) admin;

    uint32_t event_mask;
    uint64_t event_seq;
    bool event_lost;
    QSIMPLEQ_HEAD(, VMAugmentEvent) events;
    uint32_t n_events;

    /* Lifecycle (vmaugment-lifecycle.c). */
    Notifier shutdown_notifier;
    VMAugmentStart start;
    bool start_held;            /* vm_start_hold() taken */
    bool host_started;          /* HOST_START sent to some helper */
    bool image_ran;             /* the VM ran since QEMU started */
    bool image_prepared;        /* a helper answered IMAGE_START with OK */
    bool image_stopped;         /* IMAGE_STOP sent */
    uint64_t start_tag;         /* IMAGE_START awaiting its answer, or 0 */
    int64_t start_sent_ns;
    /* The decision, for query-vmaugment: QMP clients may miss the event. */
    bool start_decided;
    /* The block nodes are released for the helper (IMAGE_ACCESS). */
    bool image_released;
    uint64_t start_duration_us;
    char *start_message;
    QEMUTimer *start_timer;
};

/*
 * Whether answers and events may be written to the guest: while the VM
 * is stopped its RAM may already have been migrated, so nothing is
 * written to it until it runs again.
 */
static inline bool vmaugment_can_complete(VirtIOVMAugment *s)
{
    return s->vm_running;
}

/* The proxy (vmaugment-pci) the user created, if any. */
static inline DeviceState *vmaugment_proxy(VirtIOVMAugment *s)
{
    BusState *bus = qdev_get_parent_bus(DEVICE(s));

    return bus ? bus->parent : NULL;
}

/* The QOM path QMP uses to name the device. */
static inline char *vmaugment_path(VirtIOVMAugment *s)
{
    DeviceState *proxy = vmaugment_proxy(s);

    return object_get_canonical_path(proxy ? OBJECT(proxy) : OBJECT(s));
}

/* Events for the guest (vmaugment-events.c). */
/*
 * Queue an event for the guest.  Dropped, and flagged as lost, when the
 * guest did not subscribe to @type or too many events are pending.
 */
void vmaugment_post_event(VirtIOVMAugment *s, uint32_t type,
                          const void *data, uint32_t len);
/* Write what is pending into the guest's event buffers. */
void vmaugment_events_flush(VirtIOVMAugment *s);
void vmaugment_events_drop(VirtIOVMAugment *s);

/*
 * Send a request to the helper on behalf of the host and wait for its
 * answer.  Returns the helper's VMAUG_S_* status with the response payload
 * in @answer (free it with g_byte_array_unref()), or -1 with @errp set when
 * there is no helper or it did not answer in time.
 */
int coroutine_fn vmaugment_admin_call(VirtIOVMAugment *s, uint16_t opcode,
                                      const void *payload, uint32_t len,
                                      GByteArray **answer, Error **errp);

/* The helper link (vmaugment-link.c). */
void vmaugment_link_init(VirtIOVMAugment *s, const VMAugmentLinkOps *ops);
/* The VM runs again: read what the helper sent meanwhile. */
void vmaugment_link_resume(VirtIOVMAugment *s);
void vmaugment_link_cleanup(VirtIOVMAugment *s);
/* Bytes queued for the helper and not yet written. */
size_t vmaugment_link_backlog(VirtIOVMAugment *s);
/* Text from the helper as the host owner may see it: printable ASCII. */
char *vmaugment_helper_text(const void *text, size_t len);
void vmaugment_helper_send(VirtIOVMAugment *s, uint16_t type, uint64_t tag,
                           const void *a, size_t alen,
                           const void *b, size_t blen);
/* Write what is queued for the helper, waiting at most @timeout_ms. */
void vmaugment_helper_flush_sync(VirtIOVMAugment *s, int64_t timeout_ms);
/* Whether guest requests travel on the request channel. */
bool vmaugment_link_has_channel(VirtIOVMAugment *s);
/*
 * A free slot of the upload area (its index; its bytes in *@data), or
 * -1 when there is no area or every slot is busy.
 */
int vmaugment_link_area_slot(VirtIOVMAugment *s, uint8_t **data);
/*
 * Relay a guest's UPLOAD_CHUNK (@hdr, then @chunk, the struct before its
 * data) whose data was copied into @slot: the slot is busy until its
 * answer.
 */
void vmaugment_link_send_area(VirtIOVMAugment *s, uint64_t tag, int slot,
                              const struct virtio_vmaugment_req *hdr,
                              const void *chunk);
/*
 * Wait until @deadline_ns (QEMU_CLOCK_REALTIME) for the request channel to
 * hold something, and read it: answers reach VMAugmentLinkOps.response.
 * False when nothing came in time or there is no channel any more.
 */
bool vmaugment_link_wait(VirtIOVMAugment *s, int64_t deadline_ns);
/*
 * Whether the main loop reads the request channel: while answers are due
 * that no thread waits for.
 */
void vmaugment_link_watch(VirtIOVMAugment *s, bool on);
uint64_t vmaugment_next_tag(VirtIOVMAugment *s);

/* Lifecycle (vmaugment-lifecycle.c). */
bool vmaugment_lifecycle_realize(VirtIOVMAugment *s, Error **errp);
void vmaugment_lifecycle_unrealize(VirtIOVMAugment *s);
/* The helper completed its HELLO. */
void vmaugment_lifecycle_helper_ready(VirtIOVMAugment *s);
void vmaugment_lifecycle_vm_state(VirtIOVMAugment *s, bool running,
                                  RunState state);
bool vmaugment_lifecycle_done(VirtIOVMAugment *s, uint64_t tag,
                              const uint8_t *data, uint32_t len,
                              const char **why);
bool vmaugment_lifecycle_image_access(VirtIOVMAugment *s, uint64_t tag,
                                      const uint8_t *data, uint32_t len,
                                      const char **why);
/* A module asked for a restart (VMAUG_EVENT_RESTART_REQUESTED). */
void vmaugment_lifecycle_restart(VirtIOVMAugment *s, const uint8_t *data,
                                 uint32_t len);

/* QMP (vmaugment-qmp.c): tell the host owner what the helper reported. */
void vmaugment_qmp_helper_event(VirtIOVMAugment *s, uint32_t type,
                                const uint8_t *data, uint32_t len);

#endif
