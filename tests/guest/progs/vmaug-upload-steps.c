/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * An upload in explicit steps, so that a scenario can interrupt it at a
 * known point:
 *   vmaug-upload-steps begin FILE NAME VERSION     prints "ID OFFSET"
 *   vmaug-upload-steps chunks FILE ID OFFSET N [TIMEOUT_MS]
 *                                                  N chunks; prints OFFSET
 * Exit status: 0 ok, 1 the host refused (status name printed), 3 errno.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nettle/sha2.h>

#include "vmaugment.h"

static int report(vmaug_client *client, const char *what, int ret)
{
    fprintf(stderr, "%s: %s (%s) %s\n", what, vmaug_strerror(ret),
            ret > 0 ? vmaug_status_name(ret) : "errno",
            client ? vmaug_client_message(client) : "");
    return ret > 0 ? 1 : 3;
}

int main(int argc, char **argv)
{
    vmaug_client *client = NULL;
    uint8_t *data;
    struct stat st;
    int fd, ret;

    if (argc < 3) {
        fprintf(stderr, "usage: see the comment in vmaug-upload-steps.c\n");
        return 2;
    }
    fd = open(argv[2], O_RDONLY);
    if (fd < 0 || fstat(fd, &st) < 0) {
        perror(argv[2]);
        return 3;
    }
    data = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (data == MAP_FAILED) {
        perror("mmap");
        return 3;
    }
    ret = vmaug_client_open(NULL, &client);
    if (ret < 0) {
        return report(NULL, "open", ret);
    }

    if (strcmp(argv[1], "begin") == 0 && argc == 5) {
        struct vmaug_upload_begin begin;
        struct vmaug_upload_state state;
        struct sha256_ctx sha;
        size_t len = 0;

        memset(&begin, 0, sizeof(begin));
        begin.total_size = (uint64_t)st.st_size;
        sha256_init(&sha);
        sha256_update(&sha, st.st_size, data);
        sha256_digest(&sha, sizeof(begin.sha256), begin.sha256);
        vmaug_module_ref_set(&begin.ref, argv[3], argv[4]);
        ret = vmaug_call(client, VMAUG_OP_UPLOAD_BEGIN, &begin, sizeof(begin),
                         &state, sizeof(state), &len);
        if (ret != 0) {
            return report(client, "begin", ret);
        }
        printf("%" PRIu64 " %" PRIu64 "\n", (uint64_t)state.upload_id,
               (uint64_t)state.offset);
        return 0;
    }
    if (strcmp(argv[1], "chunks") == 0 && (argc == 6 || argc == 7)) {
        uint32_t timeout_ms = argc == 7 ? strtoul(argv[6], NULL, 0) : 0;
        uint64_t id = strtoull(argv[3], NULL, 0);
        uint64_t offset = strtoull(argv[4], NULL, 0);
        unsigned long n = strtoul(argv[5], NULL, 0);

        for (unsigned long i = 0; i < n && offset < (uint64_t)st.st_size; i++) {
            uint64_t left = (uint64_t)st.st_size - offset;
            struct vmaug_ioctl_chunk chunk = {
                .upload_id = id,
                .offset = offset,
                .data_addr = (uintptr_t)(data + offset),
                .data_len = left > VMAUG_CHUNK_MAX_DATA ?
                            VMAUG_CHUNK_MAX_DATA : (uint32_t)left,
                .timeout_ms = timeout_ms,
            };

            if (ioctl(vmaug_client_fd(client), VMAUG_IOC_UPLOAD_CHUNK,
                      &chunk) < 0) {
                return report(client, "chunk", -errno);
            }
            if (chunk.status != VMAUG_S_OK) {
                return report(client, "chunk", chunk.status);
            }
            offset = chunk.offset;
        }
        printf("%" PRIu64 "\n", offset);
        return 0;
    }
    fprintf(stderr, "usage: see the comment in vmaug-upload-steps.c\n");
    return 2;
}
