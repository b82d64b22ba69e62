/* Unit tests for ctl/netns_rules.c: allow_out/deny_out parsing, the nft rulesets it writes,
 * resolv.conf parsing and the guest's set-up script. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "ctl/netns_rules.h"

static void test_rules_accepted(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
        uint8_t prefix;
        uint16_t lo, hi;
    } ok[] = {
        {"1.2.3.4", "1.2.3.4", 32, 0, 0},
        {"10.0.0.0/8", "10.0.0.0/8", 8, 0, 0},
        {"0.0.0.0/0", "0.0.0.0/0", 0, 0, 0},
        {"198.51.100.2:8080", "198.51.100.2:8080", 32, 8080, 8080},
        {"192.168.0.0/16:1-1024", "192.168.0.0/16:1-1024", 16, 1, 1024},
        {"1.2.3.4/32:65535", "1.2.3.4:65535", 32, 65535, 65535},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        struct net_rule r;
        char err[160] = "", back[64];
        assert_int_equal(net_parse_rule(ok[i].in, &r, err, sizeof(err)), 0);
        assert_int_equal(r.prefix, ok[i].prefix);
        assert_int_equal(r.port_lo, ok[i].lo);
        assert_int_equal(r.port_hi, ok[i].hi);
        net_rule_format(&r, back, sizeof(back));
        assert_string_equal(back, ok[i].out);
    }
}

static void test_rules_refused(void **state)
{
    (void)state;
    static const struct {
        const char *in, *why;
    } bad[] = {
        {"", "empty"},
        {"1.2.3", "bad IPv4"},
        {"1.2.3.256", "bad IPv4"},
        {"example.com", "bad IPv4"},
        {"::1", "IPv4 only"},
        {"1.2.3.4/33", "prefix"},
        {"1.2.3.4/", "prefix"},
        {"1.2.3.4/-1", "prefix"},
        {"1.2.3.4/008", "prefix"},
        {"10.0.0.1/8", "host bits"},
        {"1.2.3.4:0", "ports"},
        {"1.2.3.4:65536", "ports"},
        {"1.2.3.4:", "ports"},
        {"1.2.3.4:80-", "ports"},
        {"1.2.3.4:x", "ports"},
        {"1.2.3.4:90-80", "backwards"},
        {"1.2.3.4:80/8", "before the :port"},
        {" 1.2.3.4", "bad IPv4"},
        {"1.2.3.4; drop", "bad IPv4"},
        {"1.2.3.4:80; drop", "ports"},
        {"1.2.3.4/8\"", "prefix"},
        {"255.255.255.255/32:65535-65535xxxxxxxxxxxx", "too long"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct net_rule r;
        char err[160] = "";
        assert_int_equal(net_parse_rule(bad[i].in, &r, err, sizeof(err)), -EINVAL);
        if (!strstr(err, bad[i].why))
            fail_msg("'%s': message '%s' lacks '%s'", bad[i].in, err, bad[i].why);
    }
}

static void test_policy_limit(void **state)
{
    (void)state;
    static struct net_policy p;
    char err[160];
    for (int i = 0; i < NET_MAX_RULES; i++)
        assert_int_equal(net_policy_add(&p, true, "1.2.3.4", err, sizeof(err)), 0);
    assert_int_equal(net_policy_add(&p, true, "1.2.3.4", err, sizeof(err)), -E2BIG);
    assert_int_equal(p.nallow, NET_MAX_RULES);
    assert_int_equal(net_policy_add(&p, false, "nope", err, sizeof(err)), -EINVAL);
    assert_int_equal(p.ndeny, 0);
}

/* The offset of needle in hay, failing the test if it is missing. */
static long at(const char *hay, const char *needle)
{
    const char *p = strstr(hay, needle);
    if (!p)
        fail_msg("'%s' not in:\n%s", needle, hay);
    return p - hay;
}

static void test_ns_ruleset_order(void **state)
{
    (void)state;
    static struct net_policy p;
    struct net_info info;
    char err[160], out[8192];
    net_info_init(&info, "sbx-1", 7);
    info.ndns = net_parse_resolv("nameserver 9.9.9.9\n", info.dns, NET_MAX_DNS);
    assert_int_equal(net_policy_add(&p, false, "0.0.0.0/0", err, sizeof(err)), 0);
    assert_int_equal(net_policy_add(&p, true, "198.51.100.2:8080", err, sizeof(err)), 0);
    int n = net_ns_ruleset(&p, &info, out, sizeof(out));
    assert_true(n > 0 && (size_t)n == strlen(out));
    /* Established first, then DNS, then allow_out before deny_out, then the default accept. */
    long est = at(out, "ct state established,related accept");
    long dns = at(out, "ip daddr { 9.9.9.9 } meta l4proto { tcp, udp } th dport 53 accept");
    long allow = at(out, "ip daddr 198.51.100.2/32 meta l4proto { tcp, udp } th dport 8080 accept");
    long deny = at(out, "ip daddr 0.0.0.0/0 drop");
    long dflt = at(out, "    accept\n  }");
    assert_true(est < dns && dns < allow && allow < deny && deny < dflt);
    at(out, "iifname != \"tap0\" drop");
    at(out, "oifname \"veth0\" masquerade");
    assert_int_equal(net_ns_ruleset(&p, &info, out, 64), -E2BIG);
}

static void test_host_ruleset(void **state)
{
    (void)state;
    struct net_info info;
    char out[4096];
    net_info_init(&info, "abc", 3);
    assert_string_equal(info.ns, "amber-abc");
    assert_string_equal(info.host_if, "ambn3");
    assert_string_equal(info.host_ip, "10.200.0.13");
    assert_string_equal(info.ns_ip, "10.200.0.14");
    assert_true(net_host_ruleset(&info, out, sizeof(out)) > 0);
    at(out, "table ip amber_net_3 {");
    at(out, "oifname \"ambn3\" drop");
    at(out, "ip saddr 10.200.0.14/30 oifname != \"ambn3\" masquerade");
    assert_null(strstr(out, "dport 53")); /* no DNS servers, no DNS exception */
    net_info_init(&info, "abc", NET_SLOTS - 1);
    assert_string_equal(info.ns_ip, "10.200.255.254");
}

static void test_resolv(void **state)
{
    (void)state;
    char dns[NET_MAX_DNS][16];
    const char *text = "# comment\nsearch example\nnameserver 127.0.0.53\n"
                       "nameserver ::1\nnameserver  10.0.0.2 \nnameserver 10.0.0.2\n"
                       "nameserver 8.8.8.8\nnameserver 1.1.1.1\nnameserver 9.9.9.9\n";
    assert_int_equal(net_parse_resolv(text, dns, NET_MAX_DNS), 3);
    assert_string_equal(dns[0], "10.0.0.2");
    assert_string_equal(dns[1], "8.8.8.8");
    assert_string_equal(dns[2], "1.1.1.1");
    assert_int_equal(net_parse_resolv("nameserver 127.0.0.1", dns, NET_MAX_DNS), 0);
}

static void test_guest_script(void **state)
{
    (void)state;
    struct net_info info;
    char out[1024];
    net_info_init(&info, "x", 0);
    info.ndns = net_parse_resolv("nameserver 10.1.2.3\n", info.dns, NET_MAX_DNS);
    assert_true(net_guest_script(&info, out, sizeof(out)) > 0);
    at(out, "ip addr add " NET_GUEST_IP "/30 dev eth0");
    at(out, "ip route add default via " NET_GATEWAY);
    at(out, "echo 'nameserver 10.1.2.3' >>/etc/resolv.conf");
    assert_int_equal(net_guest_script(&info, out, 16), -E2BIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rules_accepted), cmocka_unit_test(test_rules_refused),
        cmocka_unit_test(test_policy_limit),   cmocka_unit_test(test_ns_ruleset_order),
        cmocka_unit_test(test_host_ruleset),   cmocka_unit_test(test_resolv),
        cmocka_unit_test(test_guest_script),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
