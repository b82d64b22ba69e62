/* amberctl's side of the persistent store the SDK also uses (docs/hibernate.md): hibernated
 * sandboxes, templates and fork images, and restoring a new sandbox from one of them. */
#ifndef AMBER_CTL_CTL_STORE_H
#define AMBER_CTL_CTL_STORE_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_STATE_FILE "vm.snap"
#define STORE_MEM_FILE   "vm.mem"
#define STORE_ROOTFS     "rootfs.ext4"
#define STORE_MARK       "hibernated.json"
#define STORE_META       "template.json"
#define STORE_DRIVE_ID   "drive0"

/* The state root: $AMBER_STATE_DIR; /var/lib/amber as root; else $XDG_STATE_HOME/amber or
 * ~/.local/state/amber. Returns 0 or -ENAMETOOLONG. */
int store_root(char *buf, size_t len);
/* buf = <state root>/<sub>, created (with parents) mode 0700. Returns 0 or -errno. */
int store_path(char *buf, size_t len, const char *sub);
/* True if <state root>/<id> holds a committed snapshot (hibernated.json). */
bool store_is_hibernated(const char *id);
/* An exclusive flock on <state root>/.lock: the fd to close, or -errno. */
int store_lock(void);

/* dst as a reflink clone of src (FICLONE), else a sparse copy (holes kept, zero blocks left as
 * holes). *kind gets "reflink" or "sparse". Returns 0 or -errno (-ENOSPC for a full disk). */
int store_clone_file(const char *src, const char *dst, const char **kind);

/* path's JSON object (caller puts), or NULL. */
struct json_object *store_json_read(const char *path);
/* Write o to path through path.tmp and a rename; fsync both and the directory when sync.
 * Returns 0 or -errno. */
int store_json_write(const char *path, struct json_object *o, bool sync);
/* o[key] as a string, or def. */
const char *store_jstr(struct json_object *o, const char *key, const char *def);

/*
 * One API call on the Unix socket api with a timeout. Returns the HTTP status (and *out the
 * parsed body when out is non-NULL; caller puts), or -errno; an error status puts amber's
 * fault_message in err.
 */
int store_api(const char *api, const char *method, const char *path, const char *body,
              int timeout_ms, struct json_object **out, char *err, size_t errlen);

/*
 * Pause the sandbox at api unless paused (*was_running says which), and write its snapshot
 * into dir (vm.snap, vm.mem; fsynced when sync). Returns 0 or -errno with err set; the
 * sandbox stays paused.
 */
int store_snapshot(const char *api, const char *dir, bool sync, bool *was_running, char *err,
                   size_t errlen);

/* What ctl_store_restore needs. */
struct store_restore {
    const char *id;          /* the new sandbox's id */
    const char *image_dir;   /* holds vm.snap and vm.mem */
    const char *drive_src;   /* cloned to <state>/<id>/rootfs.ext4, or NULL: ... */
    const char *drive_path;  /* ... used as it is */
    struct json_object *cfg; /* config.json to keep (borrowed; paths are filled in) */
    uint32_t cid;            /* guest vsock CID */
    bool identity;           /* new hostname, machine-id and RNG seed through the agent */
    bool register_locked;    /* check image_dir and register under the store's lock */
};

/*
 * A new sandbox r->id restored from r->image_dir in a new amber, running with its agent
 * answering (and, with r->identity, made a distinct machine). Returns CTL_OK or an exit code
 * with the reason printed; nothing is left behind on failure but r->drive_src's clone, which
 * is removed too.
 */
int store_restore(const struct store_restore *r);

/* A random vsock CID in [3, 2^32-2] (a clash with a live sandbox is a 1 in 2^32 chance and
 * harmless: each amber has its own host socket). */
uint32_t store_new_cid(void);

/* The hibernated sandboxes in the store that no live amber has taken over, appended to arr as
 * list rows {id, state "Hibernated", pid 0, dir}. Silent when there is no store. */
void ctl_list_hibernated(struct json_object *arr);

#endif
