/* amberctl sandbox commands: list, status, pause, resume, logs, delete (runtime dir + API). */
#include "api/client/amberctl.h"

#include <stdio.h>

static int not_yet(const char *name)
{
    fprintf(stderr, "amberctl %s: not implemented yet\n", name);
    return CTL_FAIL;
}

int ctl_list(int argc, char **argv)
{
    return not_yet("list");
}

int ctl_status(int argc, char **argv)
{
    return not_yet("status");
}

int ctl_pause(int argc, char **argv)
{
    return not_yet("pause");
}

int ctl_resume(int argc, char **argv)
{
    return not_yet("resume");
}

int ctl_logs(int argc, char **argv)
{
    return not_yet("logs");
}

int ctl_delete(int argc, char **argv)
{
    return not_yet("delete");
}
