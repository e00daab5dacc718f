/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * vmaugment: the host helper link (QEMU device <-> vmaugment helper), in
 * the style of the protocol header it builds on.  Host-only: the guest
 * library and driver never install it, and no guest sees these messages.
 * QEMU gets it through include/standard-headers/ like the protocol header
 * (scripts/build-qemu.sh); docs/protocol.rst ("Host helper link") is
 * normative.
 */
#ifndef _VMAUGMENT_HOST_LINK_H
#define _VMAUGMENT_HOST_LINK_H

#include <linux/types.h>
#include <linux/virtio_vmaugment.h>

/* ---- Host helper link (QEMU device <-> vmaugment helper, unix socket) ----
 *
 * Every message is struct vmaug_host_msg followed by len bytes.
 *  HELLO     both ways once after connecting: struct vmaug_host_hello.
 *            The device's HELLO is followed by store_len bytes naming the
 *            store directory (property "store"; empty for the helper's
 *            default) and image_len bytes naming the disk image the VM
 *            runs (property "image"; empty for none); UTF-8, no NUL, each
 *            at most VMAUG_HOST_PATH_MAX bytes.  The helper sends 0 and 0.
 *            Nothing else may be sent before the peer's HELLO arrived.
 *            The helper's HELLO sets VMAUG_HOST_HELLO_F_CHANNEL and
 *            carries (SCM_RIGHTS) one end of a connected stream socket,
 *            the request channel; a device whose HELLO sets the flag sends
 *            every REQUEST and CANCEL of a guest request (tag bit 63
 *            clear) on the channel, never on the link, and the helper
 *            answers them there; the rest stays on the link.  Without the
 *            flag in the device's HELLO the helper closes the channel.
 *            A device whose HELLO sets VMAUG_HOST_HELLO_F_UPLOAD_AREA as
 *            well may be sent an UPLOAD_AREA (below).
 *  REQUEST   device -> helper: struct virtio_vmaugment_req + payload, as the
 *            guest sent it after the device validated it.
 *  RESPONSE  helper -> device: struct virtio_vmaugment_resp + payload for
 *            the REQUEST with the same tag; id and opcode are ignored.
 *  EVENT     helper -> device: struct virtio_vmaugment_event + payload;
 *            seq is ignored (the device numbers events).
 *  CANCEL    device -> helper: the REQUEST with this tag will not be
 *            answered to the guest (device reset); len is 0.
 *  LIFECYCLE device -> helper: struct vmaug_host_lifecycle; the VM went
 *            through a lifecycle event.  Only IMAGE_START is answered.
 *  LIFECYCLE_DONE helper -> device: struct vmaug_host_lifecycle_done and
 *            up to VMAUG_HOST_MESSAGE_MAX bytes of UTF-8 text, for the
 *            IMAGE_START with the same tag: the registered modules are
 *            loaded and their image-start handlers returned, or (status
 *            not VMAUG_S_OK) the image must not start, and the text says
 *            why.
 *  IMAGE_ACCESS helper -> device: struct vmaug_host_image_access, with
 *            the tag of the IMAGE_START being held and not yet answered:
 *            release the VM's block nodes (QEMU inactivates them and lets
 *            go of the image's locks) so that a host tool may write the
 *            image before the guest's first instruction, or retake them.
 *  IMAGE_ACCESS_DONE device -> helper: struct
 *            vmaug_host_image_access_done and up to VMAUG_HOST_MESSAGE_MAX
 *            bytes of UTF-8 text (why it failed), with the same tag.  A
 *            retake that fails refuses the start.
 *  UPLOAD_AREA helper -> device, on the link, at most once, only after a
 *            device HELLO that set VMAUG_HOST_HELLO_F_UPLOAD_AREA (and
 *            VMAUG_HOST_HELLO_F_CHANNEL): struct vmaug_host_upload_area,
 *            and (SCM_RIGHTS) a memfd of VMAUG_HOST_AREA_SLOTS *
 *            VMAUG_CHUNK_MAX_DATA bytes sealed with F_SEAL_SHRINK,
 *            F_SEAL_GROW and F_SEAL_SEAL, which both map shared: the
 *            upload area.  Slot i is the VMAUG_CHUNK_MAX_DATA bytes at
 *            i * VMAUG_CHUNK_MAX_DATA.
 *  AREA_REQUEST device -> helper, on the request channel: struct
 *            vmaug_host_area_request, then the struct virtio_vmaugment_req
 *            and struct vmaug_upload_chunk of a guest's UPLOAD_CHUNK, whose
 *            data (req.len - sizeof(struct vmaug_upload_chunk) bytes) the
 *            device copied into the slot named, instead of after them.
 *            Answered by a RESPONSE as a REQUEST is, possibly before the
 *            helper has read the slot; then AREA_RELEASE of the slot.
 *  AREA_RELEASE helper -> device, on the request channel, tag 0: struct
 *            vmaug_host_area_release; the helper will not read the slot
 *            again until the device names it in another AREA_REQUEST,
 *            and the device may write it.  A slot not in use is a
 *            protocol error.
 */
#define VMAUG_HOST_MAGIC                0x48475541  /* "AUGH" */
#define VMAUG_HOST_HELLO                1
#define VMAUG_HOST_REQUEST              2
#define VMAUG_HOST_RESPONSE             3
#define VMAUG_HOST_EVENT                4
#define VMAUG_HOST_CANCEL               5
#define VMAUG_HOST_LIFECYCLE            6
#define VMAUG_HOST_LIFECYCLE_DONE       7
#define VMAUG_HOST_IMAGE_ACCESS         8
#define VMAUG_HOST_IMAGE_ACCESS_DONE    9
#define VMAUG_HOST_UPLOAD_AREA          10
#define VMAUG_HOST_AREA_REQUEST         11
#define VMAUG_HOST_AREA_RELEASE         12
#define VMAUG_HOST_MESSAGE_MAX          1024
#define VMAUG_HOST_PATH_MAX             4096
#define VMAUG_HOST_MAX_MSG              (sizeof(struct virtio_vmaugment_req) + \
					 VMAUG_MAX_REQ_PAYLOAD)

struct vmaug_host_msg {
	__le32 magic;               /* VMAUG_HOST_MAGIC */
	__le16 type;                /* VMAUG_HOST_* */
	__le16 reserved;
	__le32 len;                 /* bytes after this header */
	__le32 reserved2;
	__le64 tag;                 /* pairs a RESPONSE with its REQUEST */
};

/* HELLO: guest requests travel on the request channel (see above). */
#define VMAUG_HOST_HELLO_F_CHANNEL      (1U << 0)
/* Device HELLO: upload chunks may travel in an upload area (see above). */
#define VMAUG_HOST_HELLO_F_UPLOAD_AREA  (1U << 1)

struct vmaug_host_hello {
	__le32 proto_version;       /* VMAUG_PROTO_VERSION */
	__le16 store_len;           /* bytes of store path that follow */
	__le16 image_len;           /* bytes of image path after those */
	__u8 name[VMAUG_INFO_TEXT_MAX];  /* the device id or helper version */
	__le32 flags;               /* VMAUG_HOST_HELLO_F_* */
	__le32 reserved;
};

/* The slots of an upload area: a chunk being written, the next copied. */
#define VMAUG_HOST_AREA_SLOTS           2

struct vmaug_host_upload_area {
	__le32 slots;               /* VMAUG_HOST_AREA_SLOTS */
	__le32 slot_size;           /* VMAUG_CHUNK_MAX_DATA */
};

struct vmaug_host_area_request {
	__le32 slot;                /* < VMAUG_HOST_AREA_SLOTS */
	__le32 reserved;            /* 0 */
	/* followed by struct virtio_vmaugment_req, struct vmaug_upload_chunk */
};

struct vmaug_host_area_release {
	__le32 slot;                /* < VMAUG_HOST_AREA_SLOTS */
	__le32 reserved;            /* 0 */
};

/*
 * The helper runs, for each registration naming the event, the module's
 * handler (VMAUG_EVENT_HOST_START .. VMAUG_EVENT_RESUME).  For IMAGE_START
 * it first loads every registered module, fetching missing ones from its
 * repository.  With VMAUG_LIFECYCLE_F_RECONNECT the VM was already
 * running (the helper reconnected, or the VM migrated here): modules are
 * loaded but the event's handlers do not run again.
 */
#define VMAUG_LIFECYCLE_F_RECONNECT     (1U << 0)

struct vmaug_host_lifecycle {
	__le32 event;               /* VMAUG_EVENT_HOST_START .. RESUME */
	__le32 flags;               /* VMAUG_LIFECYCLE_F_* */
};

struct vmaug_host_lifecycle_done {
	__le32 event;               /* the event answered: IMAGE_START */
	__le16 status;              /* VMAUG_S_* */
	__le16 reserved;
	/* followed by the message */
};

/* What IMAGE_ACCESS asks. */
#define VMAUG_IMAGE_RELEASE             1
#define VMAUG_IMAGE_RETAKE              2

struct vmaug_host_image_access {
	__le32 op;                  /* VMAUG_IMAGE_* */
	__le32 reserved;            /* 0 */
};

struct vmaug_host_image_access_done {
	__le32 op;                  /* the op answered */
	/* VMAUG_S_OK, VMAUG_S_BUSY (no start held for this tag), or
	 * VMAUG_S_IO_ERROR
	 */
	__le16 status;
	__le16 reserved;
	/* followed by the message */
};

#endif /* _VMAUGMENT_HOST_LINK_H */
