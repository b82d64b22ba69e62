/* Sandbox networking's pure half: allow_out/deny_out rules, the nft rulesets and the guest's
 * set-up script as text (ctl/netns_rules.c; no system calls). */
#ifndef AMBER_CTL_NETNS_RULES_H
#define AMBER_CTL_NETNS_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NET_MAX_RULES    64 /* per list (allow_out, deny_out) */
#define NET_MAX_DNS      3
#define NET_RULE_MAX_LEN 40    /* "255.255.255.255/32:65535-65535" plus slack */
#define NET_SLOTS        16384 /* /30 links in 10.200.0.0/16 */

/* Inside every sandbox's namespace (each has its own, so they may all be the same). */
#define NET_TAP       "tap0"
#define NET_NS_VETH   "veth0"
#define NET_GUEST_IP  "172.16.0.2"
#define NET_GATEWAY   "172.16.0.1"
#define NET_PREFIX    30
#define NET_GUEST_MAC "06:00:ac:10:00:02"

/* One allow_out / deny_out entry: an IPv4 network and a port range (0-0: every port, any
 * protocol; else TCP and UDP to ports lo..hi). */
struct net_rule {
    uint32_t addr; /* host byte order, host bits zero */
    uint8_t prefix;
    uint16_t port_lo, port_hi;
};

struct net_policy {
    struct net_rule allow[NET_MAX_RULES], deny[NET_MAX_RULES];
    int nallow, ndeny;
};

/* What net_up made: names, addresses, and the guest's side of it. */
struct net_info {
    char ns[80];      /* "amber-" + sandbox id */
    char host_if[16]; /* the host end of the veth pair */
    unsigned slot;
    char host_ip[16], ns_ip[16]; /* the /30 link between the host and the namespace */
    char dns[NET_MAX_DNS][16];
    int ndns;
};

/* Parse one rule "A.B.C.D[/N][:PORT[-PORT]]" into *r. Returns 0, or -EINVAL with a message
 * naming the fault (bad address, prefix out of 0..32, host bits set, bad port) in err. */
int net_parse_rule(const char *s, struct net_rule *r, char *err, size_t errlen);

/* Parse s and append it to p's allow (allow true) or deny list. Returns 0, -EINVAL (bad rule,
 * err says why) or -E2BIG (more than NET_MAX_RULES). */
int net_policy_add(struct net_policy *p, bool allow, const char *s, char *err, size_t errlen);

/* Format r back into out ("10.0.0.0/8:80-90"; "/32" and an absent port are left out). */
void net_rule_format(const struct net_rule *r, char *out, size_t len);

/* The nft script for the sandbox's namespace: egress filter (DNS to info's servers, then
 * allow_out accepts, then deny_out drops, then accept), no inbound connections, masquerade
 * out of the veth. Returns its length, or -E2BIG if out is too small. */
int net_ns_ruleset(const struct net_policy *p, const struct net_info *info, char *out, size_t len);

/* The nft script for the host's per-sandbox table: masquerade the link's traffic to the
 * uplink; refuse new connections into the sandbox and from it to the host itself (except DNS
 * to info's servers). Returns its length or -E2BIG. */
int net_host_ruleset(const struct net_info *info, char *out, size_t len);

/* The host-side table's name for slot ("amber_net_<slot>") into out. */
void net_host_table(unsigned slot, char *out, size_t len);

/* Fill info's names and link addresses for sandbox id on slot (no system calls). */
void net_info_init(struct net_info *info, const char *id, unsigned slot);

/* The IPv4 nameservers of resolv.conf text, loopback ones left out: up to max into dns.
 * Returns how many. */
int net_parse_resolv(const char *text, char dns[][16], int max);

/* The shell script the guest agent runs to take its address, route and resolv.conf. Returns
 * its length or -E2BIG. */
int net_guest_script(const struct net_info *info, char *out, size_t len);

#endif
