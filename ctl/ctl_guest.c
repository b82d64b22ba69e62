/* amberctl guest commands: exec, cp and ping, spoken to amber-agent over vsock. */
#include "ctl/amberctl.h"
#include "ctl/ctl_pty.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int ctl_exec(int argc, char **argv)
{
    static const struct option opts[] = {
        CTL_TARGET_OPTIONS,
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"env", required_argument, NULL, OPT_ENV},
        {"cwd", required_argument, NULL, OPT_CWD},
        {"user", required_argument, NULL, OPT_USER},
        {"shell", no_argument, NULL, OPT_SHELL},
        {"tty", no_argument, NULL, 't'},
        {NULL, 0, NULL, 0},
    };
    struct ctl_target t = {0};
    struct agent_exec_spec spec = {0};
    const char **env = calloc((size_t)argc + 2, sizeof(char *)); /* + TERM for -t */
    char *shell = NULL, term[256];
    size_t nenv = 0;
    bool use_shell = false, tty = false;
    int ch, rc = CTL_EXEC_FAIL;
    if (!env)
        return CTL_EXEC_FAIL;
    optind = 0;
    while ((ch = getopt_long(argc, argv, "+t", opts, NULL)) != -1) {
        int r = ctl_target_opt(&t, ch, optarg);
        if (r < 0)
            goto out;
        if (r > 0)
            continue;
        switch (ch) {
        case 't':
            tty = true;
            break;
        case OPT_TIMEOUT: {
            long long ms = ctl_parse_seconds_ms(optarg);
            if (ms < 0) {
                fprintf(stderr, "amberctl: bad --timeout '%s'\n", optarg);
                goto out;
            }
            spec.timeout_ms = (uint64_t)ms;
            break;
        }
        case OPT_ENV:
            if (!strchr(optarg, '=') || optarg[0] == '=') {
                fprintf(stderr, "amberctl: --env wants K=V, got '%s'\n", optarg);
                goto out;
            }
            env[nenv++] = optarg;
            break;
        case OPT_CWD:
            spec.cwd = optarg;
            break;
        case OPT_USER:
            spec.user = optarg;
            break;
        case OPT_SHELL:
            use_shell = true;
            break;
        default:
            fprintf(stderr, "usage: amberctl exec TARGET [OPTIONS] -- CMD... (see --help)\n");
            goto out;
        }
    }
    static char *default_shell[] = {"/bin/sh", NULL};
    if (optind >= argc && !tty) {
        fprintf(stderr, "amberctl exec: no command given\n");
        goto out;
    }
    if (optind >= argc) { /* -t alone: an interactive shell */
        argv = default_shell;
        argc = 1;
        optind = 0;
    }
    bool have_term = false;
    for (size_t i = 0; i < nenv; i++)
        have_term |= !strncmp(env[i], "TERM=", 5);
    const char *host_term = getenv("TERM");
    if (tty && !have_term && host_term && strlen(host_term) < sizeof(term) - 5) {
        snprintf(term, sizeof(term), "TERM=%s", host_term);
        env[nenv++] = term;
    }
    spec.env = env;
    if (use_shell) {
        size_t len = 1;
        for (int i = optind; i < argc; i++)
            len += strlen(argv[i]) + 1;
        shell = calloc(1, len);
        if (!shell)
            goto out;
        for (int i = optind; i < argc; i++) {
            if (i > optind)
                strcat(shell, " ");
            strcat(shell, argv[i]);
        }
        spec.shell = shell;
    } else {
        spec.argv = (const char *const *)(argv + optind);
    }
    struct agent_addr a;
    if (ctl_target_agent(&t, &a) < 0)
        goto out;
    /* A closed stdout pipe on our side should end us quietly, as it would the command. */
    struct agent_exec_io io = {.stdin_fd = STDIN_FILENO,
                               .stdout_fd = STDOUT_FILENO,
                               .stderr_fd = STDERR_FILENO,
                               .resize_fd = -1,
                               .size_fd = -1};
    struct agent_exec_result res;
    struct agent_error err = {0};
    struct ctl_tty tt;
    int r = tty ? ctl_tty_begin(&tt, &spec, &io) : 0;
    if (r < 0) {
        fprintf(stderr, "amberctl exec: -t: the terminal: %s\n", strerror(-r));
        goto out;
    }
    r = agent_exec(&a, &spec, &io, &res, &err);
    if (tty)
        ctl_tty_end(&tt);
    if (r < 0) {
        fprintf(stderr, "amberctl exec: %s\n", err.msg);
        goto out;
    }
    if (res.timed_out) {
        fprintf(stderr, "amberctl exec: timed out after %.3f s; process group killed\n",
                (double)spec.timeout_ms / 1000.0);
        rc = CTL_EXEC_TIMEOUT;
    } else {
        rc = res.signal ? 128 + res.signal : res.exit_code;
    }
out:
    free(shell);
    free(env);
    return rc;
}

static bool is_guest(const char *s, const char **path)
{
    if (strncmp(s, "guest:", 6) != 0)
        return false;
    *path = s + 6;
    return true;
}

static int cp_in(const struct agent_addr *a, const char *src, const char *gpath)
{
    char full[4200];
    struct stat st;
    int fd = strcmp(src, "-") ? open(src, O_RDONLY | O_CLOEXEC) : STDIN_FILENO;
    if (fd < 0 || fstat(fd, &st) < 0) {
        fprintf(stderr, "amberctl cp: %s: %s\n", src, strerror(errno));
        return CTL_FAIL;
    }
    uint32_t mode = fd == STDIN_FILENO ? 0644 : (uint32_t)(st.st_mode & 07777);
    size_t n = strlen(gpath);
    if (n && gpath[n - 1] == '/') { /* into a guest directory: keep the name */
        char *copy = strdup(src);
        snprintf(full, sizeof(full), "%s%s", gpath, copy ? basename(copy) : "file");
        free(copy);
        gpath = full;
    }
    struct agent_error err = {0};
    int r = agent_write_file(a, gpath, mode, fd, &err);
    if (fd != STDIN_FILENO)
        close(fd);
    if (r < 0) {
        fprintf(stderr, "amberctl cp: guest:%s: %s\n", gpath, err.msg);
        return CTL_FAIL;
    }
    return CTL_OK;
}

static int cp_out(const struct agent_addr *a, const char *gpath, const char *dst)
{
    struct agent_error err = {0};
    uint32_t mode = 0644;
    if (!strcmp(dst, "-")) {
        if (agent_read_file(a, gpath, STDOUT_FILENO, &mode, &err) < 0) {
            fprintf(stderr, "amberctl cp: guest:%s: %s\n", gpath, err.msg);
            return CTL_FAIL;
        }
        return CTL_OK;
    }
    char target[4200], tmp[4300];
    struct stat st;
    if (stat(dst, &st) == 0 && S_ISDIR(st.st_mode)) {
        char *copy = strdup(gpath);
        snprintf(target, sizeof(target), "%s/%s", dst, copy ? basename(copy) : "file");
        free(copy);
    } else {
        snprintf(target, sizeof(target), "%s", dst);
    }
    /* Land in a temporary name and rename, so a failed copy never leaves half a file. */
    snprintf(tmp, sizeof(tmp), "%s.amberctl-XXXXXX", target);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "amberctl cp: %s: %s\n", target, strerror(errno));
        return CTL_FAIL;
    }
    int r = agent_read_file(a, gpath, fd, &mode, &err);
    /* The mode is the guest's word: keep the permission bits the umask allows, nothing else. */
    mode_t um = umask(0);
    umask(um);
    if (r == 0 &&
        (fchmod(fd, agent_host_mode(mode, um)) < 0 || close(fd) < 0 || rename(tmp, target) < 0)) {
        snprintf(err.msg, sizeof(err.msg), "%.200s: %s", target, strerror(errno));
        r = -1;
        fd = -1;
    } else if (r == 0) {
        fd = -1;
    }
    if (r < 0) {
        if (fd >= 0)
            close(fd);
        unlink(tmp);
        fprintf(stderr, "amberctl cp: guest:%s: %s\n", gpath, err.msg);
        return CTL_FAIL;
    }
    return CTL_OK;
}

/* Parse the target options only (cp, ping). Returns 0, or CTL_USAGE after printing usage. */
static int parse_target_only(int argc, char **argv, struct ctl_target *t, const char *usage)
{
    static const struct option opts[] = {CTL_TARGET_OPTIONS, {NULL, 0, NULL, 0}};
    int ch;
    optind = 0;
    while ((ch = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        if (ctl_target_opt(t, ch, optarg) <= 0) {
            fprintf(stderr, "usage: %s\n", usage);
            return CTL_USAGE;
        }
    }
    return 0;
}

int ctl_cp(int argc, char **argv)
{
    struct ctl_target t = {0};
    if (parse_target_only(argc, argv, &t, "amberctl cp TARGET SRC DST"))
        return CTL_USAGE;
    if (argc - optind != 2) {
        fprintf(stderr, "usage: amberctl cp TARGET SRC DST\n");
        return CTL_USAGE;
    }
    const char *src = argv[optind], *dst = argv[optind + 1], *gsrc, *gdst;
    bool in = is_guest(dst, &gdst), out = is_guest(src, &gsrc);
    if (in == out) {
        fprintf(stderr, "amberctl cp: exactly one of SRC and DST must be guest:/path\n");
        return CTL_USAGE;
    }
    struct agent_addr a;
    int r = ctl_target_agent(&t, &a);
    if (r < 0)
        return r == -ENOENT ? CTL_NOT_FOUND : CTL_USAGE;
    return in ? cp_in(&a, src, gdst) : cp_out(&a, gsrc, dst);
}

int ctl_ping(int argc, char **argv)
{
    struct ctl_target t = {0};
    if (parse_target_only(argc, argv, &t, "amberctl ping TARGET"))
        return CTL_USAGE;
    struct agent_addr a;
    int r = ctl_target_agent(&t, &a);
    if (r < 0)
        return r == -ENOENT ? CTL_NOT_FOUND : CTL_USAGE;
    struct agent_ping_info info;
    struct agent_error err = {0};
    if (agent_ping(&a, &info, &err) < 0) {
        fprintf(stderr, "amberctl ping: %s\n", err.msg);
        return CTL_FAIL;
    }
    if (t.json) {
        /* agent_version is escaped already; json-c quotes what JSON needs on top. */
        struct json_object *v = json_object_new_string(info.agent_version);
        printf("{\"protocol\": %u, \"agent_version\": %s, \"uptime_ms\": %llu}\n",
               info.proto_version,
               json_object_to_json_string_ext(v, JSON_C_TO_STRING_NOSLASHESCAPE),
               (unsigned long long)info.uptime_ms);
        json_object_put(v);
    } else
        printf("amber-agent %s, protocol %u, uptime %.3f s\n", info.agent_version,
               info.proto_version, (double)info.uptime_ms / 1000.0);
    return CTL_OK;
}
