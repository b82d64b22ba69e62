/* A small, strict HTTP/1.1 request parser and response writer for the API socket (no I/O). */
#include "api/http.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/*
 * Why our own parser: the API needs only request line, a handful of headers and
 * Content-Length bodies; a 300-line parser that we fuzz is easier to audit than a library
 * built for the open internet, and Debian's small ones (picohttpparser) are not packaged as
 * a shared library.
 */

void http_parser_reset(struct http_parser *p)
{
    memset(p, 0, sizeof(*p));
}

static bool is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Strict UTF-8: no overlongs, no surrogates, nothing above U+10FFFF. */
static bool utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t extra;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            extra = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            extra = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            extra = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i <= extra)
            return false;
        for (size_t k = 1; k <= extra; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((extra == 2 && cp < 0x800) || (extra == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += extra + 1;
    }
    return true;
}

/* Does the comma-separated token list v[0..n) contain tok (case-insensitive)? */
static bool list_has(const char *v, size_t n, const char *tok)
{
    size_t tl = strlen(tok), i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < n && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e - s == tl && strncasecmp(v + s, tok, tl) == 0)
            return true;
    }
    return false;
}

/* Parse a Content-Length value: digits only. Returns 0, -400 or -413. */
static int parse_length(const char *v, size_t n, size_t *out)
{
    if (n == 0)
        return -400;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -400;
        if (x > HTTP_BODY_MAX) /* keep going to reject non-digits, but stop growing */
            continue;
        x = x * 10 + (uint64_t)(v[i] - '0');
    }
    if (x > HTTP_BODY_MAX)
        return -413;
    *out = (size_t)x;
    return 0;
}

static int parse_request_line(const char *l, size_t n, struct http_request *r, bool *http10)
{
    size_t i = 0;
    while (i < n && is_tchar((unsigned char)l[i]))
        i++;
    if (i == 0 || i > HTTP_METHOD_MAX || i >= n || l[i] != ' ')
        return -400;
    memcpy(r->method_name, l, i);
    r->method_name[i] = '\0';
    static const char *const names[] = {"GET", "PUT", "PATCH", "POST"};
    r->method = HTTP_OTHER;
    for (unsigned k = 0; k < 4; k++)
        if (strcmp(r->method_name, names[k]) == 0)
            r->method = (enum http_method)k;

    size_t t = ++i;
    while (i < n && l[i] != ' ') {
        unsigned char c = (unsigned char)l[i];
        if (c < 0x21 || c > 0x7e)
            return -400;
        i++;
    }
    size_t tlen = i - t;
    if (tlen == 0 || l[t] != '/' || i >= n)
        return -400;
    if (tlen > HTTP_PATH_MAX)
        return -414;
    const char *q = memchr(l + t, '?', tlen);
    size_t plen = q ? (size_t)(q - (l + t)) : tlen;
    memcpy(r->path, l + t, plen);
    r->path[plen] = '\0';
    if (q) {
        memcpy(r->query, q + 1, tlen - plen - 1);
        r->query[tlen - plen - 1] = '\0';
    }

    const char *ver = l + i + 1;
    size_t vlen = n - i - 1;
    if (vlen == 8 && memcmp(ver, "HTTP/1.1", 8) == 0) {
        *http10 = false;
        return 0;
    }
    if (vlen == 8 && memcmp(ver, "HTTP/1.0", 8) == 0) {
        *http10 = true;
        return 0;
    }
    if (vlen == 8 && memcmp(ver, "HTTP/", 5) == 0 && ver[5] >= '0' && ver[5] <= '9' &&
        ver[6] == '.' && ver[7] >= '0' && ver[7] <= '9')
        return -505;
    return -400;
}

/* Parse the head head[0..n), which ends in CRLFCRLF. Returns 0 or -status. */
static int parse_head(const char *head, size_t n, struct http_request *r, size_t *clen)
{
    /* Every CR must start a CRLF and every LF must end one; no NUL or other control bytes. */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)head[i];
        if (c == '\r' && (i + 1 >= n || head[i + 1] != '\n'))
            return -400;
        if (c == '\n' && (i == 0 || head[i - 1] != '\r'))
            return -400;
        if ((c < 0x20 && c != '\t' && c != '\r' && c != '\n') || c == 0x7f)
            return -400;
    }
    if (!utf8_valid((const unsigned char *)head, n))
        return -400;

    const char *eol = memmem(head, n, "\r\n", 2);
    bool http10 = false;
    int err = parse_request_line(head, (size_t)(eol - head), r, &http10);
    if (err)
        return err;

    bool have_len = false, conn_close = false, conn_keep = false;
    const char *line = eol + 2;
    const char *end = head + n - 2; /* the final CRLF of the blank line */
    while (line < end) {
        const char *le = memmem(line, (size_t)(end - line) + 2, "\r\n", 2);
        size_t ll = (size_t)(le - line);
        size_t k = 0;
        while (k < ll && is_tchar((unsigned char)line[k]))
            k++;
        if (k == 0 || k >= ll || line[k] != ':') /* also refuses obs-fold and "Name :" */
            return -400;
        const char *v = line + k + 1;
        size_t vn = ll - k - 1;
        while (vn && (*v == ' ' || *v == '\t'))
            v++, vn--;
        while (vn && (v[vn - 1] == ' ' || v[vn - 1] == '\t'))
            vn--;

        if (k == 14 && strncasecmp(line, "content-length", k) == 0) {
            size_t x = 0;
            err = parse_length(v, vn, &x);
            if (err)
                return err;
            if (have_len && x != *clen)
                return -400;
            have_len = true;
            *clen = x;
        } else if (k == 17 && strncasecmp(line, "transfer-encoding", k) == 0) {
            return -501;
        } else if (k == 10 && strncasecmp(line, "connection", k) == 0) {
            conn_close |= list_has(v, vn, "close");
            conn_keep |= list_has(v, vn, "keep-alive");
        } else if (k == 6 && strncasecmp(line, "expect", k) == 0) {
            if (!list_has(v, vn, "100-continue"))
                return -400; /* 417 in theory; nobody sends other expectations */
            r->expect_continue = true;
        }
        line = le + 2;
    }
    if (!have_len)
        *clen = 0;
    r->keep_alive = http10 ? (conn_keep && !conn_close) : !conn_close;
    return 0;
}

int http_parse(struct http_parser *p, const char *buf, size_t len, struct http_request *req)
{
    if (!p->head_done) {
        size_t lim = len < HTTP_HEAD_MAX ? len : HTTP_HEAD_MAX;
        size_t from = p->scanned > 3 ? p->scanned - 3 : 0;
        const char *e = NULL;
        if (lim > from)
            e = memmem(buf + from, lim - from, "\r\n\r\n", 4);
        if (!e) {
            if (len >= HTTP_HEAD_MAX)
                return -431;
            p->scanned = lim;
            return 0;
        }
        size_t head_len = (size_t)(e - buf) + 4;
        memset(&p->req, 0, sizeof(p->req));
        size_t clen = 0;
        int err = parse_head(buf, head_len, &p->req, &clen);
        if (err)
            return err;
        p->head_done = true;
        p->head_len = head_len;
        p->req.body_len = clen;
    }
    if (len - p->head_len < p->req.body_len)
        return 0;
    *req = p->req;
    req->body = buf + p->head_len;
    int used = (int)(p->head_len + p->req.body_len);
    http_parser_reset(p);
    return used;
}

const char *http_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 413:
        return "Payload Too Large";
    case 414:
        return "URI Too Long";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

int http_write_head(char *buf, size_t cap, int status, size_t body_len, const char *extra_headers,
                    bool close)
{
    int n;
    if (status == 204)
        n = snprintf(buf, cap, "HTTP/1.1 204 %s\r\n%s%s\r\n", http_reason(status),
                     extra_headers ? extra_headers : "", close ? "Connection: close\r\n" : "");
    else
        n = snprintf(buf, cap,
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n%s%s\r\n",
                     status, http_reason(status), body_len, extra_headers ? extra_headers : "",
                     close ? "Connection: close\r\n" : "");
    if (n < 0 || (size_t)n >= cap)
        return -ENOSPC;
    return n;
}
