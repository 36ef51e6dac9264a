/* retort — error reporting shared by every layer.
 *
 * Library functions never print and never exit: they return an rt_status and
 * leave a one-line message (naming the file or key and the problem) that the
 * CLI prints as "retort: error: <message>" before exiting with the status.
 * The message is thread-local, so OpenMP workers or MPI ranks don't clobber
 * each other's messages.
 */
#ifndef RT_ERROR_H
#define RT_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    RT_OK = 0,
    RT_EINTERNAL = 1, /* a bug, an OOM, a failed device call: exit 1 */
    RT_EINPUT = 2,    /* bad user input (path, file contents, recipe key): exit 2 */
} rt_status;

/* Sets the message (printf format) and returns `code`, so callers can write
 * `return rt_errorf(RT_EINPUT, "%s: truncated header", path);`. The current
 * message may be an argument (to prefix context to it). */
rt_status rt_errorf(rt_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* The last message set on this thread ("" if none). Owned by the library. */
const char *rt_error_message(void);

/* Clears the message (tests use it between expected failures). */
void rt_error_clear(void);

/* Propagate a failing status: RT_TRY(rt_foo(...)); */
#define RT_TRY(expr)                                                           \
    do {                                                                       \
        rt_status rt_try_status_ = (expr);                                     \
        if (rt_try_status_ != RT_OK) return rt_try_status_;                    \
    } while (0)

#ifdef __cplusplus
}
#endif
#endif
