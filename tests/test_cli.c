/* The CLI front door: help lists commands, unknown commands are usage errors. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

Test(cli, help_exits_zero_and_lists_commands) {
    char *out = NULL;
    cr_assert_eq(tu_run_duet("help", &out), 0);
    cr_assert(out && strstr(out, "commands:"));
    free(out);
}

Test(cli, unknown_command_is_usage_error) {
    cr_assert_eq(tu_run_duet("no-such-command 2>/dev/null", NULL), 2);
}
