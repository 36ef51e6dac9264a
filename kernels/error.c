#include "kernels/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char rt_msg[1024];

rt_status rt_errorf(rt_status code, const char *fmt, ...) {
    /* Formatted into a temporary first: callers may pass rt_error_message()
     * itself as an argument to add context ("%s: %s", path, msg). */
    char tmp[sizeof rt_msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    memcpy(rt_msg, tmp, sizeof rt_msg);
    return code;
}

const char *rt_error_message(void) { return rt_msg; }

void rt_error_clear(void) { rt_msg[0] = '\0'; }
