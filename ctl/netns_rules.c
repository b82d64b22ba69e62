/* Sandbox networking, the pure half: parsing allow_out/deny_out rules and resolv.conf, and
 * writing the nft rulesets and the guest's set-up script (no system calls; unit-tested). */
#include "ctl/netns_rules.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (errlen)
        vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* Decimal digits only, value lo..hi. */
static bool parse_num(const char *s, size_t n, long lo, long hi, long *out)
{
    if (n == 0 || n > 5)
        return false;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

int net_parse_rule(const char *s, struct net_rule *r, char *err, size_t errlen)
{
    size_t len = strnlen(s, NET_RULE_MAX_LEN + 1);
    if (len == 0)
        return fail(err, errlen, "empty rule (want A.B.C.D[/N][:PORT[-PORT]])");
    if (len > NET_RULE_MAX_LEN)
        return fail(err, errlen, "rule '%.40s...' is too long (want A.B.C.D[/N][:PORT[-PORT]])", s);
    const char *colon = strchr(s, ':');
    const char *slash = strchr(s, '/');
    if (colon && strchr(colon + 1, ':'))
        return fail(err, errlen, "rule '%s': IPv4 only (want A.B.C.D[/N][:PORT[-PORT]])", s);
    if (slash && colon && slash > colon)
        return fail(err, errlen, "rule '%s': the /prefix goes before the :port", s);
    size_t alen = slash ? (size_t)(slash - s) : colon ? (size_t)(colon - s) : len;
    char a[16];
    struct in_addr in;
    if (alen == 0 || alen >= sizeof(a))
        return fail(err, errlen, "rule '%s': bad IPv4 address", s);
    memcpy(a, s, alen);
    a[alen] = '\0';
    if (inet_pton(AF_INET, a, &in) != 1)
        return fail(err, errlen, "rule '%s': bad IPv4 address '%s'", s, a);
    long prefix = 32, lo = 0, hi = 0;
    if (slash) {
        const char *p = slash + 1;
        size_t plen = colon ? (size_t)(colon - p) : strlen(p);
        if (!parse_num(p, plen, 0, 32, &prefix) || plen > 2)
            return fail(err, errlen, "rule '%s': the prefix must be 0..32", s);
    }
    if (colon) {
        const char *p = colon + 1;
        const char *dash = strchr(p, '-');
        size_t n1 = dash ? (size_t)(dash - p) : strlen(p);
        if (!parse_num(p, n1, 1, 65535, &lo) ||
            (dash && !parse_num(dash + 1, strlen(dash + 1), 1, 65535, &hi)))
            return fail(err, errlen, "rule '%s': ports are 1..65535 (PORT or LO-HI)", s);
        if (!dash)
            hi = lo;
        if (hi < lo)
            return fail(err, errlen, "rule '%s': the port range runs backwards", s);
    }
    uint32_t addr = ntohl(in.s_addr);
    uint32_t mask = prefix == 0 ? 0 : 0xffffffffu << (32 - prefix);
    if (addr & ~mask)
        return fail(err, errlen, "rule '%s': host bits are set below /%ld", s, prefix);
    *r = (struct net_rule){
        .addr = addr, .prefix = (uint8_t)prefix, .port_lo = (uint16_t)lo, .port_hi = (uint16_t)hi};
    return 0;
}

int net_policy_add(struct net_policy *p, bool allow, const char *s, char *err, size_t errlen)
{
    int *n = allow ? &p->nallow : &p->ndeny;
    if (*n >= NET_MAX_RULES) {
        snprintf(err, errlen, "more than %d %s rules", NET_MAX_RULES,
                 allow ? "allow_out" : "deny_out");
        return -E2BIG;
    }
    int r = net_parse_rule(s, &(allow ? p->allow : p->deny)[*n], err, errlen);
    if (r == 0)
        (*n)++;
    return r;
}

static void ip4(uint32_t a, char out[16])
{
    snprintf(out, 16, "%u.%u.%u.%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255);
}

void net_rule_format(const struct net_rule *r, char *out, size_t len)
{
    char a[16], pfx[8] = "", port[16] = "";
    ip4(r->addr, a);
    if (r->prefix != 32)
        snprintf(pfx, sizeof(pfx), "/%u", r->prefix);
    if (r->port_lo && r->port_lo == r->port_hi)
        snprintf(port, sizeof(port), ":%u", r->port_lo);
    else if (r->port_lo)
        snprintf(port, sizeof(port), ":%u-%u", r->port_lo, r->port_hi);
    snprintf(out, len, "%s%s%s", a, pfx, port);
}

/* A bounded appender: once out overflows, every later call is a no-op and *pos is past len. */
struct buf {
    char *out;
    size_t len, pos;
};

static void put(struct buf *b, const char *fmt, ...)
{
    if (b->pos >= b->len) {
        b->pos = b->len;
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->out + b->pos, b->len - b->pos, fmt, ap);
    va_end(ap);
    b->pos = n < 0 || (size_t)n >= b->len - b->pos ? b->len : b->pos + (size_t)n;
}

static int done(struct buf *b)
{
    return b->pos >= b->len ? -E2BIG : (int)b->pos;
}

/* One nft rule matching r: "ip daddr 10.0.0.0/8 [meta l4proto { tcp, udp } th dport 80-90]". */
static void put_match(struct buf *b, const struct net_rule *r)
{
    char a[16];
    ip4(r->addr, a);
    put(b, "ip daddr %s/%u", a, r->prefix);
    if (r->port_lo && r->port_lo == r->port_hi)
        put(b, " meta l4proto { tcp, udp } th dport %u", r->port_lo);
    else if (r->port_lo)
        put(b, " meta l4proto { tcp, udp } th dport %u-%u", r->port_lo, r->port_hi);
}

static void put_dns_set(struct buf *b, const struct net_info *info)
{
    put(b, "{ ");
    for (int i = 0; i < info->ndns; i++)
        put(b, "%s%s", i ? ", " : "", info->dns[i]);
    put(b, " }");
}

int net_ns_ruleset(const struct net_policy *p, const struct net_info *info, char *out, size_t len)
{
    struct buf b = {out, len, 0};
    put(&b, "flush ruleset\n"
            "table inet amber {\n"
            "  chain forward {\n"
            "    type filter hook forward priority 0; policy drop;\n"
            "    ct state established,related accept\n"
            "    iifname != \"" NET_TAP "\" drop\n"
            "    meta nfproto != ipv4 drop\n");
    if (info->ndns > 0) {
        put(&b, "    ip daddr ");
        put_dns_set(&b, info);
        put(&b, " meta l4proto { tcp, udp } th dport 53 accept\n");
    }
    /* E2B's rule: an address in allow_out gets through even when deny_out covers it. */
    for (int i = 0; i < p->nallow; i++) {
        put(&b, "    ");
        put_match(&b, &p->allow[i]);
        put(&b, " accept\n");
    }
    for (int i = 0; i < p->ndeny; i++) {
        put(&b, "    ");
        put_match(&b, &p->deny[i]);
        put(&b, " drop\n");
    }
    put(&b, "    accept\n"
            "  }\n"
            "  chain input {\n"
            "    type filter hook input priority 0; policy accept;\n"
            "    iifname != \"" NET_TAP "\" accept\n"
            "    ct state established,related accept\n"
            "    icmp type echo-request accept\n"
            "    drop\n"
            "  }\n"
            "}\n"
            "table ip amber_nat {\n"
            "  chain postrouting {\n"
            "    type nat hook postrouting priority 100; policy accept;\n"
            "    oifname \"" NET_NS_VETH "\" masquerade\n"
            "  }\n"
            "}\n");
    return done(&b);
}

void net_host_table(unsigned slot, char *out, size_t len)
{
    snprintf(out, len, "amber_net_%u", slot);
}

int net_host_ruleset(const struct net_info *info, char *out, size_t len)
{
    char table[32];
    net_host_table(info->slot, table, sizeof(table));
    const char *hi = info->host_if;
    struct buf b = {out, len, 0};
    put(&b, "table ip %s {\n", table);
    put(&b,
        "  chain forward {\n"
        "    type filter hook forward priority 0; policy accept;\n"
        "    oifname \"%s\" ct state established,related accept\n"
        "    oifname \"%s\" drop\n"
        "  }\n",
        hi, hi);
    put(&b,
        "  chain input {\n"
        "    type filter hook input priority 0; policy accept;\n"
        "    iifname != \"%s\" accept\n"
        "    ct state established,related accept\n",
        hi);
    if (info->ndns > 0) {
        put(&b, "    ip daddr ");
        put_dns_set(&b, info);
        put(&b, " meta l4proto { tcp, udp } th dport 53 accept\n");
    }
    put(&b,
        "    drop\n"
        "  }\n"
        "  chain postrouting {\n"
        "    type nat hook postrouting priority 100; policy accept;\n"
        "    ip saddr %s/%d oifname != \"%s\" masquerade\n"
        "  }\n"
        "}\n",
        info->ns_ip, NET_PREFIX, hi);
    return done(&b);
}

void net_info_init(struct net_info *info, const char *id, unsigned slot)
{
    memset(info, 0, sizeof(*info));
    snprintf(info->ns, sizeof(info->ns), "amber-%s", id);
    snprintf(info->host_if, sizeof(info->host_if), "ambn%u", slot);
    info->slot = slot;
    uint32_t base = (10u << 24) | (200u << 16) | (slot % NET_SLOTS) * 4;
    ip4(base + 1, info->host_ip);
    ip4(base + 2, info->ns_ip);
}

int net_parse_resolv(const char *text, char dns[][16], int max)
{
    int n = 0;
    const char *line = text;
    while (line && *line && n < max) {
        const char *end = strchr(line, '\n');
        size_t llen = end ? (size_t)(end - line) : strlen(line);
        char buf[128];
        if (llen < sizeof(buf)) {
            memcpy(buf, line, llen);
            buf[llen] = '\0';
            char word[16], addr[64];
            struct in_addr in;
            if (sscanf(buf, " %15s %63s", word, addr) == 2 && strcmp(word, "nameserver") == 0 &&
                inet_pton(AF_INET, addr, &in) == 1 && (ntohl(in.s_addr) >> 24) != 127) {
                bool dup = false;
                for (int i = 0; i < n; i++)
                    dup = dup || strcmp(dns[i], addr) == 0;
                if (!dup)
                    snprintf(dns[n++], 16, "%s", addr);
            }
        }
        line = end ? end + 1 : NULL;
    }
    return n;
}

int net_guest_script(const struct net_info *info, char *out, size_t len)
{
    struct buf b = {out, len, 0};
    put(&b,
        "set -e; ip link set lo up; ip addr add " NET_GUEST_IP "/%d dev eth0; "
        "ip link set eth0 up; ip route add default via " NET_GATEWAY "; : >/etc/resolv.conf",
        NET_PREFIX);
    for (int i = 0; i < info->ndns; i++)
        put(&b, "; echo 'nameserver %s' >>/etc/resolv.conf", info->dns[i]);
    put(&b, "\n");
    return done(&b);
}
