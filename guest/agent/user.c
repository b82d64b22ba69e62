/* amber-agent: resolves a user name or uid through /etc/passwd (no NSS in a static binary). */
#include "guest/agent/user.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int user_parse_line(const char *line, struct user_info *u)
{
    char copy[1024];
    char *field[7];
    size_t n = strlen(line);
    if (n >= sizeof(copy))
        return -EINVAL;
    memcpy(copy, line, n + 1);
    copy[strcspn(copy, "\n")] = 0;
    char *p = copy;
    for (int i = 0; i < 7; i++) {
        field[i] = p;
        p = strchr(p, ':');
        if (!p && i < 6)
            return -EINVAL;
        if (p)
            *p++ = 0;
    }
    char *end;
    errno = 0;
    unsigned long uid = strtoul(field[2], &end, 10);
    if (errno || *end || end == field[2] || uid > 0xfffffffe)
        return -EINVAL;
    unsigned long gid = strtoul(field[3], &end, 10);
    if (errno || *end || end == field[3] || gid > 0xfffffffe)
        return -EINVAL;
    if (strlen(field[0]) >= sizeof(u->name) || strlen(field[5]) >= sizeof(u->home))
        return -ENAMETOOLONG;
    snprintf(u->name, sizeof(u->name), "%s", field[0]);
    snprintf(u->home, sizeof(u->home), "%s", field[5][0] ? field[5] : "/");
    u->uid = (uid_t)uid;
    u->gid = (gid_t)gid;
    return 0;
}

static bool parse_uid(const char *s, uid_t *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || end == s || s[0] == '-' || v > 0xfffffffe)
        return false;
    *out = (uid_t)v;
    return true;
}

int user_resolve(const char *passwd_path, const char *spec, struct user_info *u)
{
    uid_t want_uid = 0;
    bool numeric = parse_uid(spec, &want_uid);
    FILE *f = fopen(passwd_path, "re");
    if (f) {
        char line[1024];
        while (fgets(line, sizeof(line), f)) {
            struct user_info cand;
            if (user_parse_line(line, &cand) < 0)
                continue;
            if (numeric ? cand.uid == want_uid : strcmp(cand.name, spec) == 0) {
                *u = cand;
                fclose(f);
                return 0;
            }
        }
        fclose(f);
    }
    if (!numeric)
        return -ENOENT;
    /* A uid with no passwd entry still runs, in its own group, from /. */
    u->uid = want_uid;
    u->gid = (gid_t)want_uid;
    snprintf(u->name, sizeof(u->name), "%u", (unsigned)want_uid);
    snprintf(u->home, sizeof(u->home), "/");
    return 0;
}
