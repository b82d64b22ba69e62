/* Laying a Diff snapshot's memory file over its base (amberctl snapshot-merge). */
#ifndef AMBER_CTL_SNAPSHOT_MERGE_H
#define AMBER_CTL_SNAPSHOT_MERGE_H

#include <stddef.h>
#include <stdint.h>

/*
 * Copy every data page of diff_fd (a Diff memory file: data where the guest or amber wrote
 * since the previous snapshot, holes elsewhere) into base_fd at the same offset, so base_fd
 * becomes the memory file of the Diff's moment. Both must be regular files of the same size,
 * a multiple of 4 KiB; diff_fd's data runs must start and end on 4 KiB pages (found with
 * SEEK_DATA/SEEK_HOLE). base_fd is changed in place and must not be mapped by a running VM.
 * *copied gets the bytes copied. Returns 0, or a negative errno with err set (-EINVAL for
 * files that do not fit together; base_fd is untouched then).
 */
int snapshot_merge(int base_fd, int diff_fd, uint64_t *copied, char *err, size_t errlen);

#endif
