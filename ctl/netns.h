/* Sandbox networking: a network namespace per sandbox holding its TAP, with NAT to the host's
 * uplink and nftables egress rules (allow_out / deny_out). amberctl and the SDK both use it
 * (docs/network.md); the rules and rulesets themselves are in ctl/netns_rules.h. */
#ifndef AMBER_CTL_NETNS_H
#define AMBER_CTL_NETNS_H

#include "ctl/netns_rules.h"

/* Create sandbox id's namespace, veth pair, TAP and nft tables (cleaning stale ones first);
 * sandbox_dir is its runtime directory, recorded so that net_gc can tell when it is gone.
 * Needs root, ip and nft. On failure everything made is removed. Returns 0 or -errno (err
 * says what failed). */
int net_up(const char *id, const char *sandbox_dir, const struct net_policy *p,
           struct net_info *info, char *err, size_t errlen);

/* Remove sandbox id's namespace (its TAP and veth go with it), host table and record.
 * Idempotent: 0 when there was nothing; -errno only when something could not be removed. */
int net_down(const char *id);

/* net_down every sandbox whose runtime directory is gone or whose amber is no longer alive
 * (a killed SDK or amberctl leaves those). Returns how many were removed. */
int net_gc(void);

/* Move the calling process into sandbox id's namespace (setns). Returns 0 or -errno. */
int net_enter(const char *id);

/* Where the per-sandbox records live: $AMBER_NET_STATE_DIR, else /run/amber-net. */
const char *net_state_dir(void);

#endif
