/* amber-agent: user lookup for exec's "user" field. */
#ifndef AMBER_GUEST_AGENT_USER_H
#define AMBER_GUEST_AGENT_USER_H

#include <stdbool.h>
#include <sys/types.h>

struct user_info {
    uid_t uid;
    gid_t gid;
    char name[64];
    char home[256];
};

/* Parse one passwd(5) line. Returns 0, -EINVAL for a malformed line, or -ENAMETOOLONG. */
int user_parse_line(const char *line, struct user_info *u);

/*
 * Resolve spec (a name or a decimal uid) through passwd_path. A uid without an entry resolves
 * to gid = uid and home "/". Returns 0 or -ENOENT for an unknown name.
 */
int user_resolve(const char *passwd_path, const char *spec, struct user_info *u);

#endif
