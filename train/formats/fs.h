/* retort — the few file-system chores every format and command shares. */
#ifndef RT_FS_H
#define RT_FS_H

#include <stddef.h>

#include "kernels/error.h"

/* Reads a whole file into a malloc'd buffer with a NUL after the last byte
 * (caller frees). `what` names the file's role in the message ("data file",
 * "tokenizer file"), e.g. "x.txt: cannot open data file: No such file".
 * RT_EINPUT when it cannot be opened or read. */
rt_status rt_read_file(const char *path, const char *what, char **data, size_t *len);

/* Writes `len` bytes to path through path.tmp and a rename, so a reader
 * never sees a half-written file. */
rt_status rt_write_file_atomic(const char *path, const void *data, size_t len);

/* mkdir -p: creates dir and any missing parents. RT_EINPUT naming the
 * component that could not be created, or when dir exists as a file. */
rt_status rt_mkdir_p(const char *dir);

#endif
