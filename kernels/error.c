#include "kernels/error.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char rt_msg[1024];

rt_status rt_errorf(rt_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rt_msg, sizeof rt_msg, fmt, ap);
    va_end(ap);
    return code;
}

const char *rt_error_message(void) { return rt_msg; }

void rt_error_clear(void) { rt_msg[0] = '\0'; }
