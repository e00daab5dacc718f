/*
 * The image file on the host, as the privileged parent of the offline
 * worker handles it: QEMU's lock, the format (probed by qemu-img under
 * resource limits, with backing and extent files refused unless the
 * operator allows them), QEMU's tools, and the qemu-nbd export the worker
 * reads the guest through.  Nothing here parses guest data; qemu-img and
 * qemu-nbd parse the image's format, confined by resource limits.
 * docs/offline.rst ("Confinement") is normative.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#pragma once

#include "vo-disk.h"

G_BEGIN_DECLS

/* Path of a QEMU tool: $VMAUGMENT_QEMU_NBD / $VMAUGMENT_QEMU_IMG, else
 * $VMAUGMENT_QEMU_BUILD_DIR/<name>, else <name> on PATH. */
const char *vo_image_qemu_tool(const char *name);

/* Fails with VO_ERROR_IN_USE when a QEMU process holds the image in a way
 * that forbids the job: any lock at all @for_writing, otherwise a
 * permission to change the image (a VM running on it). */
gboolean vo_image_check_unlocked(const char *image, gboolean for_writing,
                                 GError **error);

/*
 * Reading jobs open an image that a QEMU holds open, sharing its locks
 * (qemu-nbd --force-share, no check of QEMU's lock): only for a caller
 * that vouches the VM runs no instruction meanwhile (the helper's image
 * start holds it before its first).  Writing is refused then.
 */
void vo_image_set_force_share(gboolean force);

/*
 * Writing jobs on an image whose QEMU released it (--qemu-released: the
 * helper's IMAGE_ACCESS, docs/protocol.rst "Image access"): its inactive
 * nodes keep a consistent-read lock (offset 100), since a format driver
 * always asks that of its file, but read nothing until QEMU takes the
 * image back, which it does only after the job.  That lock alone is then
 * no obstacle; any other still is.
 */
void vo_image_set_qemu_released(gboolean released);

/* Whether images may name other host files (backing files, external data
 * files, vmdk extents); off unless the operator says so. */
void vo_image_set_allow_external(gboolean allow);

/*
 * Format as reported by qemu-img (probing unless @format is given), and
 * refusal of images QEMU itself flags as corrupt, or (@for_writing) cannot
 * modify, or that name other host files (vo_image_set_allow_external()).
 */
char *vo_image_probe_format(const char *image, const char *format,
                            gboolean for_writing, GError **error);

/*
 * Whether the file open as @fd (@overlay, in messages) is what an apply
 * of @image creates: a qcow2 file whose backing file is @image and that
 * names no data file.  Sets @error if not.
 */
gboolean vo_image_check_overlay(const char *overlay, int fd,
                                const char *image, GError **error);

/*
 * The image as every command opens it: not in use by a running QEMU
 * (vo_image_check_unlocked()), then its format (vo_image_probe_format()).
 */
char *vo_image_open_format(const char *image, const char *format,
                           gboolean for_writing, GError **error);

/* The virtual size of @image in @format (never probed), in bytes: what
 * the parent checks a worker's offsets against.  @fd, unless -1, is the
 * file held open as @image (an overlay the apply made), and it is that
 * file which is asked, not the one under the name.  What qemu-img info
 * said of the file earlier in this process (vo_image_probe_format(),
 * vo_image_create_overlay()) answers while the file is unchanged. */
gboolean vo_image_virtual_size(const char *image, int fd, const char *format,
                               guint64 *size, GError **error);

/*
 * What qemu-img is given in place of a file's name to open the file the
 * caller holds open (vo_image_qemu_img_fd()): its descriptor VO_IMAGE_FD.
 * A name is looked up again when qemu-img opens it, and whoever can write
 * the directory may have put another file, or a link, there by then.
 */
#define VO_IMAGE_FD       3
#define VO_IMAGE_FD_ARG   "/dev/fd/3"
/* A second file so held, beside the first (vo_image_qemu_img_fds()). */
#define VO_IMAGE_FD2_ARG  "/dev/fd/4"

/*
 * Writes into @fd, the empty file @overlay the caller created, a qcow2
 * header whose backing file is @image in @format, of @image's size.
 */
gboolean vo_image_create_overlay(const char *overlay, int fd,
                                 const char *image, const char *format,
                                 GError **error);

/* Runs qemu-img with @args (after the program name) under its limits;
 * with @fd (or -1) as VO_IMAGE_FD_ARG, and @second (or -1) as
 * VO_IMAGE_FD2_ARG. */
gboolean vo_image_qemu_img_fds(const char *const *args, int fd, int second,
                               GError **error);

/* A qemu-nbd serving one image to one client. */
typedef struct VoImageServer VoImageServer;

/*
 * A server of @image in @format (never probed), not started yet: its
 * listening socket, with the client's connection already made on it, so
 * that the client can be handed to the worker while @image is still
 * being made, or probed.  Its messages call the image @name (the image
 * the user named, when @image is our overlay of it; NULL: @image).
 * @format may be NULL until vo_image_server_set_format(), and @image (and
 * @name) until vo_image_server_set_image(), before the start.
 */
VoImageServer *vo_image_server_new(const char *image, const char *name,
                                   const char *format, gboolean writable,
                                   GError **error);
/* @image and @name of a server not started yet, made without them. */
void vo_image_server_set_image(VoImageServer *server, const char *image,
                               const char *name);
/* @format (never probed) of a server not started yet. */
void vo_image_server_set_format(VoImageServer *server, const char *format);
/* The most LUKS volumes one disk may have opened. */
#define VO_IMAGE_MAX_LUKS 8

/* A LUKS volume on a disk, where the worker said it lies (checked by
 * vo_worker_volumes(): whole sectors inside the disk), and the file
 * holding its key (the passphrase, every byte of the file). */
typedef struct {
    guint64 offset;
    guint64 size;
    const char *key_file;
} VoImageLuks;

/*
 * As vo_image_server_new(), for a qemu-storage-daemon with one block
 * graph: the disk (export "", vo_image_server_take_client()) and the @n
 * LUKS volumes @luks, each a raw window of the disk's node opened by
 * QEMU's luks driver with its key (exports "luksN", N from @first,
 * vo_image_server_take_volume()).  Writes through a volume and reads of
 * the disk go through the one node, so an overlay is opened once.  Every
 * connection is made here, on the listening socket, before @image need
 * exist.
 */
VoImageServer *vo_image_server_new_luks(const char *image, const char *name,
                                        const char *format, gboolean writable,
                                        const VoImageLuks *luks, guint n,
                                        guint first, GError **error);
/* The connection to volume @i (from 0) of vo_image_server_new_luks(). */
int vo_image_server_take_volume(VoImageServer *server, guint i);
/*
 * Starts the server on its listening socket (socket activation): it
 * serves the connections made by vo_image_server_new*().  @fd, unless -1,
 * is the image held open (still the caller's): the server opens the file
 * through it, whatever is under the image's name by then.  qemu-nbd is
 * started and returns at once; qemu-storage-daemon is waited for until it
 * has opened every LUKS volume, so that a key that opens no key slot
 * fails here, with VO_ERROR_INVALID, before anything is read or written.
 */
gboolean vo_image_server_start(VoImageServer *server, int fd,
                               GError **error);
/* The connected client socket, for the worker; the server keeps no copy. */
int vo_image_server_take_client(VoImageServer *server);
/* Waits for the server to end (qemu-nbd does when its client is gone,
 * qemu-storage-daemon is told to after it); FALSE
 * with qemu-nbd's own message when it failed. */
gboolean vo_image_server_finish(VoImageServer *server, GError **error);
void vo_image_server_free(VoImageServer *server);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VoImageServer, vo_image_server_free)

G_END_DECLS
