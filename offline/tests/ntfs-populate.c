/*
 * Test fixture helper: copy a directory tree into an NTFS filesystem image
 * with libntfs-3g, without mounting it (ntfscp cannot create folders).
 *
 *   ntfs-populate NTFS-IMAGE SOURCE-DIR
 *   ntfs-populate --set-dirty NTFS-IMAGE     (as after a crash of Windows)
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <glib.h>

#include <ntfs-3g/types.h>
#include <ntfs-3g/attrib.h>
#include <ntfs-3g/dir.h>
#include <ntfs-3g/inode.h>
#include <ntfs-3g/unistr.h>
#include <ntfs-3g/volume.h>

static gboolean populate(ntfs_volume *vol, ntfs_inode *dir, const char *src)
{
    g_autoptr(GDir) d = g_dir_open(src, 0, NULL);
    const char *name;

    if (!d) {
        fprintf(stderr, "cannot read %s\n", src);
        return FALSE;
    }
    while ((name = g_dir_read_name(d))) {
        g_autofree char *path = g_build_filename(src, name, NULL);
        gboolean is_dir = g_file_test(path, G_FILE_TEST_IS_DIR);
        ntfschar *ucs = NULL;
        int len = ntfs_mbstoucs(name, &ucs);
        ntfs_inode *ni;
        gboolean ok = TRUE;

        if (len <= 0) {
            fprintf(stderr, "bad name %s\n", name);
            return FALSE;
        }
        ni = ntfs_create(dir, const_cpu_to_le32(0), ucs, len,
                         is_dir ? S_IFDIR : S_IFREG);
        free(ucs);
        if (!ni) {
            fprintf(stderr, "create %s: %s\n", path, strerror(errno));
            return FALSE;
        }
        if (is_dir) {
            ok = populate(vol, ni, path);
        }
        if (ntfs_inode_close(ni)) {
            fprintf(stderr, "close %s: %s\n", path, strerror(errno));
            return FALSE;
        }
        if (!ok) {
            return FALSE;
        }
    }
    return TRUE;
}

/*
 * Contents are written in a second pass, with no other inode open: writing
 * a new file while its directory is open makes libntfs-3g's close fail
 * with EBUSY when it updates the directory entry.
 */
static gboolean fill(ntfs_volume *vol, const char *src, const char *rel)
{
    g_autoptr(GDir) d = g_dir_open(src, 0, NULL);
    const char *name;

    while (d && (name = g_dir_read_name(d))) {
        g_autofree char *path = g_build_filename(src, name, NULL);
        g_autofree char *guest = g_strconcat(rel, "/", name, NULL);
        g_autofree char *data = NULL;
        gsize size;
        ntfs_inode *ni;
        ntfs_attr *na;
        gboolean ok;

        if (g_file_test(path, G_FILE_TEST_IS_DIR)) {
            if (!fill(vol, path, guest)) {
                return FALSE;
            }
            continue;
        }
        ni = ntfs_pathname_to_inode(vol, NULL, guest);
        ok = ni && g_file_get_contents(path, &data, &size, NULL) &&
             (na = ntfs_attr_open(ni, AT_DATA, AT_UNNAMED, 0)) != NULL;
        if (ok) {
            ok = ntfs_attr_pwrite(na, 0, size, data) == (s64)size;
            ntfs_attr_close(na);
        }
        if (ni && ntfs_inode_close(ni)) {
            ok = FALSE;
        }
        if (!ok) {
            fprintf(stderr, "write %s: %s\n", guest, strerror(errno));
            return FALSE;
        }
    }
    return d != NULL;
}

int main(int argc, char **argv)
{
    ntfs_volume *vol;
    ntfs_inode *root;
    gboolean ok;

    if (argc != 3) {
        fprintf(stderr, "usage: %s NTFS-IMAGE SOURCE-DIR | --set-dirty "
                "NTFS-IMAGE\n", argv[0]);
        return 2;
    }
    if (strcmp(argv[1], "--set-dirty") == 0) {
        vol = ntfs_mount(argv[2], 0);
        if (!vol || ntfs_volume_write_flags(vol, vol->flags |
                                                 VOLUME_IS_DIRTY)) {
            fprintf(stderr, "cannot mark %s dirty\n", argv[2]);
            return 1;
        }
        /* A forced unmount keeps the flag, as a crash would. */
        ntfs_umount(vol, TRUE);
        return 0;
    }
    vol = ntfs_mount(argv[1], 0);
    if (!vol) {
        fprintf(stderr, "cannot open %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    root = ntfs_inode_open(vol, FILE_root);
    ok = root && populate(vol, root, argv[2]);
    if (root) {
        ntfs_inode_close(root);
    }
    ok = ok && fill(vol, argv[2], "");
    if (ntfs_umount(vol, FALSE)) {
        fprintf(stderr, "unmount: %s\n", strerror(errno));
        ok = FALSE;
    }
    return ok ? 0 : 1;
}
