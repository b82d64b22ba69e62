/* amberctl: command-line client for amber sandboxes; dispatches to one file per command group. */
#include "ctl/amberctl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct ctl_cmd commands[] = {
    {"exec", ctl_exec,
     "exec TARGET [-t] [--timeout S] [--env K=V]... [--cwd DIR] [--user U] [--shell] -- CMD..."},
    {"cp", ctl_cp, "cp TARGET SRC DST     (one of SRC/DST is guest:/path)"},
    {"ping", ctl_ping, "ping TARGET"},
    {"list", ctl_list, "list [--json]"},
    {"status", ctl_status, "status (--id ID | --api PATH) [--json]"},
    {"pause", ctl_pause_any, "pause (--id ID | --api PATH) [--json] | pause --to-disk --id ID"},
    {"resume", ctl_resume_any, "resume (--id ID | --api PATH) [--json]   (also from disk)"},
    {"logs", ctl_logs, "logs --id ID [--tail N]"},
    {"delete", ctl_delete_any, "delete --id ID [--timeout S]"},
    {"snapshot", ctl_snapshot,
     "snapshot [--diff] (--id ID | --api PATH) DIR   (pauses; stays paused)"},
    {"restore", ctl_restore,
     "restore [--track-dirty-pages] --id NEWID DIR   (a new sandbox from DIR's snapshot)"},
    {"snapshot-merge", ctl_snapshot_merge,
     "snapshot-merge BASE DIFF [DIFF...]   (lays Diff memory files over BASE, in place)"},
    {"ps", ctl_ps, "ps TARGET [--all] [--json]     (background commands in the guest)"},
    {"kill", ctl_kill, "kill TARGET PID [--signal N]   (a background command's process group)"},
    {"template", ctl_template,
     "template create --id ID NAME | template list [--json] | "
     "template delete NAME"},
    {"fork", ctl_fork, "fork --id ID [-n N]   (prints the new ids)"},
    {"watch", ctl_watch,
     "watch TARGET PATH [--recursive] [--count N] [--for S] [--json]   (guest file events)"},
    {"net", ctl_net, "net up|down|gc|check|exec ...   (sandbox networking, docs/network.md)"},
    {"create", ctl_create_any,
     "create [--id ID] [--vcpus N] [--mem-mib N] [--timeout S] [--on-timeout kill|pause]\n"
     "                  [--metadata K=V]... [--env K=V]... [--boot-timeout S] [--json]\n"
     "                  [--network [--allow-out CIDR[:PORT]]... [--deny-out CIDR[:PORT]]...]\n"
     "         amberctl create --template NAME [--id ID]"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: amberctl COMMAND [OPTIONS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  amberctl %s\n", commands[i].usage);
    fprintf(f, "\nTARGET (how to reach the guest agent):\n"
               "  --id ID            a sandbox in the runtime directory\n"
               "                     ($XDG_RUNTIME_DIR/amber/ID or /tmp/amber-UID/ID)\n"
               "  --vsock PATH       amber's hybrid vsock socket (CONNECT handshake)\n"
               "  --port N           guest vsock port of the agent (default 1024)\n"
               "  --agent-sock PATH  an agent listening directly on a Unix socket\n"
               "                     (amber-agent --listen unix:PATH; for testing)\n"
               "  --api PATH         amber's API socket (status/pause/resume)\n"
               "\nexec:\n"
               "  --timeout S        kill the command's process group after S seconds\n"
               "  --env K=V          set an environment variable (repeatable)\n"
               "  --cwd DIR          working directory in the guest\n"
               "  --user U           run as user name or uid\n"
               "  --shell            run CMD... joined by spaces through /bin/sh -c\n"
               "  -t, --tty          on a pseudo-terminal sized as ours (raw mode, resizes\n"
               "                     follow); without CMD an interactive /bin/sh\n"
               "\nexit status:\n"
               "  exec               the command's exit code, or 128+N if signal N killed it;\n"
               "                     124 if --timeout expired; 125 if amberctl failed\n"
               "                     (usage, connection, agent refused the request)\n"
               "  other commands     0 ok, 1 failed, 2 usage, 3 no such sandbox,\n"
               "                     4 state conflict (e.g. already paused)\n");
}

bool ctl_id_valid(const char *id)
{
    size_t n = strlen(id);
    if (n < 1 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

int ctl_runtime_root(char *buf, size_t len)
{
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    int n;
    if (xdg && xdg[0] == '/')
        n = snprintf(buf, len, "%s/amber", xdg);
    else
        n = snprintf(buf, len, "/tmp/amber-%u", (unsigned)getuid());
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int ctl_target_dir(struct ctl_target *t)
{
    char root[400];
    struct stat st;
    if (!t->id || !ctl_id_valid(t->id))
        return -EINVAL;
    if (ctl_runtime_root(root, sizeof(root)) < 0)
        return -ENAMETOOLONG;
    snprintf(t->dir, sizeof(t->dir), "%s/%s", root, t->id);
    if (stat(t->dir, &st) < 0 || !S_ISDIR(st.st_mode))
        return -ENOENT;
    return 0;
}

int ctl_target_opt(struct ctl_target *t, int opt, const char *arg)
{
    char *end;
    switch (opt) {
    case OPT_ID:
        t->id = arg;
        return 1;
    case OPT_VSOCK:
        t->vsock_path = arg;
        return 1;
    case OPT_AGENT_SOCK:
        t->agent_sock = arg;
        return 1;
    case OPT_API:
        t->api_path = arg;
        return 1;
    case OPT_JSON:
        t->json = true;
        return 1;
    case OPT_PORT: {
        unsigned long v = strtoul(arg, &end, 10);
        if (*end || !v || v > 0xfffffffeUL) {
            fprintf(stderr, "amberctl: bad --port '%s'\n", arg);
            return -1;
        }
        t->port = (unsigned)v;
        return 1;
    }
    default:
        return 0;
    }
}

long long ctl_parse_seconds_ms(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (*end || end == s || !(v > 0) || v > 1e9)
        return -1;
    return (long long)(v * 1000.0 + 0.5);
}

int ctl_target_agent(struct ctl_target *t, struct agent_addr *a)
{
    memset(a, 0, sizeof(*a));
    a->port = t->port;
    a->timeout_ms = t->timeout_ms;
    if (t->agent_sock) {
        a->path = t->agent_sock;
        return 0;
    }
    a->hybrid = true;
    if (t->vsock_path) {
        a->path = t->vsock_path;
        return 0;
    }
    if (!t->id) {
        fprintf(stderr, "amberctl: give --id, --vsock or --agent-sock\n");
        return -EINVAL;
    }
    int r = ctl_target_dir(t);
    if (r == -EINVAL) {
        fprintf(stderr, "amberctl: bad sandbox id '%s'\n", t->id);
        return r;
    }
    if (r < 0) {
        fprintf(stderr, "amberctl: no sandbox '%s'\n", t->id);
        return -ENOENT;
    }
    snprintf(t->path_buf, sizeof(t->path_buf), "%s/vsock.sock", t->dir);
    a->path = t->path_buf;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CTL_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return CTL_OK;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "amberctl: unknown command '%s' (see amberctl --help)\n", argv[1]);
    return CTL_USAGE;
}
