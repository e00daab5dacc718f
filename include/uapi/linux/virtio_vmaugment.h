/* SPDX-License-Identifier: ((GPL-2.0 WITH Linux-syscall-note) OR BSD-3-Clause) */
/*
 * vmaugment: the guest <-> host protocol.
 *
 * This is the one definition of the vmaugment protocol as guests see it:
 * the virtio wire format and the ioctls of /dev/vmaugment.  It is shared by
 * the QEMU device (through include/standard-headers/), the Linux guest
 * driver, the guest library and the host helper.  docs/protocol.rst is the
 * normative description; this header must agree with it.  The link between
 * QEMU and the host helper, which no guest sees, is
 * include/vmaugment/host-link.h.
 *
 * Rules for this file (Linux UAPI style):
 *  - fixed-width little-endian fields, explicit padding, no pointers,
 *    enums or bitfields; every structure's size is a multiple of 8;
 *  - every size limit that crosses a boundary is defined here;
 *  - includes are limited to what QEMU's cp_portable() accepts.
 */
#ifndef _LINUX_VIRTIO_VMAUGMENT_H
#define _LINUX_VIRTIO_VMAUGMENT_H

#include <linux/types.h>
#include <linux/ioctl.h>

/*
 * Device identity.  Virtio device IDs 60..63 are unassigned in virtio 1.4
 * and experimental devices count down from the top; a modern virtio-pci
 * device then has PCI device ID 0x1040 + 63 = 0x107f.
 */
#define VIRTIO_ID_VMAUGMENT             63
#define VIRTIO_VMAUGMENT_PCI_DEVICE_ID  (0x1040 + VIRTIO_ID_VMAUGMENT)

/* Protocol version, reported by VMAUG_OP_VERSION and the host hello. */
#define VMAUG_PROTO_VERSION             1

/* Feature bits (device-specific range 0..23). */
#define VIRTIO_VMAUGMENT_F_EVENTS       0   /* the event queue is present */

/* Virtqueues. */
#define VMAUG_VQ_REQUEST                0   /* guest -> device requests */
#define VMAUG_VQ_EVENT                  1   /* device -> guest events */
#define VMAUG_VQ_MAX                    2
#define VMAUG_REQUEST_QUEUE_SIZE        256
#define VMAUG_EVENT_QUEUE_SIZE          64

/* ---- Size limits (every one is enforced by every receiver) ---- */

/* Bytes of module data in one VMAUG_OP_UPLOAD_CHUNK. */
#define VMAUG_CHUNK_MAX_DATA            (1U << 20)
/* Bytes after struct virtio_vmaugment_req; big enough for a full chunk. */
#define VMAUG_MAX_REQ_PAYLOAD           (VMAUG_CHUNK_MAX_DATA + 64)
/* Bytes after struct virtio_vmaugment_resp. */
#define VMAUG_MAX_RESP_PAYLOAD          (1U << 20)
/* Bytes after struct virtio_vmaugment_event. */
#define VMAUG_MAX_EVENT_PAYLOAD         4096
/* Bytes a ping echoes. */
#define VMAUG_MAX_PING_PAYLOAD          4096
/* Largest module package an upload may announce. */
#define VMAUG_MAX_UPLOAD_SIZE           (1ULL << 30)
/* Fixed string fields: NUL-padded, at least one NUL, UTF-8. */
#define VMAUG_NAME_MAX                  64  /* module name, incl. NUL */
#define VMAUG_VERSION_MAX               32  /* module version, incl. NUL */
#define VMAUG_FUNCTION_MAX              64  /* exported function name */
#define VMAUG_CONFIG_KEY_MAX            128 /* configuration key */
#define VMAUG_MAX_CONFIG_VALUE          4096
#define VMAUG_INFO_TEXT_MAX             64  /* version strings */
/* Entries one VMAUG_OP_LIST response may carry. */
#define VMAUG_LIST_MAX_ENTRIES          64

/* ---- Device configuration space ---- */

struct virtio_vmaugment_config {
	__le32 proto_version;       /* VMAUG_PROTO_VERSION */
	__le32 helper_state;        /* VMAUG_HELPER_* ; config change on flip */
	__le32 max_req_payload;     /* VMAUG_MAX_REQ_PAYLOAD */
	__le32 max_resp_payload;    /* VMAUG_MAX_RESP_PAYLOAD */
};

#define VMAUG_HELPER_DISCONNECTED       0
#define VMAUG_HELPER_CONNECTED          1

/* ---- Request queue ----
 *
 * One request is one descriptor chain: device-readable buffers holding
 * struct virtio_vmaugment_req followed by exactly hdr.len payload bytes,
 * then device-writable buffers that receive struct virtio_vmaugment_resp
 * followed by up to VMAUG_MAX_RESP_PAYLOAD bytes.
 */
struct virtio_vmaugment_req {
	__le64 id;                  /* chosen by the guest, echoed back */
	__le16 opcode;              /* VMAUG_OP_* */
	__le16 flags;               /* must be 0 */
	__le32 len;                 /* payload bytes after this header */
};

struct virtio_vmaugment_resp {
	__le64 id;                  /* the request's id */
	__le16 opcode;              /* the request's opcode */
	__le16 status;              /* VMAUG_S_* */
	/*
	 * Payload bytes after this header.  With VMAUG_S_NO_SPACE it is the
	 * size the response needed and no payload is written.  With any other
	 * error the payload, if any, is a UTF-8 message without NUL.
	 */
	__le32 len;
};

/* Opcodes.  Answered by the device itself: VERSION, PING, SUBSCRIBE. */
#define VMAUG_OP_VERSION                0x0001 /* -> vmaug_version_info */
#define VMAUG_OP_PING                   0x0002 /* bytes -> the same bytes */
#define VMAUG_OP_QUERY                  0x0010 /* module_ref -> module_info */
#define VMAUG_OP_LOAD                   0x0011 /* module_ref -> module_info */
#define VMAUG_OP_UNLOAD                 0x0012 /* module_ref -> nothing */
#define VMAUG_OP_UPLOAD_BEGIN           0x0020 /* upload_begin -> upload_state */
#define VMAUG_OP_UPLOAD_CHUNK           0x0021 /* upload_chunk+data -> upload_state */
#define VMAUG_OP_UPLOAD_COMMIT          0x0022 /* upload_ref -> module_info */
#define VMAUG_OP_UPLOAD_ABORT           0x0023 /* upload_ref -> nothing */
#define VMAUG_OP_INVOKE                 0x0030 /* invoke+data -> data */
#define VMAUG_OP_CONFIG_GET             0x0040 /* config_ref -> value */
#define VMAUG_OP_CONFIG_SET             0x0041 /* config_ref+value -> nothing */
#define VMAUG_OP_REGISTER               0x0050 /* registration -> nothing */
#define VMAUG_OP_UNREGISTER             0x0051 /* module_ref -> nothing */
#define VMAUG_OP_LIST                   0x0052 /* list_req -> list_resp+entries */
#define VMAUG_OP_SUBSCRIBE              0x0060 /* subscribe -> subscribe */
#define VMAUG_OP_SERVICING_REPORT       0x0070 /* servicing_report+text -> servicing_report */

/* Status codes. */
#define VMAUG_S_OK                      0
#define VMAUG_S_INVALID                 1  /* malformed request */
#define VMAUG_S_UNSUPPORTED             2  /* unknown opcode */
#define VMAUG_S_TOO_BIG                 3  /* a size limit was exceeded */
#define VMAUG_S_NO_SPACE                4  /* response buffer too small */
#define VMAUG_S_UNAVAILABLE             5  /* host helper not connected */
#define VMAUG_S_INTERRUPTED             6  /* helper lost or VM migrated */
#define VMAUG_S_NOT_FOUND               7  /* no such module/upload/key */
#define VMAUG_S_EXISTS                  8  /* already present */
#define VMAUG_S_DENIED                  9  /* refused by signature/policy */
#define VMAUG_S_BUSY                    10 /* id in flight, or throttled */
#define VMAUG_S_HASH_MISMATCH           11 /* upload SHA-256 differs */
#define VMAUG_S_IO_ERROR                12 /* host storage failed */
#define VMAUG_S_MODULE_FAILED           13 /* module crashed or failed */
#define VMAUG_S_TIMEOUT                 14 /* host gave up waiting */
#define VMAUG_S_INTERNAL                15 /* bug on the host side */
#define VMAUG_S_MAX                     15

/* Module kinds. */
#define VMAUG_KIND_UI                   1
#define VMAUG_KIND_COMMUNICATION        2
#define VMAUG_KIND_UPGRADE              3
#define VMAUG_KIND_CONFIGURATION        4
#define VMAUG_KIND_SCANNER              5

/* Module states in struct vmaug_module_info. */
#define VMAUG_MODULE_STORED             1  /* verified and in the store */
#define VMAUG_MODULE_LOADED             2  /* running in its sandbox */
#define VMAUG_MODULE_CRASHED            3  /* its sandbox died */

struct vmaug_version_info {
	__le32 proto_version;
	__le32 helper_state;        /* VMAUG_HELPER_* */
	__le32 max_req_payload;
	__le32 max_resp_payload;
	__u8 device[VMAUG_INFO_TEXT_MAX];   /* e.g. "vmaugment 0.1" */
};

/* An empty version means "the newest the host has". */
struct vmaug_module_ref {
	__u8 name[VMAUG_NAME_MAX];
	__u8 version[VMAUG_VERSION_MAX];
};

struct vmaug_module_info {
	struct vmaug_module_ref ref;
	__le32 kind;                /* VMAUG_KIND_* */
	__le32 state;               /* VMAUG_MODULE_* */
	__le32 events;              /* VMAUG_EVENT_MASK(lifecycle events) */
	__le32 reserved;
};

struct vmaug_upload_begin {
	__le64 total_size;          /* 1 .. VMAUG_MAX_UPLOAD_SIZE */
	__u8 sha256[32];            /* of the whole package */
	struct vmaug_module_ref ref;    /* what the package claims to be */
};

/*
 * Upload ids are chosen by the host and valid only for the VM that began
 * the upload; BEGIN with the same size, hash, name and version resumes
 * that VM's unfinished upload at its offset.
 */
struct vmaug_upload_ref {
	__le64 upload_id;
};

struct vmaug_upload_chunk {
	__le64 upload_id;
	__le64 offset;              /* must equal upload_state.offset */
	/* followed by 1 .. VMAUG_CHUNK_MAX_DATA bytes */
};

struct vmaug_upload_state {
	__le64 upload_id;
	__le64 offset;              /* bytes received and stored so far */
};

struct vmaug_invoke {
	__u8 module[VMAUG_NAME_MAX];
	__u8 function[VMAUG_FUNCTION_MAX];
	/* followed by the call's input bytes */
};

struct vmaug_config_ref {
	__u8 module[VMAUG_NAME_MAX];
	__u8 key[VMAUG_CONFIG_KEY_MAX];
	/* CONFIG_SET: followed by up to VMAUG_MAX_CONFIG_VALUE bytes */
};

#define VMAUG_REG_F_REQUIRED            (1U << 0)  /* image start fails without it */

struct vmaug_registration {
	struct vmaug_module_ref ref;
	__le32 events;              /* VMAUG_EVENT_MASK() of lifecycle events */
	__le32 flags;               /* VMAUG_REG_F_* */
};

#define VMAUG_LIST_MODULES              1   /* vmaug_module_info */
#define VMAUG_LIST_REGISTRATIONS        2   /* vmaug_registration */
/* Host owner only (admin tags); the device refuses them from the guest. */
#define VMAUG_LIST_SANDBOXES            3   /* vmaug_sandbox_info */
#define VMAUG_LIST_UI                   4   /* vmaug_ui_entry + JSON */

struct vmaug_list_req {
	__le32 what;                /* VMAUG_LIST_* */
	__le32 start;               /* index of the first entry wanted */
};

struct vmaug_list_resp {
	__le32 count;               /* entries that follow, <= VMAUG_LIST_MAX_ENTRIES */
	__le32 total;               /* entries the host has */
	/* followed by count vmaug_module_info or vmaug_registration */
};

/* One running (or crashed) module process, as VMAUG_LIST_SANDBOXES lists. */
struct vmaug_sandbox_info {
	struct vmaug_module_ref ref;
	__le32 state;               /* 0 starting, else VMAUG_MODULE_* */
	__le32 pid;                 /* host process, 0 once gone */
	__le64 memory_limit;        /* bytes of address space (RLIMIT_AS) */
	__le64 cpu_limit;           /* seconds of CPU time (RLIMIT_CPU) */
	__le64 uptime_ms;           /* since the process started */
	__le32 queued_calls;        /* calls and events waiting, incl. current */
	__le32 restarts;            /* times it crashed and was loaded again */
	__le32 uid;                 /* host uid it runs as, 0 once gone */
	__le32 missing;             /* VMAUG_SANDBOX_* it runs without */
};

/*
 * Confinement a host may be unable to give a module process (the host
 * owner must have accepted running modules without it).
 */
#define VMAUG_SANDBOX_USER_NS           (1u << 0)  /* its own user namespace */
#define VMAUG_SANDBOX_OWN_ID            (1u << 1)  /* a uid and gid of its own */
#define VMAUG_SANDBOX_NAMESPACES        (1u << 2)  /* PID, mount, net, IPC, UTS */
#define VMAUG_SANDBOX_EMPTY_ROOT        (1u << 3)  /* pivoted into an empty root */
#define VMAUG_SANDBOX_NO_CAPS           (1u << 4)  /* no capabilities at all */

/*
 * One UI element a module declared (VMAUG_LIST_UI): the header, then len
 * bytes of a JSON object, then zero padding to a multiple of 8 bytes.
 */
#define VMAUG_UI_MAX_JSON               4096
struct vmaug_ui_entry {
	__u8 module[VMAUG_NAME_MAX];
	__le32 len;                 /* 2 .. VMAUG_UI_MAX_JSON */
	__le32 reserved;
};

/*
 * VMAUG_OP_SERVICING_REPORT: the guest reports how an offline update
 * (a patch bundle applied to its image while it was switched off) went
 * at this boot.  bundle, version and manifest_sha256 repeat the record
 * the bundle left in the image; the host accepts one report per bundle it
 * applied to this VM's image.  The request is followed by up to
 * VMAUG_SERVICING_MESSAGE_MAX bytes of UTF-8 (no NUL) the guest has to
 * say; the host keeps it as untrusted text.  The response, and the
 * VMAUG_EVENT_SERVICING the host then sends, carry the same structure
 * with boot set: the image's start, counted from 1 after the apply, at
 * which the report arrived.
 */
#define VMAUG_SERVICING_MESSAGE_MAX     256
#define VMAUG_SERVICING_CONFIRMED       1   /* the update is in effect */
#define VMAUG_SERVICING_FAILED          2   /* the guest found it failed */

struct vmaug_servicing_report {
	__u8 bundle[VMAUG_NAME_MAX];        /* bundle id */
	__u8 version[VMAUG_VERSION_MAX];    /* bundle version */
	__u8 manifest_sha256[32];           /* of the signed manifest */
	__le32 outcome;             /* VMAUG_SERVICING_* */
	__le32 boot;                /* 0 in a request; set by the host */
};

struct vmaug_subscribe {
	__le32 mask;                /* VMAUG_EVENT_MASK() bits; the reply is the new mask */
	__le32 reserved;
};

/* ---- Event queue ----
 *
 * The guest keeps device-writable buffers of at least
 * sizeof(struct virtio_vmaugment_event) + VMAUG_MAX_EVENT_PAYLOAD bytes on
 * the event queue; the device fills one per event whose type is in the
 * subscribed mask.  Events that find no buffer are dropped and the next
 * delivered event carries VMAUG_EVENT_F_LOST.
 */
struct virtio_vmaugment_event {
	__le64 seq;                 /* increases by one per generated event */
	__le32 type;                /* VMAUG_EVENT_* */
	__le32 flags;               /* VMAUG_EVENT_F_* */
	__le32 len;                 /* payload bytes after this header */
	__le32 reserved;
};

#define VMAUG_EVENT_F_LOST              (1U << 0)

/*
 * Lifecycle events: payload is empty, or a vmaug_module_ref for the module
 * events.
 */
#define VMAUG_EVENT_HOST_START          1
#define VMAUG_EVENT_IMAGE_START         2
#define VMAUG_EVENT_IMAGE_STOP          3
#define VMAUG_EVENT_HOST_STOP           4
#define VMAUG_EVENT_PAUSE               5
#define VMAUG_EVENT_RESUME              6
#define VMAUG_EVENT_HELPER_CONNECTED    7
#define VMAUG_EVENT_HELPER_LOST         8
#define VMAUG_EVENT_MODULE_LOADED       9   /* payload: vmaug_module_ref */
#define VMAUG_EVENT_MODULE_UNLOADED     10  /* payload: vmaug_module_ref */
#define VMAUG_EVENT_MODULE_CRASHED      11  /* payload: vmaug_module_ref */
#define VMAUG_EVENT_MODULE_MESSAGE      12  /* payload: ref + module bytes */
#define VMAUG_EVENT_RESTART_REQUESTED   13  /* payload: vmaug_restart */
#define VMAUG_EVENT_MODULE_REFUSED      14  /* payload: ref + UTF-8 reason */
#define VMAUG_EVENT_SERVICING           15  /* payload: servicing_report + text */
#define VMAUG_EVENT_MAX                 31
#define VMAUG_EVENT_MASK(type)          (1U << (type))
/* The lifecycle events a registration may name. */
#define VMAUG_EVENT_LIFECYCLE_MASK      (VMAUG_EVENT_MASK(VMAUG_EVENT_HOST_START) | \
					 VMAUG_EVENT_MASK(VMAUG_EVENT_IMAGE_START) | \
					 VMAUG_EVENT_MASK(VMAUG_EVENT_IMAGE_STOP) | \
					 VMAUG_EVENT_MASK(VMAUG_EVENT_HOST_STOP) | \
					 VMAUG_EVENT_MASK(VMAUG_EVENT_PAUSE) | \
					 VMAUG_EVENT_MASK(VMAUG_EVENT_RESUME))

/* What a module asked to restart (VMAUG_EVENT_RESTART_REQUESTED). */
#define VMAUG_RESTART_IMAGE             1   /* the device resets the VM */
#define VMAUG_RESTART_HOST              2   /* QEMU exits with the code below */
/* Exit status of a QEMU that stops so that its supervisor restarts it. */
#define VMAUG_RESTART_EXIT_CODE         75

struct vmaug_restart {
	struct vmaug_module_ref ref;
	__le32 what;                /* VMAUG_RESTART_* */
	__le32 reserved;
};

/* ---- /dev/vmaugment (Linux guest driver) ---- */

#define VMAUG_IOCTL_MAGIC               0xB6

/*
 * VMAUG_IOC_CALL: one synchronous request.  The driver chooses the request
 * id; the payload is req_len bytes at req_addr; up to resp_len bytes of the
 * response payload go to resp_addr.  On return status is the host's
 * VMAUG_S_* and resp_len the response payload length the host reported
 * (larger than the buffer when status is VMAUG_S_NO_SPACE).
 */
struct vmaug_ioctl_call {
	__u16 opcode;               /* in */
	__u16 status;               /* out */
	__u32 timeout_ms;           /* in: 0 = driver default */
	__u64 req_addr;             /* in */
	__u32 req_len;              /* in: <= VMAUG_MAX_REQ_PAYLOAD */
	__u32 resp_len;             /* in: buffer size; out: payload length */
	__u64 resp_addr;            /* in */
};

/*
 * VMAUG_IOC_UPLOAD_CHUNK: send one VMAUG_OP_UPLOAD_CHUNK whose data the
 * device reads straight from the caller's pinned pages.
 */
struct vmaug_ioctl_chunk {
	__u64 upload_id;            /* in */
	__u64 offset;               /* in; out: the host's new offset */
	__u64 data_addr;            /* in */
	__u32 data_len;             /* in: 1 .. VMAUG_CHUNK_MAX_DATA */
	__u16 status;               /* out: VMAUG_S_* */
	__u16 reserved;
	__u32 timeout_ms;           /* in: 0 = driver default */
	__u32 reserved2;
};

/* VMAUG_IOC_SUBSCRIBE: which events read() returns on this file. */
struct vmaug_ioctl_subscribe {
	__u32 mask;                 /* VMAUG_EVENT_MASK() bits */
	__u32 reserved;
};

#define VMAUG_IOC_CALL          _IOWR(VMAUG_IOCTL_MAGIC, 0x01, struct vmaug_ioctl_call)
#define VMAUG_IOC_UPLOAD_CHUNK  _IOWR(VMAUG_IOCTL_MAGIC, 0x02, struct vmaug_ioctl_chunk)
#define VMAUG_IOC_SUBSCRIBE     _IOW(VMAUG_IOCTL_MAGIC, 0x03, struct vmaug_ioctl_subscribe)

/* Default and largest time a call waits for the host, in milliseconds. */
#define VMAUG_DEFAULT_TIMEOUT_MS        30000
#define VMAUG_MAX_TIMEOUT_MS            600000

#endif /* _LINUX_VIRTIO_VMAUGMENT_H */
