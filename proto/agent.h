/* amber agent wire protocol v1: frame and TLV codec shared by amber-agent and the host client. */
#ifndef AMBER_PROTO_AGENT_H
#define AMBER_PROTO_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* See proto/PROTOCOL.md for the meaning of every constant below. */
#define PROTO_VERSION      1
#define PROTO_HDR_LEN      9u
#define PROTO_MAX_PAYLOAD  (1024u * 1024u)
#define PROTO_DATA_CHUNK   (64u * 1024u)
#define PROTO_MAX_STR      4096u
#define PROTO_MAX_ARGS     1024u
#define PROTO_MAX_ENV      1024u
#define PROTO_DEFAULT_PORT 1024u

enum proto_type {
    /* client -> agent: requests (the first frame of a connection) */
    PROTO_PING = 0x01,
    PROTO_EXEC = 0x02,
    PROTO_READ_FILE = 0x03,
    PROTO_WRITE_FILE = 0x04,
    PROTO_SHUTDOWN = 0x05,
    PROTO_ATTACH = 0x06,     /* reattach to a background command */
    PROTO_KILL = 0x07,       /* signal a background command's process group */
    PROTO_LIST_PROCS = 0x08, /* list background commands */
    PROTO_STAT = 0x09,       /* a path's type, size, mode, mtime */
    PROTO_LIST_DIR = 0x0a,   /* a directory's entries, to a depth */
    PROTO_REMOVE = 0x0b,     /* unlink a file or remove a directory tree */
    PROTO_RENAME = 0x0c,     /* rename PATH to NEW_PATH */
    PROTO_MKDIR = 0x0d,      /* make a directory and its parents */
    PROTO_PTY = 0x0e,        /* exec on a pseudo-terminal (EXEC's tags plus COLS, ROWS) */
    PROTO_WATCH = 0x0f,      /* stream a directory's inotify events */
    /* either direction: raw bytes, then end of bytes */
    PROTO_DATA = 0x10,
    PROTO_EOF = 0x11,
    PROTO_RESIZE = 0x12, /* a pty's window size: in a PTY session, or a request with PID */
    /* agent -> client */
    PROTO_RESULT = 0x20,
    PROTO_STDOUT = 0x21,
    PROTO_STDERR = 0x22,
    PROTO_EXIT = 0x23,
    PROTO_STARTED = 0x24,
    PROTO_ENTRY = 0x25, /* one item of a listing (TLVs) */
    PROTO_ERROR = 0x7f,
};

enum proto_tag {
    TAG_ARGV = 1,
    TAG_SHELL = 2,
    TAG_ENV = 3,
    TAG_CWD = 4,
    TAG_TIMEOUT_MS = 5,
    TAG_USER = 6,
    TAG_PATH = 7,
    TAG_MODE = 8,
    TAG_ACTION = 9,
    TAG_PROTO_VERSION = 16,
    TAG_AGENT_VERSION = 17,
    TAG_UPTIME_MS = 18,
    TAG_EXIT_CODE = 19,
    TAG_SIGNAL = 20,
    TAG_DURATION_MS = 21,
    TAG_TIMED_OUT = 22,
    TAG_SIZE = 23,
    TAG_PID = 24,
    TAG_BACKGROUND = 25, /* exec: the command outlives the connection */
    TAG_DROPPED = 26,    /* attach: output bytes dropped before the retained tail */
    TAG_TYPE = 27,       /* stat/list: enum proto_file_type */
    TAG_MTIME_NS = 28,   /* stat/list: modification time, ns since the epoch */
    TAG_DEPTH = 29,      /* list_dir: levels to descend (1 = the directory itself) */
    TAG_NEW_PATH = 30,   /* rename: destination */
    TAG_EXISTS = 31,     /* stat: 0 when the path does not exist */
    TAG_ERRNO = 32,
    TAG_MESSAGE = 33,
    TAG_COLS = 34,      /* pty: window width in characters */
    TAG_ROWS = 35,      /* pty: window height in lines */
    TAG_RECURSIVE = 36, /* watch: also watch subdirectories */
    TAG_EVENT = 37,     /* watch: enum proto_watch_event */
};

/* WATCH: what happened (ENTRY's EVENT), and the most directories / deepest level watched. */
enum proto_watch_event {
    PROTO_WATCH_CREATE = 1,  /* created, or moved in (the new name) */
    PROTO_WATCH_WRITE = 2,   /* modified (one event per burst of writes to a file) */
    PROTO_WATCH_REMOVE = 3,  /* deleted */
    PROTO_WATCH_RENAME = 4,  /* moved away or renamed (the old name) */
    PROTO_WATCH_CHMOD = 5,   /* metadata changed */
    PROTO_WATCH_OVERFLOW = 6 /* the kernel's event queue overflowed: events were lost */
};
#define PROTO_MAX_WATCH_DIRS  8192u
#define PROTO_MAX_WATCH_DEPTH 32u

/* Largest pty window side (COLS, ROWS) a request may ask for. */
#define PROTO_MAX_WINSIZE 4096u

/* The kind of a file in STAT and LIST_DIR answers. */
enum proto_file_type {
    PROTO_FT_OTHER = 0,
    PROTO_FT_FILE = 1,
    PROTO_FT_DIR = 2,
    PROTO_FT_SYMLINK = 3
};

/* Deepest LIST_DIR walk and most entries one listing returns. */
#define PROTO_MAX_DEPTH   16u
#define PROTO_MAX_ENTRIES 100000u

enum proto_shutdown_action { PROTO_POWEROFF = 0, PROTO_REBOOT = 1 };

/* One decoded frame; payload points into the buffer it was parsed from. */
struct proto_frame {
    uint8_t type;
    uint32_t id;
    const uint8_t *payload;
    uint32_t len;
};

/* True if type is one of enum proto_type. */
bool proto_type_known(uint8_t type);

/*
 * Parse one frame from buf[0..len). Returns the bytes it occupies (> 0) and fills *out,
 * 0 if more bytes are needed, -EMSGSIZE if the declared length exceeds PROTO_MAX_PAYLOAD,
 * or -EBADMSG for an unknown type. Never reads past buf + len.
 */
ssize_t proto_frame_parse(const uint8_t *buf, size_t len, struct proto_frame *out);

/* Fill hdr with a frame header. Returns 0, or -EMSGSIZE if len > PROTO_MAX_PAYLOAD. */
int proto_frame_header(uint8_t hdr[PROTO_HDR_LEN], uint8_t type, uint32_t id, size_t len);

/* A bounded byte buffer for building TLV payloads. */
struct proto_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
};

/* Append one TLV (tag, 32-bit length, value). Returns 0 or -ENOSPC (buffer unchanged). */
int proto_tlv_put(struct proto_buf *b, uint16_t tag, const void *val, size_t len);
/* Append a string TLV (without its NUL). Returns 0, -ENOSPC, or -ENAMETOOLONG. */
int proto_tlv_put_str(struct proto_buf *b, uint16_t tag, const char *s);
/* Append an 8-byte big-endian integer TLV. Returns 0 or -ENOSPC. */
int proto_tlv_put_u64(struct proto_buf *b, uint16_t tag, uint64_t v);

/* Walks the TLVs of a payload. */
struct proto_tlv_iter {
    const uint8_t *p;
    size_t left;
};

void proto_tlv_iter_init(struct proto_tlv_iter *it, const uint8_t *payload, size_t len);
/*
 * Next TLV: returns 1 and sets tag/val/len, 0 at a clean end, -EBADMSG if the rest is
 * truncated or a length runs past the payload.
 */
int proto_tlv_next(struct proto_tlv_iter *it, uint16_t *tag, const uint8_t **val, uint32_t *len);
/* Decode an integer TLV value (exactly 8 bytes). Returns 0 or -EBADMSG. */
int proto_tlv_u64(const uint8_t *val, uint32_t len, uint64_t *out);
/* The last well-formed integer TLV with tag in payload into *out. Returns true if one was found
 * (*out untouched otherwise). */
bool proto_tlv_find_u64(const uint8_t *payload, uint32_t len, uint16_t tag, uint64_t *out);
/*
 * Copy a string TLV value into a fresh NUL-terminated heap string (*out, caller frees).
 * Returns 0, -EBADMSG for an embedded NUL, -ENAMETOOLONG past PROTO_MAX_STR, or -ENOMEM.
 */
int proto_tlv_strdup(const uint8_t *val, uint32_t len, char **out);

/* A decoded exec request; strings are heap copies owned by the struct. */
struct proto_exec_req {
    char **argv; /* NULL-terminated; argc entries */
    size_t argc;
    char *shell; /* set instead of argv for /bin/sh -c */
    char **env;  /* NULL-terminated "K=V" entries; envc entries */
    size_t envc;
    char *cwd;
    char *user;
    uint64_t timeout_ms; /* 0 = none */
    bool background;     /* BACKGROUND=1: outlives the connection (see bg.c) */
    bool pty;            /* a PTY request: runs on a pseudo-terminal of cols x rows */
    uint16_t cols, rows;
};

/*
 * Decode an EXEC payload. Exactly one of argv (>= 1 entry) or shell must be present; every
 * env entry must contain '='. Returns 0, or -EBADMSG/-E2BIG/-ENAMETOOLONG/-EINVAL/-ENOMEM
 * (nothing left allocated on error). Free with proto_exec_req_free().
 */
int proto_exec_req_decode(const uint8_t *payload, size_t len, struct proto_exec_req *out);
void proto_exec_req_free(struct proto_exec_req *req);

/*
 * Decode COLS and ROWS (each exactly once, 1 .. PROTO_MAX_WINSIZE) from a PTY or RESIZE
 * payload; other tags are ignored. Returns 0, -EBADMSG (malformed or repeated) or -EINVAL.
 */
int proto_winsize_decode(const uint8_t *payload, size_t len, uint16_t *cols, uint16_t *rows);

/* Decode a PTY payload: an EXEC payload (proto_exec_req_decode) plus a window size; sets
 * out->pty. Returns as proto_exec_req_decode, or -EINVAL for a missing or bad size. */
int proto_pty_req_decode(const uint8_t *payload, size_t len, struct proto_exec_req *out);

/* A decoded path request (read_file, write_file). */
struct proto_path_req {
    char *path;
    uint32_t mode; /* write_file: permission bits (<= 07777), default 0644 */
    bool have_mode;
};

/* Decode a READ_FILE/WRITE_FILE payload: a non-empty absolute path, optional mode. */
int proto_path_req_decode(const uint8_t *payload, size_t len, struct proto_path_req *out);
void proto_path_req_free(struct proto_path_req *req);

/* A decoded request on one background command (attach, kill). */
struct proto_pid_req {
    uint32_t pid;
    int signal; /* kill: 1..64, default SIGKILL (9) */
};

/*
 * Decode an ATTACH/KILL payload: PID (required, 1 .. 2^22) and SIGNAL (optional, 1..64).
 * Returns 0, -EBADMSG for malformed TLVs or a repeated tag, or -EINVAL.
 */
int proto_pid_req_decode(const uint8_t *payload, size_t len, struct proto_pid_req *out);

/* A decoded file-system request (stat, list_dir, remove, rename, mkdir); heap strings. */
struct proto_fs_req {
    char *path;
    char *new_path; /* rename only */
    uint32_t depth; /* list_dir: 1 .. PROTO_MAX_DEPTH, default 1 */
    uint32_t mode;  /* mkdir: permission bits, default 0755 */
};

/*
 * Decode a STAT/LIST_DIR/REMOVE/RENAME/MKDIR payload for request type. PATH is required and
 * absolute; NEW_PATH is required (absolute) for RENAME and refused elsewhere. Returns 0,
 * -EBADMSG, -ENAMETOOLONG, -EINVAL or -ENOMEM (nothing allocated on error).
 */
int proto_fs_req_decode(uint8_t type, const uint8_t *payload, size_t len, struct proto_fs_req *out);
void proto_fs_req_free(struct proto_fs_req *req);

/* An incremental frame reader over a byte stream (heap buffer sized for one full frame). */
struct proto_rx {
    uint8_t *buf;
    size_t len;
    size_t cap;
    size_t start; /* offset of the first byte not yet returned as a frame */
};

/* Allocate the reader's buffer. Returns 0 or -ENOMEM. */
int proto_rx_init(struct proto_rx *rx);
void proto_rx_free(struct proto_rx *rx);
/*
 * Where to read more bytes into and how many fit (never 0 while no full frame is buffered).
 * Invalidates the frames returned so far.
 */
uint8_t *proto_rx_space(struct proto_rx *rx, size_t *room);
/* Record n bytes just read into proto_rx_space(). */
void proto_rx_commit(struct proto_rx *rx, size_t n);
/*
 * Return the next complete frame: 1 (valid until proto_rx_space()), 0 if more bytes are
 * needed, or a negative error from proto_frame_parse().
 */
int proto_rx_next(struct proto_rx *rx, struct proto_frame *out);

#endif
