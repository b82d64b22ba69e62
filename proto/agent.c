/* amber agent wire protocol v1: pure frame and TLV encode/decode with bounds checks. */
#include "proto/agent.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define TLV_HDR_LEN 6u

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

bool proto_type_known(uint8_t type)
{
    switch (type) {
    case PROTO_PING:
    case PROTO_EXEC:
    case PROTO_READ_FILE:
    case PROTO_WRITE_FILE:
    case PROTO_SHUTDOWN:
    case PROTO_ATTACH:
    case PROTO_KILL:
    case PROTO_LIST_PROCS:
    case PROTO_STAT:
    case PROTO_LIST_DIR:
    case PROTO_PTY:
    case PROTO_WATCH:
    case PROTO_RESIZE:
    case PROTO_REMOVE:
    case PROTO_RENAME:
    case PROTO_MKDIR:
    case PROTO_ENTRY:
    case PROTO_DATA:
    case PROTO_EOF:
    case PROTO_RESULT:
    case PROTO_STDOUT:
    case PROTO_STDERR:
    case PROTO_EXIT:
    case PROTO_STARTED:
    case PROTO_ERROR:
        return true;
    default:
        return false;
    }
}

ssize_t proto_frame_parse(const uint8_t *buf, size_t len, struct proto_frame *out)
{
    if (len < PROTO_HDR_LEN)
        return 0;
    uint32_t plen = get_be32(buf);
    if (plen > PROTO_MAX_PAYLOAD)
        return -EMSGSIZE;
    if (!proto_type_known(buf[4]))
        return -EBADMSG;
    if (len - PROTO_HDR_LEN < plen)
        return 0;
    out->type = buf[4];
    out->id = get_be32(buf + 5);
    out->payload = buf + PROTO_HDR_LEN;
    out->len = plen;
    return (ssize_t)(PROTO_HDR_LEN + plen);
}

int proto_frame_header(uint8_t hdr[PROTO_HDR_LEN], uint8_t type, uint32_t id, size_t len)
{
    if (len > PROTO_MAX_PAYLOAD)
        return -EMSGSIZE;
    put_be32(hdr, (uint32_t)len);
    hdr[4] = type;
    put_be32(hdr + 5, id);
    return 0;
}

int proto_tlv_put(struct proto_buf *b, uint16_t tag, const void *val, size_t len)
{
    if (b->len > b->cap || len > b->cap - b->len || TLV_HDR_LEN > b->cap - b->len - len)
        return -ENOSPC;
    uint8_t *p = b->data + b->len;
    p[0] = (uint8_t)(tag >> 8);
    p[1] = (uint8_t)tag;
    put_be32(p + 2, (uint32_t)len);
    if (len)
        memcpy(p + TLV_HDR_LEN, val, len);
    b->len += TLV_HDR_LEN + len;
    return 0;
}

int proto_tlv_put_str(struct proto_buf *b, uint16_t tag, const char *s)
{
    size_t n = strnlen(s, PROTO_MAX_STR + 1);
    if (n > PROTO_MAX_STR)
        return -ENAMETOOLONG;
    return proto_tlv_put(b, tag, s, n);
}

int proto_tlv_put_u64(struct proto_buf *b, uint16_t tag, uint64_t v)
{
    uint8_t be[8];
    for (int i = 0; i < 8; i++)
        be[i] = (uint8_t)(v >> (56 - 8 * i));
    return proto_tlv_put(b, tag, be, sizeof(be));
}

void proto_tlv_iter_init(struct proto_tlv_iter *it, const uint8_t *payload, size_t len)
{
    it->p = payload;
    it->left = payload ? len : 0;
}

int proto_tlv_next(struct proto_tlv_iter *it, uint16_t *tag, const uint8_t **val, uint32_t *len)
{
    if (it->left == 0)
        return 0;
    if (it->left < TLV_HDR_LEN)
        return -EBADMSG;
    uint32_t n = get_be32(it->p + 2);
    if (n > it->left - TLV_HDR_LEN)
        return -EBADMSG;
    *tag = (uint16_t)(it->p[0] << 8 | it->p[1]);
    *val = it->p + TLV_HDR_LEN;
    *len = n;
    it->p += TLV_HDR_LEN + n;
    it->left -= TLV_HDR_LEN + n;
    return 1;
}

int proto_tlv_u64(const uint8_t *val, uint32_t len, uint64_t *out)
{
    if (len != 8)
        return -EBADMSG;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | val[i];
    *out = v;
    return 0;
}

bool proto_tlv_find_u64(const uint8_t *payload, uint32_t len, uint16_t tag, uint64_t *out)
{
    struct proto_tlv_iter it;
    uint16_t t;
    const uint8_t *val;
    uint32_t n;
    uint64_t v;
    bool found = false;
    proto_tlv_iter_init(&it, payload, len);
    while (proto_tlv_next(&it, &t, &val, &n) > 0)
        if (t == tag && proto_tlv_u64(val, n, &v) == 0) {
            *out = v;
            found = true;
        }
    return found;
}

int proto_tlv_strdup(const uint8_t *val, uint32_t len, char **out)
{
    if (len > PROTO_MAX_STR)
        return -ENAMETOOLONG;
    if (len && memchr(val, 0, len))
        return -EBADMSG;
    char *s = malloc((size_t)len + 1);
    if (!s)
        return -ENOMEM;
    if (len)
        memcpy(s, val, len);
    s[len] = 0;
    *out = s;
    return 0;
}

static void strv_free(char **v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void proto_exec_req_free(struct proto_exec_req *req)
{
    strv_free(req->argv, req->argc);
    strv_free(req->env, req->envc);
    free(req->shell);
    free(req->cwd);
    free(req->user);
    memset(req, 0, sizeof(*req));
}

/* Count entries of one tag first so the vectors are allocated once, exactly sized. */
static int count_tag(const uint8_t *payload, size_t len, uint16_t want, size_t *count)
{
    struct proto_tlv_iter it;
    uint16_t tag;
    const uint8_t *val;
    uint32_t n;
    int r;
    *count = 0;
    proto_tlv_iter_init(&it, payload, len);
    while ((r = proto_tlv_next(&it, &tag, &val, &n)) > 0)
        if (tag == want)
            (*count)++;
    return r;
}

/* Set a single-valued string field; a repeated tag is malformed. */
static int set_once(char **field, const uint8_t *val, uint32_t n)
{
    if (*field)
        return -EBADMSG;
    return proto_tlv_strdup(val, n, field);
}

int proto_exec_req_decode(const uint8_t *payload, size_t len, struct proto_exec_req *out)
{
    size_t nargs, nenv;
    int r;
    memset(out, 0, sizeof(*out));
    if ((r = count_tag(payload, len, TAG_ARGV, &nargs)) < 0)
        return r;
    if ((r = count_tag(payload, len, TAG_ENV, &nenv)) < 0)
        return r;
    if (nargs > PROTO_MAX_ARGS || nenv > PROTO_MAX_ENV)
        return -E2BIG;
    out->argv = calloc(nargs + 1, sizeof(char *));
    out->env = calloc(nenv + 1, sizeof(char *));
    if (!out->argv || !out->env) {
        r = -ENOMEM;
        goto err;
    }

    struct proto_tlv_iter it;
    uint16_t tag;
    const uint8_t *val;
    uint32_t n;
    proto_tlv_iter_init(&it, payload, len);
    while ((r = proto_tlv_next(&it, &tag, &val, &n)) > 0) {
        switch (tag) {
        case TAG_ARGV:
            r = proto_tlv_strdup(val, n, &out->argv[out->argc]);
            if (r == 0)
                out->argc++;
            break;
        case TAG_ENV:
            r = proto_tlv_strdup(val, n, &out->env[out->envc]);
            if (r == 0) {
                out->envc++;
                char *eq = strchr(out->env[out->envc - 1], '=');
                if (!eq || eq == out->env[out->envc - 1])
                    r = -EINVAL;
            }
            break;
        case TAG_SHELL:
            r = set_once(&out->shell, val, n);
            break;
        case TAG_CWD:
            r = set_once(&out->cwd, val, n);
            break;
        case TAG_USER:
            r = set_once(&out->user, val, n);
            break;
        case TAG_TIMEOUT_MS:
            r = proto_tlv_u64(val, n, &out->timeout_ms);
            break;
        case TAG_BACKGROUND: {
            uint64_t bg = 0;
            r = proto_tlv_u64(val, n, &bg);
            if (r == 0 && bg > 1)
                r = -EINVAL;
            out->background = bg == 1;
            break;
        }
        default:
            r = 0; /* unknown tags are skipped: newer clients may add optional fields */
        }
        if (r < 0)
            goto err;
    }
    if (r < 0)
        goto err;
    if ((out->argc == 0) == (out->shell == NULL) || (out->argc && out->argv[0][0] == 0)) {
        r = -EINVAL;
        goto err;
    }
    return 0;
err:
    proto_exec_req_free(out);
    return r;
}

void proto_path_req_free(struct proto_path_req *req)
{
    free(req->path);
    memset(req, 0, sizeof(*req));
}

int proto_path_req_decode(const uint8_t *payload, size_t len, struct proto_path_req *out)
{
    struct proto_tlv_iter it;
    uint16_t tag;
    const uint8_t *val;
    uint32_t n;
    uint64_t mode;
    int r;
    memset(out, 0, sizeof(*out));
    out->mode = 0644;
    proto_tlv_iter_init(&it, payload, len);
    while ((r = proto_tlv_next(&it, &tag, &val, &n)) > 0) {
        if (tag == TAG_PATH) {
            r = set_once(&out->path, val, n);
        } else if (tag == TAG_MODE) {
            r = proto_tlv_u64(val, n, &mode);
            if (r == 0 && mode > 07777)
                r = -EINVAL;
            out->mode = (uint32_t)mode;
            out->have_mode = true;
        }
        if (r < 0)
            goto err;
    }
    if (r < 0)
        goto err;
    if (!out->path || out->path[0] != '/') {
        r = -EINVAL;
        goto err;
    }
    return 0;
err:
    proto_path_req_free(out);
    return r;
}

int proto_rx_init(struct proto_rx *rx)
{
    memset(rx, 0, sizeof(*rx));
    rx->cap = PROTO_HDR_LEN + PROTO_MAX_PAYLOAD;
    rx->buf = malloc(rx->cap);
    return rx->buf ? 0 : -ENOMEM;
}

void proto_rx_free(struct proto_rx *rx)
{
    free(rx->buf);
    memset(rx, 0, sizeof(*rx));
}

uint8_t *proto_rx_space(struct proto_rx *rx, size_t *room)
{
    /* Compact only here, so a burst of frames already buffered is walked without copying. */
    if (rx->start) {
        memmove(rx->buf, rx->buf + rx->start, rx->len - rx->start);
        rx->len -= rx->start;
        rx->start = 0;
    }
    *room = rx->cap - rx->len;
    return rx->buf + rx->len;
}

void proto_rx_commit(struct proto_rx *rx, size_t n)
{
    rx->len += n;
}

int proto_rx_next(struct proto_rx *rx, struct proto_frame *out)
{
    ssize_t r = proto_frame_parse(rx->buf + rx->start, rx->len - rx->start, out);
    if (r <= 0)
        return (int)r;
    rx->start += (size_t)r;
    return 1;
}

/* Two u64 tags of payload, tags[i] between 1 and max[i]: each may come once (a repeat, or a
 * value of the wrong size, is -EBADMSG; a value out of range -EINVAL), other tags are skipped.
 * seen[i] (false on entry) says which came. Returns 0 or a negative errno. */
static int decode_two_u64(const uint8_t *payload, size_t len, const uint16_t tags[2],
                          const uint64_t max[2], uint64_t val[2], bool seen[2])
{
    struct proto_tlv_iter it;
    uint16_t tag;
    const uint8_t *v;
    uint32_t n;
    int r;
    proto_tlv_iter_init(&it, payload, len);
    while ((r = proto_tlv_next(&it, &tag, &v, &n)) > 0) {
        int i = tag == tags[0] ? 0 : tag == tags[1] ? 1 : -1;
        if (i < 0)
            continue;
        if (seen[i] || proto_tlv_u64(v, n, &val[i]) < 0)
            return -EBADMSG;
        seen[i] = true;
        if (val[i] == 0 || val[i] > max[i])
            return -EINVAL;
    }
    return r < 0 ? r : 0;
}

int proto_pid_req_decode(const uint8_t *payload, size_t len, struct proto_pid_req *out)
{
    static const uint16_t tags[2] = {TAG_PID, TAG_SIGNAL};
    static const uint64_t max[2] = {1u << 22 /* PID_MAX_LIMIT */, 64};
    uint64_t val[2] = {0, 9};
    bool seen[2] = {false, false};
    out->pid = 0;
    out->signal = 9;
    int r = decode_two_u64(payload, len, tags, max, val, seen);
    if (r < 0)
        return r;
    if (!seen[0])
        return -EINVAL;
    out->pid = (uint32_t)val[0];
    out->signal = (int)val[1];
    return 0;
}

int proto_winsize_decode(const uint8_t *payload, size_t len, uint16_t *cols, uint16_t *rows)
{
    static const uint16_t tags[2] = {TAG_COLS, TAG_ROWS};
    static const uint64_t max[2] = {PROTO_MAX_WINSIZE, PROTO_MAX_WINSIZE};
    uint64_t val[2] = {0, 0};
    bool seen[2] = {false, false};
    int r = decode_two_u64(payload, len, tags, max, val, seen);
    if (r < 0)
        return r;
    if (!seen[0] || !seen[1])
        return -EINVAL;
    *cols = (uint16_t)val[0];
    *rows = (uint16_t)val[1];
    return 0;
}

int proto_pty_req_decode(const uint8_t *payload, size_t len, struct proto_exec_req *out)
{
    uint16_t cols = 0, rows = 0;
    int r = proto_winsize_decode(payload, len, &cols, &rows);
    if (r < 0) {
        memset(out, 0, sizeof(*out));
        return r;
    }
    r = proto_exec_req_decode(payload, len, out);
    if (r < 0)
        return r;
    out->pty = true;
    out->cols = cols;
    out->rows = rows;
    return 0;
}

void proto_fs_req_free(struct proto_fs_req *req)
{
    free(req->path);
    free(req->new_path);
    memset(req, 0, sizeof(*req));
}

int proto_fs_req_decode(uint8_t type, const uint8_t *payload, size_t len, struct proto_fs_req *out)
{
    struct proto_tlv_iter it;
    uint16_t tag;
    const uint8_t *val;
    uint32_t n;
    uint64_t v;
    bool have_depth = false, have_mode = false;
    int r;
    memset(out, 0, sizeof(*out));
    out->depth = 1;
    out->mode = 0755;
    proto_tlv_iter_init(&it, payload, len);
    while ((r = proto_tlv_next(&it, &tag, &val, &n)) > 0) {
        switch (tag) {
        case TAG_PATH:
            r = set_once(&out->path, val, n);
            break;
        case TAG_NEW_PATH:
            r = set_once(&out->new_path, val, n);
            break;
        case TAG_DEPTH:
            r = have_depth ? -EBADMSG : proto_tlv_u64(val, n, &v);
            if (r == 0 && (v == 0 || v > PROTO_MAX_DEPTH))
                r = -EINVAL;
            out->depth = r == 0 ? (uint32_t)v : out->depth;
            have_depth = true;
            break;
        case TAG_MODE:
            r = have_mode ? -EBADMSG : proto_tlv_u64(val, n, &v);
            if (r == 0 && v > 07777)
                r = -EINVAL;
            out->mode = r == 0 ? (uint32_t)v : out->mode;
            have_mode = true;
            break;
        default:
            r = 0;
        }
        if (r < 0)
            goto err;
    }
    if (r < 0)
        goto err;
    r = -EINVAL;
    if (!out->path || out->path[0] != '/')
        goto err;
    if ((type == PROTO_RENAME) != (out->new_path != NULL))
        goto err;
    if (out->new_path && out->new_path[0] != '/')
        goto err;
    return 0;
err:
    proto_fs_req_free(out);
    return r;
}
