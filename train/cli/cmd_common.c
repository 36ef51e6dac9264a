/* retort — helpers shared by the CLI subcommands (see train/commands.h). */
#include <stdbool.h>
#include <stdio.h>

#include "kernels/error.h"
#include "train/cli/cli.h"
#include "train/cli/commands.h"

int rt_cmd_fail(int status) {
    if (rt_cli_help_shown) return 0; /* --help: usage printed, nothing failed */
    fprintf(stderr, "retort: error: %s\n", rt_error_message());
    return status;
}
