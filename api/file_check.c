/* Firecracker-style checks of a file named in PUT /boot-source or PUT /drives, made when the PUT
 * arrives so that the client learns which call was wrong (InstanceStart checks again). */
#include "api/core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/jfield.h"

/* stat() and access() only: no open(), so a hostile path (a FIFO, a device) has no effect. */
int api_check_file(const char *path, enum api_file_kind kind, const char *field, char *err,
                   size_t errlen)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        int e = errno;
        snprintf(err, errlen, "%s '%s': %s", field, path, strerror(e));
        return -e;
    }
    bool drive = kind == API_FILE_DRIVE || kind == API_FILE_DRIVE_RO;
    if (S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s '%s' is a directory", field, path);
        return -EISDIR;
    }
    if (!S_ISREG(st.st_mode) && !(drive && S_ISBLK(st.st_mode))) {
        snprintf(err, errlen, "%s '%s' is not a regular file%s", field, path,
                 drive ? " or a block device" : "");
        return -EINVAL;
    }
    int mode = R_OK | (kind == API_FILE_DRIVE ? W_OK : 0);
    if (faccessat(AT_FDCWD, path, mode, AT_EACCESS) < 0) {
        int e = errno;
        snprintf(err, errlen, "%s '%s' cannot be opened for %s: %s", field, path,
                 mode & W_OK ? "reading and writing" : "reading", strerror(e));
        return -e;
    }
    return 0;
}

int api_check_body_file(struct api_core *c, struct json_object *body, const char *field,
                        enum api_file_kind kind, char *err, size_t errlen)
{
    struct json_object *v;
    if (!c->check_file || !json_object_is_type(body, json_type_object) ||
        !json_object_object_get_ex(body, field, &v) || !json_object_is_type(v, json_type_string))
        return 0; /* absent or mistyped: the section's own validation reports it */
    char path[CONFIG_PATH_MAX];
    if (jf_path(json_object_get_string(v), field, path, sizeof(path), err, errlen) < 0)
        return 0;
    return c->check_file(path, kind, field, err, errlen);
}
