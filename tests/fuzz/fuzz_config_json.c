/* libFuzzer target: --config-file loading (JSON parsing plus every section validator), and the
 * exporter on whatever configuration survived. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct vm_config *cfg = calloc(1, sizeof(*cfg));
    cfg->vcpus = 1;
    cfg->mem_mib = 128;
    char err[256];
    int r = config_json_load(cfg, (const char *)data, size, err, sizeof(err));
    if (r && !err[0])
        abort(); /* every refusal explains itself */
    if (cfg->ndrives > CONFIG_MAX_DRIVES || cfg->nnets > CONFIG_MAX_NETS ||
        cfg->vcpus > CONFIG_MAX_VCPUS)
        abort();
    struct json_object *o = config_json_export(cfg);
    const char *s = json_object_to_json_string(o);
    /* What we export must load again. */
    if (!r && cfg->kernel[0]) {
        struct vm_config *c2 = calloc(1, sizeof(*c2));
        if (config_json_load(c2, s, strlen(s), err, sizeof(err)))
            abort();
        free(c2);
    }
    json_object_put(o);
    free(cfg);
    return 0;
}
