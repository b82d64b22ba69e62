/* Typed, validated access to the fields of a JSON request body (json-c), with error messages. */
#include "config/jfield.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config/config.h"

#define JF_MAX_DEPTH 32 /* the tokener's nesting limit */

/*
 * The number of keys of each object in text (valid JSON), objects in the order their '{'
 * appears, into counts[] and their offsets into starts[]; returns how many objects there are.
 * A key is a string followed by ':'.
 */
static size_t text_key_counts(const char *text, size_t len, uint32_t *counts, uint32_t *starts)
{
    uint32_t open[JF_MAX_DEPTH + 1];
    size_t depth = 0, n = 0;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '"') {
            for (i++; i < len && text[i] != '"'; i++)
                i += text[i] == '\\';
            size_t j = i + 1;
            while (j < len &&
                   (text[j] == ' ' || text[j] == '\t' || text[j] == '\r' || text[j] == '\n'))
                j++;
            if (j < len && text[j] == ':' && depth)
                counts[open[depth - 1]]++;
        } else if (text[i] == '{') {
            counts[n] = 0;
            starts[n] = (uint32_t)i;
            if (depth <= JF_MAX_DEPTH)
                open[depth++] = (uint32_t)n;
            n++;
        } else if (text[i] == '}' && depth) {
            depth--;
        }
    }
    return n;
}

/* Walk o in the same order as text_key_counts; false at the first object (index *k) whose key
 * count differs from the text's: a key was given twice there and json-c kept the last. */
static bool tree_matches(struct json_object *o, const uint32_t *counts, size_t n, size_t *k)
{
    if (json_object_is_type(o, json_type_array)) {
        for (size_t i = 0; i < json_object_array_length(o); i++)
            if (!tree_matches(json_object_array_get_idx(o, i), counts, n, k))
                return false;
        return true;
    }
    if (!json_object_is_type(o, json_type_object))
        return true;
    if (*k >= n || counts[*k] != (uint32_t)json_object_object_length(o))
        return false;
    (*k)++;
    json_object_object_foreach(o, key, val)
    {
        (void)key;
        if (!tree_matches(val, counts, n, k))
            return false;
    }
    return true;
}

/* 0, or -EINVAL naming where a key appears twice in one object (Firecracker refuses that;
 * json-c would silently keep the last value). */
static int check_duplicate_keys(const char *text, size_t len, struct json_object *o, char *err,
                                size_t errlen)
{
    size_t braces = 0;
    for (size_t i = 0; i < len; i++)
        braces += text[i] == '{';
    if (!braces)
        return 0;
    uint32_t *counts = calloc(2 * braces, sizeof(*counts));
    if (!counts) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    uint32_t *starts = counts + braces;
    size_t n = text_key_counts(text, len, counts, starts), k = 0;
    int ret = 0;
    if (!tree_matches(o, counts, n, &k) || k != n) {
        snprintf(err, errlen, "duplicate field in the JSON object at byte %u",
                 k < n ? starts[k] : 0);
        ret = -EINVAL;
    }
    free(counts);
    return ret;
}

struct json_object *jf_parse(const char *text, size_t len, char *err, size_t errlen)
{
    if (len == 0 || len > INT_MAX) {
        snprintf(err, errlen, "the request needs a JSON body");
        return NULL;
    }
    struct json_tokener *tok = json_tokener_new_ex(JF_MAX_DEPTH);
    if (!tok) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    struct json_object *o = json_tokener_parse_ex(tok, text, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t used = json_tokener_get_parse_end(tok);
    if (!o || jerr != json_tokener_success) {
        if (jerr == json_tokener_continue)
            snprintf(err, errlen, "malformed JSON: unexpected end of body");
        else
            snprintf(err, errlen, "malformed JSON: %s", json_tokener_error_desc(jerr));
        json_object_put(o);
        o = NULL;
    } else {
        for (size_t i = used; i < len; i++) {
            if (!strchr(" \t\r\n", text[i])) {
                snprintf(err, errlen, "malformed JSON: data after the value");
                json_object_put(o);
                o = NULL;
                break;
            }
        }
    }
    json_tokener_free(tok);
    if (o && check_duplicate_keys(text, len, o, err, errlen)) {
        json_object_put(o);
        o = NULL;
    }
    return o;
}

int jf_object(struct json_object *o, const char *what, char *err, size_t errlen)
{
    if (!json_object_is_type(o, json_type_object)) {
        snprintf(err, errlen, "%s must be a JSON object", what);
        return -EINVAL;
    }
    return 0;
}

int jf_known(struct json_object *o, const char *const *known, char *err, size_t errlen)
{
    json_object_object_foreach(o, key, val)
    {
        (void)val;
        bool ok = false;
        for (const char *const *k = known; *k; k++)
            if (strcmp(*k, key) == 0)
                ok = true;
        if (!ok) {
            snprintf(err, errlen, "unknown field '%.64s'", key);
            return -EINVAL;
        }
    }
    return 0;
}

/* o[key], or NULL when missing or JSON null. */
static struct json_object *get(struct json_object *o, const char *key)
{
    struct json_object *v = NULL;
    if (!json_object_object_get_ex(o, key, &v))
        return NULL;
    return v; /* NULL for JSON null */
}

static int missing(const char *key, bool required, char *err, size_t errlen)
{
    if (!required)
        return 0;
    snprintf(err, errlen, "missing required field '%s'", key);
    return -EINVAL;
}

int jf_str(struct json_object *o, const char *key, bool required, const char **out, char *err,
           size_t errlen)
{
    struct json_object *v = get(o, key);
    *out = NULL;
    if (!v)
        return missing(key, required, err, errlen);
    if (!json_object_is_type(v, json_type_string)) {
        snprintf(err, errlen, "field '%s' must be a string", key);
        return -EINVAL;
    }
    const char *s = json_object_get_string(v);
    if ((size_t)json_object_get_string_len(v) != strlen(s)) {
        snprintf(err, errlen, "field '%s' contains a NUL character", key);
        return -EINVAL;
    }
    *out = s;
    return 0;
}

int jf_bool(struct json_object *o, const char *key, bool required, bool dflt, bool *out, char *err,
            size_t errlen)
{
    struct json_object *v = get(o, key);
    *out = dflt;
    if (!v)
        return missing(key, required, err, errlen);
    if (!json_object_is_type(v, json_type_boolean)) {
        snprintf(err, errlen, "field '%s' must be a boolean", key);
        return -EINVAL;
    }
    *out = json_object_get_boolean(v);
    return 0;
}

int jf_uint(struct json_object *o, const char *key, bool required, uint64_t min, uint64_t max,
            bool *present, uint64_t *out, char *err, size_t errlen)
{
    struct json_object *v = get(o, key);
    *present = false;
    if (!v)
        return missing(key, required, err, errlen);
    if (!json_object_is_type(v, json_type_int)) {
        snprintf(err, errlen, "field '%s' must be an integer", key);
        return -EINVAL;
    }
    int64_t x = json_object_get_int64(v);
    if (x < 0 || (uint64_t)x < min || (uint64_t)x > max) {
        snprintf(err, errlen, "field '%s' must be between %llu and %llu", key,
                 (unsigned long long)min, (unsigned long long)max);
        return -EINVAL;
    }
    *present = true;
    *out = (uint64_t)x;
    return 0;
}

int jf_enum(struct json_object *o, const char *key, const char *const *vals, int dflt, bool icase,
            int *out, char *err, size_t errlen)
{
    const char *s;
    int e = jf_str(o, key, false, &s, err, errlen);
    *out = dflt;
    if (e || !s)
        return e;
    for (int i = 0; vals[i]; i++) {
        if (icase ? strcasecmp(vals[i], s) == 0 : strcmp(vals[i], s) == 0) {
            *out = i;
            return 0;
        }
    }
    snprintf(err, errlen, "field '%s' has an unsupported value '%.64s'", key, s);
    return -EINVAL;
}

int jf_enum_subset(struct json_object *o, const char *key, const char *const *fc_vals,
                   int n_supported, char *err, size_t errlen)
{
    int i;
    int e = jf_enum(o, key, fc_vals, -1, false, &i, err, errlen);
    if (e || i < n_supported)
        return e;
    int n = snprintf(err, errlen, "field '%s' is not supported by amber (only", key);
    for (int k = 0; k < n_supported && n >= 0 && (size_t)n < errlen; k++)
        n += snprintf(err + n, errlen - (size_t)n, "%s \"%s\"", k ? " or" : "", fc_vals[k]);
    if (n >= 0 && (size_t)n < errlen)
        snprintf(err + n, errlen - (size_t)n, ")");
    return -EINVAL;
}

int jf_unsupported(struct json_object *o, const char *key, const char *dflt_str, char *err,
                   size_t errlen)
{
    struct json_object *v = get(o, key);
    if (!v)
        return 0;
    switch (json_object_get_type(v)) {
    case json_type_boolean:
        if (!json_object_get_boolean(v))
            return 0;
        break;
    case json_type_object:
        if (json_object_object_length(v) == 0)
            return 0;
        break;
    case json_type_string:
        if (dflt_str && strcmp(json_object_get_string(v), dflt_str) == 0)
            return 0;
        break;
    default:
        break;
    }
    if (dflt_str)
        snprintf(err, errlen, "field '%s' is not supported by amber (only \"%s\")", key, dflt_str);
    else
        snprintf(err, errlen, "field '%s' is not supported by amber (only null or the default)",
                 key);
    return -EINVAL;
}

/* One TokenBucket object at o[key] (rate limiter field rl). Missing or null: 0, *given false. */
static int token_bucket(struct json_object *o, const char *rl, const char *key,
                        struct tb_config *out, bool *given, char *err, size_t errlen)
{
    static const char *const known[] = {"size", "one_time_burst", "refill_time", NULL};
    struct json_object *v = get(o, key);
    char why[160];
    bool has;
    *out = (struct tb_config){0};
    *given = false;
    if (!v)
        return 0;
    int e = jf_object(v, "a token bucket", why, sizeof(why));
    if (!e)
        e = jf_known(v, known, why, sizeof(why));
    if (!e)
        e = jf_uint(v, "size", true, 0, CONFIG_RL_SIZE_MAX, &has, &out->size, why, sizeof(why));
    if (!e)
        e = jf_uint(v, "one_time_burst", false, 0, CONFIG_RL_SIZE_MAX, &has, &out->one_time_burst,
                    why, sizeof(why));
    if (!e)
        e = jf_uint(v, "refill_time", true, 0, CONFIG_RL_REFILL_MAX, &has, &out->refill_time_ms,
                    why, sizeof(why));
    if (e) {
        snprintf(err, errlen, "field '%s.%s': %s", rl, key, why);
        return e;
    }
    *given = true;
    return 0;
}

int jf_rate_limiter(struct json_object *o, const char *key, struct rl_config *out, unsigned *set,
                    char *err, size_t errlen)
{
    static const char *const known[] = {"bandwidth", "ops", NULL};
    struct json_object *v = get(o, key);
    struct rl_config rl = {0};
    char why[160];
    bool bw, ops;
    *set = 0;
    *out = rl;
    if (!v)
        return 0;
    if (!json_object_is_type(v, json_type_object)) {
        snprintf(err, errlen, "field '%s' must be a JSON object or null", key);
        return -EINVAL;
    }
    if (jf_known(v, known, why, sizeof(why))) {
        snprintf(err, errlen, "field '%s': %s", key, why);
        return -EINVAL;
    }
    int e = token_bucket(v, key, "bandwidth", &rl.bandwidth, &bw, err, errlen);
    if (!e)
        e = token_bucket(v, key, "ops", &rl.ops, &ops, err, errlen);
    if (e)
        return e;
    *out = rl;
    *set = (bw ? RL_SET_BANDWIDTH : 0) | (ops ? RL_SET_OPS : 0);
    return 0;
}

/* The process's working directory, recorded once: amber never changes it after the jail. */
static char path_base[4096];

int jf_path_init(void)
{
    if (path_base[0])
        return 0;
    if (!getcwd(path_base, sizeof(path_base))) {
        path_base[0] = '\0';
        return -errno;
    }
    return 0;
}

int jf_path(const char *path, const char *field, char *out, size_t cap, char *err, size_t errlen)
{
    if (!path[0]) {
        snprintf(err, errlen, "field '%s' must not be empty", field);
        return -EINVAL;
    }
    int n;
    if (path[0] == '/') {
        n = snprintf(out, cap, "%s", path);
    } else {
        if (jf_path_init() < 0) {
            snprintf(err, errlen, "field '%s': cannot resolve a relative path", field);
            return -EINVAL;
        }
        n = snprintf(out, cap, "%s/%s", strcmp(path_base, "/") ? path_base : "", path);
    }
    if (n < 0 || (size_t)n >= cap) {
        snprintf(err, errlen, "field '%s' is too long", field);
        out[0] = '\0';
        return -ENAMETOOLONG;
    }
    return 0;
}

bool jf_valid_id(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return false;
    }
    return true;
}
