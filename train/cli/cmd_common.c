/* retort — helpers shared by the CLI subcommands (see train/commands.h). */
#include <stdio.h>

#include "kernels/error.h"
#include "train/cli/commands.h"

int rt_cmd_fail(int status) {
    fprintf(stderr, "retort: error: %s\n", rt_error_message());
    return status;
}
