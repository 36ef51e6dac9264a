/* Subcommands whose implementation has not landed yet: they say so and exit 2,
 * so `retort --help` can list the whole planned surface. Each moves to its
 * own cmd_*.c file when it is implemented. */
#include "kernels/error.h"
#include "train/commands.h"

/* unused while every planned command is implemented */
__attribute__((unused)) static int pending(const char *name) {
    rt_errorf(RT_EINPUT, "'retort %s' is not implemented yet in this build", name);
    return rt_cmd_fail(RT_EINPUT);
}

