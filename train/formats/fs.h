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

/* Like rt_read_file, but refuses (RT_EINPUT, naming the file and the cap) a
 * file of more than `max` bytes (a regular file by its size before reading,
 * a pipe after reading at most about 2 x max) and a device or directory, so
 * a hostile path (/dev/zero, a huge file given as a config) costs bounded
 * time and memory. The caps each reader uses are in its header. */
rt_status rt_read_file_max(const char *path, const char *what, size_t max, char **data, size_t *len);

/* Caps for files that are small by nature (JSON configs, tokenizers). */
#define RT_CONFIG_FILE_MAX ((size_t)16 << 20)     /* config.json, adapter_config.json */
#define RT_TOKENIZER_FILE_MAX ((size_t)128 << 20) /* tokenizer.json/.bin, encoder.json, vocab.bpe */

/* Writes `len` bytes to path through path.tmp and a rename, so a reader
 * never sees a half-written file. */
rt_status rt_write_file_atomic(const char *path, const void *data, size_t len);

/* RT_EINPUT when the output path `out` is one of the n input paths or a
 * directory containing one (so merge/convert/quantize never write over
 * what they read). Paths are compared after realpath (symlinks, "..");
 * inputs that do not exist are ignored. */
rt_status rt_check_output_path(const char *out, const char *const *inputs, int n);

/* mkdir -p: creates dir and any missing parents. RT_EINPUT naming the
 * component that could not be created, or when dir exists as a file. */
rt_status rt_mkdir_p(const char *dir);

#endif
