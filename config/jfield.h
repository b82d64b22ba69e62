/* Typed, validated access to the fields of a JSON request body (json-c), with error messages. */
#ifndef AMBER_CONFIG_JFIELD_H
#define AMBER_CONFIG_JFIELD_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Parse text[0..len) as one strict JSON value (UTF-8 checked, nothing after it). NULL + err. */
struct json_object *jf_parse(const char *text, size_t len, char *err, size_t errlen);

/* -EINVAL "<what> must be a JSON object" unless o is an object. */
int jf_object(struct json_object *o, const char *what, char *err, size_t errlen);

/* Refuse any key of o that is not in known (NULL-terminated): -EINVAL "unknown field 'k'". */
int jf_known(struct json_object *o, const char *const *known, char *err, size_t errlen);

/*
 * o[key] as a string without NUL bytes. Missing or null: *out = NULL and 0, or -EINVAL when
 * required. Another type: -EINVAL naming the field.
 */
int jf_str(struct json_object *o, const char *key, bool required, const char **out, char *err,
           size_t errlen);

/* o[key] as a boolean; missing or null gives dflt (or -EINVAL when required). */
int jf_bool(struct json_object *o, const char *key, bool required, bool dflt, bool *out, char *err,
            size_t errlen);

/*
 * o[key] as an integer in [min, max]. Missing or null: *present = false and 0 (or -EINVAL when
 * required). A float, a string or an out-of-range value: -EINVAL naming the field.
 */
int jf_uint(struct json_object *o, const char *key, bool required, uint64_t min, uint64_t max,
            bool *present, uint64_t *out, char *err, size_t errlen);

/*
 * o[key] as one of vals (NULL-terminated); missing or null gives dflt. *out is the index.
 * icase compares case-insensitively.
 */
int jf_enum(struct json_object *o, const char *key, const char *const *vals, int dflt, bool icase,
            int *out, char *err, size_t errlen);

/*
 * o[key] as one of Firecracker's values fc_vals (NULL-terminated, case-sensitive), of which amber
 * implements only the first n_supported: another type or an unknown value is refused as
 * Firecracker refuses it, a value past n_supported as "not supported by amber". Missing or null
 * is accepted.
 */
int jf_enum_subset(struct json_object *o, const char *key, const char *const *fc_vals,
                   int n_supported, char *err, size_t errlen);

/*
 * A field Firecracker defines but amber does not implement: accepted when missing, null, or
 * equal to its default (dflt_str for strings, false for booleans, {} for objects, when the
 * respective argument allows it). Else -EINVAL "field 'k' is not supported by amber".
 */
int jf_unsupported(struct json_object *o, const char *key, const char *dflt_str, char *err,
                   size_t errlen);

/*
 * o[key] as a Firecracker RateLimiter: {"bandwidth": TokenBucket, "ops": TokenBucket}, each
 * optional or null, a TokenBucket being {"size", "refill_time" (both required), "one_time_burst"}:
 * integers from 0 to CONFIG_RL_SIZE_MAX (refill_time: CONFIG_RL_REFILL_MAX ms). Fills *out
 * (zero for what is absent: no limit) and *set with the RL_SET_* bits of the buckets given.
 * Missing or null: *out zero, *set 0. Anything else (a wrong type, an unknown key, a value out
 * of bounds): -EINVAL, err naming the field as "key.bucket.field".
 */
struct rl_config;
int jf_rate_limiter(struct json_object *o, const char *key, struct rl_config *out, unsigned *set,
                    char *err, size_t errlen);

/*
 * Copy path (a file path from a client) into out[cap]: absolute paths as given, relative ones
 * joined to the working directory that jf_path_init (or the first relative path) recorded.
 * -EINVAL if empty or -ENAMETOOLONG, with err naming field.
 */
/*
 * Record the working directory relative paths are resolved against. Call it before the seccomp
 * filter loads (api_core_init does): the running VMM may not call getcwd. 0 or -errno.
 */
int jf_path_init(void);

int jf_path(const char *path, const char *field, char *out, size_t cap, char *err, size_t errlen);

/* True for ids matching [A-Za-z0-9_]{1,64} (drive and interface ids). */
bool jf_valid_id(const char *id);

#endif
