/* A small, strict HTTP/1.1 request parser and response writer for the API socket (no I/O). */
#ifndef AMBER_API_HTTP_H
#define AMBER_API_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#define HTTP_HEAD_MAX   8192  /* request line + headers + blank line; beyond -> 431 */
#define HTTP_BODY_MAX   65536 /* Content-Length beyond -> 413 */
#define HTTP_PATH_MAX   1024  /* request target beyond -> 414 */
#define HTTP_METHOD_MAX 16

enum http_method { HTTP_GET, HTTP_PUT, HTTP_PATCH, HTTP_POST, HTTP_OTHER };

/* One parsed request. body points into the caller's buffer and is valid until it is consumed. */
struct http_request {
    enum http_method method;
    char method_name[HTTP_METHOD_MAX + 1];
    char path[HTTP_PATH_MAX + 1];  /* before '?', as sent */
    char query[HTTP_PATH_MAX + 1]; /* after '?', "" if none */
    bool keep_alive;      /* false for "Connection: close" or HTTP/1.0 without keep-alive */
    bool expect_continue; /* "Expect: 100-continue" */
    const char *body;
    size_t body_len;
};

/*
 * Parser progress kept between calls on the same connection. Reset with http_parser_reset after
 * each complete request (http_parse does this itself when it returns > 0).
 */
struct http_parser {
    size_t scanned;          /* bytes already searched for the end of the head */
    bool head_done;          /* the head parsed; waiting for the body */
    size_t head_len;         /* valid when head_done */
    struct http_request req; /* valid fields when head_done */
};

/* Forget any partial request. */
void http_parser_reset(struct http_parser *p);

/*
 * Parse one request from buf[0..len), which holds everything received so far that is not yet
 * consumed (feed bytes as they arrive; split reads and pipelining are fine). Returns:
 *   > 0  a complete request is in *req; the value is how many bytes of buf it used;
 *     0  more bytes are needed (p->head_done tells whether the head is already complete);
 *   < 0  the request is invalid: -status (400, 413, 414, 431, 501, 505). The connection cannot
 *        be resynchronised and should answer then close.
 * Chunked or any other Transfer-Encoding is refused with 501: bodies need Content-Length.
 */
int http_parse(struct http_parser *p, const char *buf, size_t len, struct http_request *req);

/* The reason phrase for status ("Unknown" for codes we never send). */
const char *http_reason(int status);

/*
 * Write a response head into buf (cap bytes): status line, then for status != 204
 * "Content-Type: application/json" and "Content-Length: body_len", then extra_headers (each
 * line ending in "\r\n"; may be NULL), "Connection: close" if close, and the blank line.
 * Returns the head length, or -ENOSPC if cap is too small.
 */
int http_write_head(char *buf, size_t cap, int status, size_t body_len, const char *extra_headers,
                    bool close);

#endif
