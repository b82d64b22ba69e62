/* Unit tests for the command line: every flag with good and bad values, and validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"

static char errbuf[256];

/* Parse a NULL-terminated list of arguments (argv[0] is supplied) into a fresh config. */
static int parse_v(struct vm_config *cfg, va_list ap)
{
    char *argv[64];
    int argc = 0;
    argv[argc++] = "amber";
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL && argc < 63)
        argv[argc++] = (char *)a;
    argv[argc] = NULL;
    config_defaults(cfg);
    return config_parse_args(cfg, argc, argv, errbuf, sizeof(errbuf));
}

static int parse(struct vm_config *cfg, ...)
{
    va_list ap;
    va_start(ap, cfg);
    int rc = parse_v(cfg, ap);
    va_end(ap);
    return rc;
}

/* Expect success. */
static void ok(struct vm_config *cfg, ...)
{
    va_list ap;
    va_start(ap, cfg);
    int rc = parse_v(cfg, ap);
    va_end(ap);
    if (rc != 0)
        print_error("unexpected failure: %s\n", errbuf);
    assert_int_equal(rc, 0);
}

/* Expect -EINVAL with a message containing want. */
static void bad(const char *want, ...)
{
    struct vm_config cfg;
    va_list ap;
    va_start(ap, want);
    int rc = parse_v(&cfg, ap);
    va_end(ap);
    if (rc != -EINVAL)
        print_error("expected failure containing '%s', got rc %d\n", want, rc);
    assert_int_equal(rc, -EINVAL);
    if (!strstr(errbuf, want))
        print_error("message '%s' lacks '%s'\n", errbuf, want);
    assert_non_null(strstr(errbuf, want));
    assert_null(strchr(errbuf, '\n'));
}

static void test_defaults(void **state)
{
    struct vm_config cfg;
    memset(&cfg, 0xff, sizeof(cfg));
    config_defaults(&cfg);
    assert_int_equal(cfg.vcpus, 1);
    assert_int_equal(cfg.mem_mib, 256);
    assert_int_equal(cfg.console, CONSOLE_STDIO);
    assert_int_equal(cfg.console_max_mib, 64);
    assert_int_equal(cfg.on_reboot, ON_REBOOT_EXIT);
    assert_true(cfg.seccomp);
    assert_false(cfg.entropy);
    assert_int_equal(cfg.ndrives, 0);
    assert_int_equal(cfg.nnets, 0);
    assert_false(cfg.vsock.enabled);
    assert_string_equal(cfg.kernel, "");
    assert_false(cfg.cmdline_set);
}

static void test_basic_and_equals_form(void **state)
{
    struct vm_config cfg;
    ok(&cfg, "--kernel", "/k", "--initrd=/i", "--cmdline", "console=ttyS0 --x", "--vcpus=4",
       "--mem-mib", "512", "--id=sb-1_A", NULL);
    assert_string_equal(cfg.kernel, "/k");
    assert_string_equal(cfg.initrd, "/i");
    assert_string_equal(cfg.cmdline, "console=ttyS0 --x");
    assert_true(cfg.cmdline_set);
    assert_int_equal(cfg.vcpus, 4);
    assert_int_equal(cfg.mem_mib, 512);
    assert_string_equal(cfg.id, "sb-1_A");
    /* Parsing twice in one process works (getopt state is reset). */
    ok(&cfg, "--kernel=/k2", NULL);
    assert_string_equal(cfg.kernel, "/k2");
    assert_int_equal(cfg.vcpus, 1);
}

static void test_vcpus(void **state)
{
    struct vm_config cfg;
    ok(&cfg, "--kernel", "/k", "--vcpus", "1", NULL);
    assert_int_equal(cfg.vcpus, 1);
    ok(&cfg, "--kernel", "/k", "--vcpus", "32", NULL);
    assert_int_equal(cfg.vcpus, 32);
    ok(&cfg, "--kernel", "/k", "--vcpus", "007", NULL);
    assert_int_equal(cfg.vcpus, 7);
    bad("--vcpus", "--kernel", "/k", "--vcpus", "0", NULL);
    bad("--vcpus", "--kernel", "/k", "--vcpus", "33", NULL);
    bad("--vcpus", "--kernel", "/k", "--vcpus", "4x", NULL);
    bad("--vcpus", "--kernel", "/k", "--vcpus", "-1", NULL);
    bad("--vcpus", "--kernel", "/k", "--vcpus", "+2", NULL);
    bad("--vcpus", "--kernel", "/k", "--vcpus", " 2", NULL);
    bad("--vcpus", "--kernel", "/k", "--vcpus", "", NULL);
    bad("--vcpus", "--kernel", "/k", "--vcpus", "0x2", NULL);
    bad("--vcpus", "--kernel", "/k", "--vcpus", "18446744073709551617", NULL);
    bad("--vcpus", "--kernel", "/k", "--vcpus", "4294967297", NULL);
    bad("needs a value", "--kernel", "/k", "--vcpus", NULL);
}

static void test_mem(void **state)
{
    struct vm_config cfg;
    ok(&cfg, "--kernel", "/k", "--mem-mib", "16", NULL);
    assert_int_equal(cfg.mem_mib, 16);
    ok(&cfg, "--kernel", "/k", "--mem-mib=1048576", NULL);
    assert_int_equal(cfg.mem_mib, 1048576);
    bad("--mem-mib", "--kernel", "/k", "--mem-mib", "15", NULL);
    bad("--mem-mib", "--kernel", "/k", "--mem-mib", "1048577", NULL);
    bad("--mem-mib", "--kernel", "/k", "--mem-mib", "256M", NULL);
    bad("--mem-mib", "--kernel", "/k", "--mem-mib", "-256", NULL);
    bad("--mem-mib", "--kernel", "/k", "--mem-mib", "99999999999999999999999", NULL);
}

static void test_console(void **state)
{
    struct vm_config cfg;
    ok(&cfg, "--kernel", "/k", "--console", "none", NULL);
    assert_int_equal(cfg.console, CONSOLE_NONE);
    ok(&cfg, "--kernel", "/k", "--console=stdio", NULL);
    assert_int_equal(cfg.console, CONSOLE_STDIO);
    ok(&cfg, "--kernel", "/k", "--console", "/tmp/c.log", "--console-max-mib", "2", NULL);
    assert_int_equal(cfg.console, CONSOLE_FILE);
    assert_string_equal(cfg.console_path, "/tmp/c.log");
    assert_int_equal(cfg.console_max_mib, 2);
    bad("--console", "--kernel", "/k", "--console=", NULL);
    bad("--console-max-mib", "--kernel", "/k", "--console-max-mib", "0", NULL);
    bad("--console-max-mib", "--kernel", "/k", "--console-max-mib", "1k", NULL);
    bad("--console-max-mib", "--kernel", "/k", "--console-max-mib", "1048577", NULL);
}

static void test_id(void **state)
{
    struct vm_config cfg;
    char id64[65], id65[66];
    memset(id64, 'a', 64);
    id64[64] = '\0';
    memset(id65, 'b', 65);
    id65[65] = '\0';
    ok(&cfg, "--kernel", "/k", "--id", id64, NULL);
    assert_string_equal(cfg.id, id64);
    bad("--id", "--kernel", "/k", "--id", id65, NULL);
    bad("--id", "--kernel", "/k", "--id", "a b", NULL);
    bad("--id", "--kernel", "/k", "--id", "a/b", NULL);
    bad("--id", "--kernel", "/k", "--id", "a.b", NULL);
    bad("--id", "--kernel", "/k", "--id=", NULL);
    assert_true(config_id_valid("A-z_09"));
    assert_false(config_id_valid(""));
    assert_false(config_id_valid(id65));
}

static void test_switches(void **state)
{
    struct vm_config cfg;
    ok(&cfg, "--kernel", "/k", "--on-reboot", "restart", "--mmio-cmdline", "--boot-timer",
       "--entropy", NULL);
    assert_int_equal(cfg.on_reboot, ON_REBOOT_RESTART);
    assert_true(cfg.mmio_cmdline);
    assert_true(cfg.boot_timer);
    assert_true(cfg.entropy);
    ok(&cfg, "--kernel", "/k", "--entropy", "--no-entropy", "--on-reboot=exit", NULL);
    assert_false(cfg.entropy);
    assert_int_equal(cfg.on_reboot, ON_REBOOT_EXIT);
    bad("--on-reboot", "--kernel", "/k", "--on-reboot", "reboot", NULL);
    bad("malformed option '--mmio-cmdline=1'", "--kernel", "/k", "--mmio-cmdline=1", NULL);
}

static void test_seccomp(void **state)
{
    struct vm_config cfg;
    ok(&cfg, "--kernel", "/k", "--seccomp=off", NULL);
    assert_false(cfg.seccomp);
    ok(&cfg, "--kernel", "/k", "--no-seccomp", "--seccomp", "on", NULL);
    assert_true(cfg.seccomp);
    ok(&cfg, "--kernel", "/k", "--no-seccomp", NULL);
    assert_false(cfg.seccomp);
    ok(&cfg, "--kernel", "/k", "--seccomp-filter", "/f.bpf", NULL);
    assert_true(cfg.seccomp);
    assert_string_equal(cfg.seccomp_filter, "/f.bpf");
    bad("--seccomp", "--kernel", "/k", "--seccomp", "maybe", NULL);
    bad("--seccomp-filter", "--kernel", "/k", "--seccomp-filter", "/f", "--no-seccomp", NULL);
}

static void test_drives(void **state)
{
    struct vm_config cfg;
    ok(&cfg, "--kernel", "/k", "--drive", "path=/a.img,ro,root,direct,id=rootfs", "--drive",
       "path=/b.img", "--drive=path=/c.img", NULL);
    assert_int_equal(cfg.ndrives, 3);
    assert_string_equal(cfg.drive[0].path, "/a.img");
    assert_string_equal(cfg.drive[0].id, "rootfs");
    assert_true(cfg.drive[0].read_only);
    assert_true(cfg.drive[0].root);
    assert_true(cfg.drive[0].direct);
    assert_string_equal(cfg.drive[1].id, "drive1");
    assert_false(cfg.drive[1].read_only);
    assert_false(cfg.drive[1].root);
    assert_false(cfg.drive[1].direct);
    assert_string_equal(cfg.drive[2].id, "drive2");
    assert_string_equal(cfg.drive[2].path, "/c.img");

    bad("duplicate drive id 'x'", "--kernel", "/k", "--drive", "path=/a,id=x", "--drive",
        "path=/b,id=x", NULL);
    bad("duplicate drive id 'drive1'", "--kernel", "/k", "--drive", "path=/a,id=drive1", "--drive",
        "path=/b", NULL);
    bad("two root drives", "--kernel", "/k", "--drive", "path=/a,root", "--drive", "path=/b,root",
        NULL);
    bad("needs path", "--kernel", "/k", "--drive", "ro", NULL);
    bad("unknown item 'rw'", "--kernel", "/k", "--drive", "path=/a,rw", NULL);
    bad("takes no value", "--kernel", "/k", "--drive", "path=/a,ro=1", NULL);
    bad("unknown item ''", "--kernel", "/k", "--drive", "path=/a,,ro", NULL);
    bad("path is empty", "--kernel", "/k", "--drive", "path=", NULL);
    bad("given twice", "--kernel", "/k", "--drive", "path=/a,path=/b", NULL);
    bad("given twice", "--kernel", "/k", "--drive", "path=/a,root,root", NULL);
    bad("--drive: id", "--kernel", "/k", "--drive", "path=/a,id=bad id", NULL);

    char *argv[2 + 2 * (CONFIG_MAX_DRIVES + 1) + 1];
    int argc = 0;
    argv[argc++] = "amber";
    argv[argc++] = "--kernel=/k";
    for (int i = 0; i <= CONFIG_MAX_DRIVES; i++) {
        argv[argc++] = "--drive";
        argv[argc++] = "path=/x";
    }
    argv[argc] = NULL;
    config_defaults(&cfg);
    assert_int_equal(config_parse_args(&cfg, argc, argv, errbuf, sizeof(errbuf)), -EINVAL);
    assert_non_null(strstr(errbuf, "too many --drive"));
    assert_int_equal(cfg.ndrives, CONFIG_MAX_DRIVES);
}

static void test_nets(void **state)
{
    struct vm_config cfg;
    ok(&cfg, "--kernel", "/k", "--net", "tap=tap0,mac=02:AB:cd:00:00:01,id=eth0", "--net",
       "tap=tap1", NULL);
    assert_int_equal(cfg.nnets, 2);
    assert_string_equal(cfg.net[0].tap, "tap0");
    assert_string_equal(cfg.net[0].id, "eth0");
    assert_true(cfg.net[0].has_mac);
    static const uint8_t mac[6] = {0x02, 0xab, 0xcd, 0x00, 0x00, 0x01};
    assert_memory_equal(cfg.net[0].mac, mac, 6);
    assert_string_equal(cfg.net[1].id, "net1");
    assert_false(cfg.net[1].has_mac);

    bad("bad mac", "--kernel", "/k", "--net", "tap=t,mac=01:00:00:00:00:01", NULL); /* mcast */
    bad("bad mac", "--kernel", "/k", "--net", "tap=t,mac=ff:ff:ff:ff:ff:ff", NULL);
    bad("bad mac", "--kernel", "/k", "--net", "tap=t,mac=00:00:00:00:00:00", NULL);
    bad("bad mac", "--kernel", "/k", "--net", "tap=t,mac=02:00:00:00:00", NULL);
    bad("bad mac", "--kernel", "/k", "--net", "tap=t,mac=02-00-00-00-00-01", NULL);
    bad("bad mac", "--kernel", "/k", "--net", "tap=t,mac=02:00:00:00:00:0g", NULL);
    bad("bad mac", "--kernel", "/k", "--net", "tap=t,mac=02:00:00:00:00:011", NULL);
    bad("bad tap", "--kernel", "/k", "--net", "tap=0123456789abcdef", NULL);
    bad("bad tap", "--kernel", "/k", "--net", "tap=a/b", NULL);
    bad("bad tap", "--kernel", "/k", "--net", "tap=..", NULL);
    bad("needs tap", "--kernel", "/k", "--net", "mac=02:00:00:00:00:01", NULL);
    bad("duplicate interface id", "--kernel", "/k", "--net", "tap=a,id=n", "--net", "tap=b,id=n",
        NULL);
    bad("used twice", "--kernel", "/k", "--net", "tap=a", "--net", "tap=a", NULL);
    bad("unknown item", "--kernel", "/k", "--net", "tap=a,vhost=1", NULL);
    bad("needs a value", "--kernel", "/k", "--net", "tap=a,mac", NULL);

    uint8_t m[6];
    assert_int_equal(config_mac_parse("06:00:00:00:00:00", m), 0);
    assert_int_equal(config_mac_parse("07:00:00:00:00:00", m), -EINVAL);
}

static void test_vsock(void **state)
{
    struct vm_config cfg;
    ok(&cfg, "--kernel", "/k", "--vsock", "cid=3,uds=/run/v.sock", NULL);
    assert_true(cfg.vsock.enabled);
    assert_int_equal(cfg.vsock.cid, 3);
    assert_string_equal(cfg.vsock.uds_path, "/run/v.sock");
    ok(&cfg, "--kernel", "/k", "--vsock=uds=/v,cid=4294967294", NULL);
    assert_int_equal(cfg.vsock.cid, 4294967294u);

    char longpath[140] = "uds=/";
    memset(longpath + 5, 'p', 108);
    longpath[113] = '\0';
    bad("cid", "--kernel", "/k", "--vsock", "cid=2,uds=/v", NULL);
    bad("cid", "--kernel", "/k", "--vsock", "cid=4294967295,uds=/v", NULL);
    bad("cid", "--kernel", "/k", "--vsock", "cid=3x,uds=/v", NULL);
    bad("cid", "--kernel", "/k", "--vsock", "cid=-3,uds=/v", NULL);
    bad("uds path", "--kernel", "/k", "--vsock", "cid=3,uds=", NULL);
    bad("needs cid=N,uds=PATH", "--kernel", "/k", "--vsock", "cid=3", NULL);
    bad("uds path", "--kernel", "/k", "--vsock", longpath, NULL);
    bad("only one --vsock", "--kernel", "/k", "--vsock", "cid=3,uds=/a", "--vsock", "cid=4,uds=/b",
        NULL);
    bad("unexpected item", "--kernel", "/k", "--vsock", "cid=3,cid=4,uds=/a", NULL);
}

static void test_api_and_config_file(void **state)
{
    struct vm_config cfg;
    ok(&cfg, "--api-sock", "/run/api.sock", "--id", "x", NULL);
    assert_string_equal(cfg.api_sock, "/run/api.sock");
    assert_string_equal(cfg.kernel, "");
    ok(&cfg, "--config-file", "/c.json", "--no-api", "--console", "none", NULL);
    assert_string_equal(cfg.config_file, "/c.json");
    assert_true(cfg.no_api);
    ok(&cfg, "--config-file", "/c.json", "--api-sock", "/a", NULL);
    ok(&cfg, "--kernel", "/k", "--api-sock", "/a", NULL);
    ok(&cfg, "--api-sock", "/a", "--pid-file", "/run/amber.pid", "--exit-file=/run/exit.json",
       NULL);
    assert_string_equal(cfg.pid_file, "/run/amber.pid");
    assert_string_equal(cfg.exit_file, "/run/exit.json");
    bad("--pid-file: path is empty", "--api-sock", "/a", "--pid-file=", NULL);

    bad("--kernel is required", NULL);
    bad("--kernel is required", "--vcpus", "2", NULL);
    bad("--no-api is only valid with --config-file", "--kernel", "/k", "--no-api", NULL);
    bad("--no-api conflicts", "--config-file", "/c", "--no-api", "--api-sock", "/a", NULL);
    bad("--kernel conflicts with --config-file", "--config-file", "/c", "--kernel", "/k", NULL);
    bad("--drive conflicts with --config-file", "--config-file", "/c", "--drive", "path=/a", NULL);
    bad("need --kernel", "--api-sock", "/a", "--initrd", "/i", NULL);
    char longsock[120];
    memset(longsock, 's', 110);
    longsock[110] = '\0';
    bad("--api-sock", "--api-sock", longsock, NULL);
}

/* --restore/--mem-file (docs/snapshot.md): together, and instead of anything describing a VM. */
static void test_restore(void **state)
{
    struct vm_config cfg;
    ok(&cfg, "--restore", "/s/vm.snap", "--mem-file", "/s/vm.mem", NULL);
    assert_string_equal(cfg.restore_path, "/s/vm.snap");
    assert_string_equal(cfg.restore_mem_path, "/s/vm.mem");
    ok(&cfg, "--restore=/s/a", "--mem-file=/s/b", "--no-api", NULL);
    assert_string_equal(cfg.restore_path, "/s/a");
    assert_true(cfg.no_api);
    bad("--restore and --mem-file go together", "--restore", "/s/a", NULL);
    bad("--restore and --mem-file go together", "--mem-file", "/s/b", "--api-sock", "/a", NULL);
    bad("--kernel conflicts with --restore", "--restore", "/a", "--mem-file", "/b", "--kernel",
        "/k", NULL);
    bad("--vcpus conflicts with --restore", "--restore", "/a", "--mem-file", "/b", "--vcpus", "2",
        NULL);
    bad("--config-file conflicts with --restore", "--restore", "/a", "--mem-file", "/b",
        "--config-file", "/c", NULL);
    bad("--restore: path is empty", "--restore=", "--mem-file", "/b", NULL);
}

static void test_bad_syntax(void **state)
{
    bad("unknown or malformed option '--bogus'", "--kernel", "/k", "--bogus", NULL);
    bad("unknown or malformed option '--help=1'", "--help=1", NULL);
    bad("unknown option '-x'", "-x", NULL);
    bad("unexpected argument 'extra'", "--kernel", "/k", "extra", NULL);
    bad("unexpected argument 'extra'", "--kernel", "/k", "--", "extra", NULL);
    bad("needs a value", "--kernel", NULL);
    bad("needs a value, got '--vcpus'", "--kernel", "--vcpus", "2", NULL);
    bad("--kernel: path is empty", "--kernel=", NULL);
    bad("unknown or malformed option '--a?b'", "--a\nb", NULL); /* one line, always */
}

/* Run config_parse_args with stdout captured into out. */
static int capture(const char *flag, char *out, size_t outlen)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    fflush(stdout);
    int saved = dup(1);
    dup2(p[1], 1);
    struct vm_config cfg;
    int rc = parse(&cfg, flag, NULL);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    close(p[1]);
    size_t n = 0;
    ssize_t r;
    while (n + 1 < outlen && (r = read(p[0], out + n, outlen - 1 - n)) > 0)
        n += (size_t)r;
    out[n] = '\0';
    close(p[0]);
    return rc;
}

static void test_help_and_version(void **state)
{
    static char out[16384];
    assert_int_equal(capture("--version", out, sizeof(out)), CONFIG_PARSE_EXIT);
    /* The first line is exactly "amber v<AMBER_VERSION>". */
    const char *want = "amber v" AMBER_VERSION "\n";
    if (strncmp(out, want, strlen(want)) != 0)
        print_error("got: [%s]\n", out);
    assert_true(strncmp(out, want, strlen(want)) == 0);
    assert_int_equal(capture("--help", out, sizeof(out)), CONFIG_PARSE_EXIT);
    assert_true(strncmp(out, "usage: amber", 12) == 0);
    assert_int_equal(capture("-h", out, sizeof(out)), CONFIG_PARSE_EXIT);
    static const char *const flags[] = {
        "--kernel ",
        "--initrd ",
        "--cmdline ",
        "--vcpus ",
        "--mem-mib ",
        "--console ",
        "--console-max-mib ",
        "--id ",
        "--on-reboot ",
        "--mmio-cmdline",
        "--drive ",
        "--net ",
        "--vsock ",
        "--entropy",
        "--no-entropy",
        "--api-sock ",
        "--config-file ",
        "--no-api",
        "--seccomp ",
        "--no-seccomp",
        "--seccomp-filter ",
        "--boot-timer",
        "--pid-file ",
        "--exit-file ",
        "--help",
        "--version",
    };
    for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++) {
        if (!strstr(out, flags[i]))
            print_error("--help lacks %s\n", flags[i]);
        assert_non_null(strstr(out, flags[i]));
    }
}

static void write_file(const char *path)
{
    int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "x", 1), 1);
    close(fd);
}

static void test_validate(void **state)
{
    char dir[] = "/tmp/amber-test-config-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char kernel[128], initrd[128], drive[128];
    snprintf(kernel, sizeof(kernel), "%s/vmlinux", dir);
    snprintf(initrd, sizeof(initrd), "%s/initrd", dir);
    snprintf(drive, sizeof(drive), "%s/disk.img", dir);
    write_file(kernel);
    write_file(initrd);
    write_file(drive);

    struct vm_config cfg;
    config_defaults(&cfg);
    assert_int_equal(config_validate(&cfg, errbuf, sizeof(errbuf)), -EINVAL);
    assert_non_null(strstr(errbuf, "no kernel"));

    strcpy(cfg.kernel, kernel);
    strcpy(cfg.initrd, initrd);
    cfg.ndrives = 1;
    strcpy(cfg.drive[0].id, "d0");
    strcpy(cfg.drive[0].path, drive);
    assert_int_equal(config_validate(&cfg, errbuf, sizeof(errbuf)), 0);

    strcpy(cfg.drive[0].path, "/nonexistent/amber.img");
    assert_int_equal(config_validate(&cfg, errbuf, sizeof(errbuf)), -ENOENT);
    assert_non_null(strstr(errbuf, "/nonexistent/amber.img"));
    strcpy(cfg.drive[0].path, drive);

    strcpy(cfg.initrd, dir);
    assert_int_equal(config_validate(&cfg, errbuf, sizeof(errbuf)), -EISDIR);
    strcpy(cfg.initrd, initrd);

    /* A file swapped for a FIFO after its PUT: refused at InstanceStart, never opened. */
    char fifo[256];
    snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    char *const slots[] = {cfg.kernel, cfg.initrd, cfg.drive[0].path};
    const char *const saved[] = {kernel, initrd, drive};
    for (int i = 0; i < 3; i++) {
        strcpy(slots[i], fifo);
        assert_int_equal(config_validate(&cfg, errbuf, sizeof(errbuf)), -EINVAL);
        assert_non_null(strstr(errbuf, "not a regular file"));
        strcpy(slots[i], saved[i]);
    }
    unlink(fifo);

    strcpy(cfg.kernel, "/nonexistent/vmlinux");
    assert_int_equal(config_validate(&cfg, errbuf, sizeof(errbuf)), -ENOENT);
    assert_non_null(strstr(errbuf, "kernel"));
    strcpy(cfg.kernel, kernel);

    /* Structural checks also apply to configurations built by the API. */
    cfg.vcpus = 0;
    assert_int_equal(config_validate(&cfg, errbuf, sizeof(errbuf)), -EINVAL);
    cfg.vcpus = 33;
    assert_int_equal(config_validate(&cfg, errbuf, sizeof(errbuf)), -EINVAL);
    cfg.vcpus = 2;
    cfg.mem_mib = 8;
    assert_int_equal(config_validate(&cfg, errbuf, sizeof(errbuf)), -EINVAL);
    cfg.mem_mib = 128;
    cfg.ndrives = 2;
    cfg.drive[1] = cfg.drive[0];
    assert_int_equal(config_validate(&cfg, errbuf, sizeof(errbuf)), -EINVAL);
    assert_non_null(strstr(errbuf, "duplicate drive id"));
    strcpy(cfg.drive[1].id, "d1");
    assert_int_equal(config_validate(&cfg, errbuf, sizeof(errbuf)), 0);
    cfg.drive[0].root = cfg.drive[1].root = true;
    assert_int_equal(config_validate(&cfg, errbuf, sizeof(errbuf)), -EINVAL);
    assert_non_null(strstr(errbuf, "root"));
    cfg.drive[1].root = false;
    cfg.vsock.enabled = true;
    cfg.vsock.cid = 2;
    strcpy(cfg.vsock.uds_path, "/v");
    assert_int_equal(config_validate(&cfg, errbuf, sizeof(errbuf)), -EINVAL);
    cfg.vsock.cid = 3;
    assert_int_equal(config_validate(&cfg, errbuf, sizeof(errbuf)), 0);

    unlink(kernel);
    unlink(initrd);
    unlink(drive);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_basic_and_equals_form),
        cmocka_unit_test(test_vcpus),
        cmocka_unit_test(test_mem),
        cmocka_unit_test(test_console),
        cmocka_unit_test(test_id),
        cmocka_unit_test(test_switches),
        cmocka_unit_test(test_seccomp),
        cmocka_unit_test(test_drives),
        cmocka_unit_test(test_nets),
        cmocka_unit_test(test_vsock),
        cmocka_unit_test(test_api_and_config_file),
        cmocka_unit_test(test_restore),
        cmocka_unit_test(test_bad_syntax),
        cmocka_unit_test(test_help_and_version),
        cmocka_unit_test(test_validate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
