/* amberctl: shared pieces of the command-line tool (exit codes, targets, the command table). */
#ifndef AMBER_CTL_AMBERCTL_H
#define AMBER_CTL_AMBERCTL_H

#include "ctl/agent_client.h"

#include <stdbool.h>
#include <sys/types.h>
#include <stddef.h>

/* Exit codes (also listed by `amberctl --help`). exec passes the command's own status
 * through (128+N for signal N), so its own failures use codes a shell reserves. */
enum ctl_exit {
    CTL_OK = 0,
    CTL_FAIL = 1,           /* the operation failed */
    CTL_USAGE = 2,          /* bad command line */
    CTL_NOT_FOUND = 3,      /* no such sandbox (or its amber is gone) */
    CTL_CONFLICT = 4,       /* state conflict, e.g. already paused (HTTP 409) */
    CTL_EXEC_TIMEOUT = 124, /* exec: --timeout expired and the command was killed */
    CTL_EXEC_FAIL = 125,    /* exec: amberctl could not run the command (usage, connect, agent) */
};

/* How a subcommand reaches a sandbox: --id, --api, --vsock or --agent-sock. */
struct ctl_target {
    const char *id;
    const char *api_path;
    const char *vsock_path;
    const char *agent_sock; /* plain agent Unix socket (amber-agent --listen unix:PATH) */
    unsigned port;
    int timeout_ms;
    bool json;
    char dir[512];      /* runtime directory when found by id */
    char path_buf[600]; /* storage for a derived socket path */
};

/* getopt_long codes of the options every subcommand shares (TARGET_OPTIONS). */
enum ctl_opt {
    OPT_ID = 0x100,
    OPT_VSOCK,
    OPT_PORT,
    OPT_AGENT_SOCK,
    OPT_API,
    OPT_JSON,
    OPT_TIMEOUT,
    OPT_ENV,
    OPT_CWD,
    OPT_USER,
    OPT_SHELL,
    OPT_TAIL,
};

#define CTL_TARGET_OPTIONS                                                                         \
    {"id", required_argument, NULL, OPT_ID}, {"vsock", required_argument, NULL, OPT_VSOCK},        \
        {"port", required_argument, NULL, OPT_PORT},                                               \
        {"agent-sock", required_argument, NULL, OPT_AGENT_SOCK},                                   \
        {"api", required_argument, NULL, OPT_API},                                                 \
    {                                                                                              \
        "json", no_argument, NULL, OPT_JSON                                                        \
    }

/* Apply one shared option to t: 1 if it was one, 0 if not, -1 for a bad value (printed). */
int ctl_target_opt(struct ctl_target *t, int opt, const char *arg);
/* Parse seconds (fractions allowed, > 0) into milliseconds; -1 if invalid. */
long long ctl_parse_seconds_ms(const char *s);

/* One subcommand: argv[0] is the subcommand name. Returns the process exit status. */
struct ctl_cmd {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *usage;
};

/* Guest commands (ctl_guest.c). */
int ctl_exec(int argc, char **argv);
int ctl_cp(int argc, char **argv);
int ctl_ping(int argc, char **argv);

/* Sandbox commands (ctl_sandbox.c). */
int ctl_list(int argc, char **argv);
int ctl_status(int argc, char **argv);
int ctl_pause(int argc, char **argv);
int ctl_resume(int argc, char **argv);
int ctl_logs(int argc, char **argv);
int ctl_delete(int argc, char **argv);
/* Snapshot commands (ctl_snapshot.c): a sandbox to DIR/vm.snap + DIR/vm.mem, and back. */
int ctl_snapshot(int argc, char **argv);
/* amberctl snapshot-merge BASE DIFF...: lays Diff memory files over BASE's, in order, in place. */
int ctl_snapshot_merge(int argc, char **argv);
int ctl_restore(int argc, char **argv);
/* amberctl ps and kill (ctl_procs.c): the guest's background commands. */
int ctl_ps(int argc, char **argv);
int ctl_kill(int argc, char **argv);
/* amberctl watch (ctl_watch.c): a guest directory's changes, one line per event. */
int ctl_watch(int argc, char **argv);
/* amberctl create (ctl_create.c): launch a sandbox, print its id. */
int ctl_create(int argc, char **argv);
/* amberctl net (ctl_net.c): sandbox networking's up|down|gc|check|exec (docs/network.md). */
int ctl_net(int argc, char **argv);

/* The path of a build artefact into out: $env if set, else NAME beside amberctl (build/NAME). */
void ctl_artefact(char *out, size_t len, const char *env, const char *name);

/*
 * Start amber (argv[0]) detached in dir: its own session, stdin /dev/null, output to
 * dir/amber.stdout and dir/amber.stderr. Returns its pid or -errno (the child exits 126 when
 * its files cannot be opened, 127 when amber cannot be executed).
 */
pid_t ctl_spawn_amber(const char *dir, char *const argv[]);

/* Hibernate (ctl_hibernate.c): pause/resume/delete that also handle sandboxes on disk
 * (pause --to-disk; resume and delete of a hibernated id; else ctl_pause/resume/delete). */
int ctl_pause_any(int argc, char **argv);
int ctl_resume_any(int argc, char **argv);
int ctl_delete_any(int argc, char **argv);
/* Templates and fork (ctl_template.c): template create|list|delete, create --template NAME
 * (else ctl_create), fork --id ID -n N. */
int ctl_template(int argc, char **argv);
int ctl_create_any(int argc, char **argv);
int ctl_fork(int argc, char **argv);
/* After a sandbox made from image_dir is gone: a fork image nobody uses any more is removed. */
void ctl_release_image(const char *image_dir);

/* True if id matches [A-Za-z0-9_-]{1,64}. */
bool ctl_id_valid(const char *id);
/* The runtime root: $XDG_RUNTIME_DIR/amber or /tmp/amber-<uid>. Returns 0 or -ENAMETOOLONG. */
int ctl_runtime_root(char *buf, size_t len);
/* Fill t->dir for t->id. Returns 0, -EINVAL for a bad id, -ENOENT if absent. */
int ctl_target_dir(struct ctl_target *t);
/*
 * Resolve the agent address of t: --agent-sock, --vsock, or <dir>/vsock.sock from --id.
 * Returns 0, or -EINVAL when none was given, or -ENOENT for an unknown id (message printed).
 */
int ctl_target_agent(struct ctl_target *t, struct agent_addr *a);

/* Runtime directory liveness, judged by the flock amber holds on amber.pid. */
enum ctl_liveness { CTL_ALIVE, CTL_STALE, CTL_STARTING };

/* Probe dir: *pid gets amber's pid when known (else 0). */
enum ctl_liveness ctl_sandbox_probe(const char *dir, int *pid);
/* Say why a stale sandbox ended (from exit.json) on stderr unless quiet, and remove its
 * directory. Returns 0 or -errno. */
int ctl_sandbox_reap(const char *dir, const char *id, bool quiet);
/* Remove a directory tree (no symlinks followed). Returns 0 or -errno. */
int ctl_remove_tree(const char *dir);

#endif
