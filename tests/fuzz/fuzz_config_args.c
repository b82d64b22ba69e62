/* libFuzzer target: NUL-separated arguments through config_parse_args and config_validate. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"

#define MAX_ARGS 64

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    /* --help and --version print to stdout; keep the fuzzer's output readable. */
    if (!freopen("/dev/null", "w", stdout))
        return 0;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';

    char *argv[MAX_ARGS + 2];
    int argc = 0;
    argv[argc++] = "amber";
    for (char *p = buf; p <= buf + size && argc <= MAX_ARGS; p += strlen(p) + 1)
        argv[argc++] = p;
    argv[argc] = NULL;

    static struct vm_config cfg; /* large: keep it off the stack */
    char err[256];
    config_defaults(&cfg);
    int rc = config_parse_args(&cfg, argc, argv, err, sizeof(err));
    if (rc < 0 && (!err[0] || strchr(err, '\n')))
        abort(); /* every failure explains itself in one line */
    if (rc == 0)
        (void)config_validate(&cfg, err, sizeof(err));
    free(buf);
    return 0;
}
