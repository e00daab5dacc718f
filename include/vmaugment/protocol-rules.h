/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What the payload of each request must be: one table, read by the QEMU
 * device (which checks every guest request against it before looking
 * further) and by the host helper (which checks again, as a QEMU is no
 * more trusted than its guest).  QEMU gets it through
 * include/standard-headers/ with the vocabulary (scripts/build-qemu.sh);
 * docs/protocol.rst is normative for the sizes.  Kept out of the UAPI
 * header, which holds no code.
 */
#ifndef VMAUGMENT_PROTOCOL_RULES_H
#define VMAUGMENT_PROTOCOL_RULES_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <linux/virtio_vmaugment.h>

struct vmaug_proto_op {
    uint16_t opcode;
    uint8_t device_only;        /* answered by the device, never relayed */
    const char *name;
    uint32_t min_len;           /* payload bounds */
    uint32_t max_len;
    /* Fixed string fields that must hold a NUL: offset and size. */
    struct {
        uint16_t offset;
        uint16_t size;
    } strings[2];
};

#define VMAUG_PROTO_FIXED(type) sizeof(type), sizeof(type)
#define VMAUG_PROTO_REF(type, ref) \
    { { offsetof(type, ref.name), VMAUG_NAME_MAX }, \
      { offsetof(type, ref.version), VMAUG_VERSION_MAX } }
#define VMAUG_PROTO_STRINGS(type, a, asize, b, bsize) \
    { { offsetof(type, a), asize }, { offsetof(type, b), bsize } }
#define VMAUG_PROTO_MODULE_REF \
    VMAUG_PROTO_STRINGS(struct vmaug_module_ref, name, VMAUG_NAME_MAX, \
                        version, VMAUG_VERSION_MAX)

/* The rules of @opcode, or NULL for an opcode the protocol lacks. */
static inline const struct vmaug_proto_op *vmaug_proto_op(uint16_t opcode)
{
    static const struct vmaug_proto_op ops[] = {
        { VMAUG_OP_VERSION, 1, "version", 0, 0 },
        { VMAUG_OP_PING, 1, "ping", 0, VMAUG_MAX_PING_PAYLOAD },
        { VMAUG_OP_SUBSCRIBE, 1, "subscribe",
          VMAUG_PROTO_FIXED(struct vmaug_subscribe) },
        { VMAUG_OP_QUERY, 0, "query",
          VMAUG_PROTO_FIXED(struct vmaug_module_ref),
          VMAUG_PROTO_MODULE_REF },
        { VMAUG_OP_LOAD, 0, "load",
          VMAUG_PROTO_FIXED(struct vmaug_module_ref),
          VMAUG_PROTO_MODULE_REF },
        { VMAUG_OP_UNLOAD, 0, "unload",
          VMAUG_PROTO_FIXED(struct vmaug_module_ref),
          VMAUG_PROTO_MODULE_REF },
        { VMAUG_OP_UPLOAD_BEGIN, 0, "upload-begin",
          VMAUG_PROTO_FIXED(struct vmaug_upload_begin),
          VMAUG_PROTO_REF(struct vmaug_upload_begin, ref) },
        { VMAUG_OP_UPLOAD_CHUNK, 0, "upload-chunk",
          sizeof(struct vmaug_upload_chunk) + 1,
          sizeof(struct vmaug_upload_chunk) + VMAUG_CHUNK_MAX_DATA },
        { VMAUG_OP_UPLOAD_COMMIT, 0, "upload-commit",
          VMAUG_PROTO_FIXED(struct vmaug_upload_ref) },
        { VMAUG_OP_UPLOAD_ABORT, 0, "upload-abort",
          VMAUG_PROTO_FIXED(struct vmaug_upload_ref) },
        { VMAUG_OP_INVOKE, 0, "invoke", sizeof(struct vmaug_invoke),
          VMAUG_MAX_REQ_PAYLOAD,
          VMAUG_PROTO_STRINGS(struct vmaug_invoke, module, VMAUG_NAME_MAX,
                              function, VMAUG_FUNCTION_MAX) },
        { VMAUG_OP_CONFIG_GET, 0, "config-get",
          VMAUG_PROTO_FIXED(struct vmaug_config_ref),
          VMAUG_PROTO_STRINGS(struct vmaug_config_ref, module, VMAUG_NAME_MAX,
                              key, VMAUG_CONFIG_KEY_MAX) },
        { VMAUG_OP_CONFIG_SET, 0, "config-set",
          sizeof(struct vmaug_config_ref),
          sizeof(struct vmaug_config_ref) + VMAUG_MAX_CONFIG_VALUE,
          VMAUG_PROTO_STRINGS(struct vmaug_config_ref, module, VMAUG_NAME_MAX,
                              key, VMAUG_CONFIG_KEY_MAX) },
        { VMAUG_OP_REGISTER, 0, "register",
          VMAUG_PROTO_FIXED(struct vmaug_registration),
          VMAUG_PROTO_REF(struct vmaug_registration, ref) },
        { VMAUG_OP_UNREGISTER, 0, "unregister",
          VMAUG_PROTO_FIXED(struct vmaug_module_ref),
          VMAUG_PROTO_MODULE_REF },
        { VMAUG_OP_LIST, 0, "list",
          VMAUG_PROTO_FIXED(struct vmaug_list_req) },
        { VMAUG_OP_SERVICING_REPORT, 0, "servicing-report",
          sizeof(struct vmaug_servicing_report),
          sizeof(struct vmaug_servicing_report) + VMAUG_SERVICING_MESSAGE_MAX,
          VMAUG_PROTO_STRINGS(struct vmaug_servicing_report, bundle,
                              VMAUG_NAME_MAX, version, VMAUG_VERSION_MAX) },
    };
    size_t i;

    for (i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        if (ops[i].opcode == opcode) {
            return &ops[i];
        }
    }
    return NULL;
}

/*
 * Check @len bytes of @payload against the rules of @op: VMAUG_S_OK, or
 * the status to answer and (in *@why) why.
 */
static inline uint16_t vmaug_proto_op_check(const struct vmaug_proto_op *op,
                                            const uint8_t *payload,
                                            uint32_t len, const char **why)
{
    size_t i;

    if (len > op->max_len && op->max_len > op->min_len) {
        *why = "payload larger than the opcode allows";
        return VMAUG_S_TOO_BIG;
    }
    if (len < op->min_len || len > op->max_len) {
        *why = "payload size does not match the opcode";
        return VMAUG_S_INVALID;
    }
    for (i = 0; i < sizeof(op->strings) / sizeof(op->strings[0]); i++) {
        if (op->strings[i].size &&
            !memchr(payload + op->strings[i].offset, 0,
                    op->strings[i].size)) {
            *why = "string field is not NUL-terminated";
            return VMAUG_S_INVALID;
        }
    }
    return VMAUG_S_OK;
}

#endif /* VMAUGMENT_PROTOCOL_RULES_H */
