/* Unit tests for the HTTP/1.1 request parser and response writer (api/http.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/http.h"

/* Parse a whole buffer in one go. */
static int parse_all(const char *s, size_t len, struct http_request *req)
{
    struct http_parser p;
    http_parser_reset(&p);
    return http_parse(&p, s, len, req);
}

static int parse_str(const char *s, struct http_request *req)
{
    return parse_all(s, strlen(s), req);
}

static void test_simple_get(void **state)
{
    struct http_request r;
    const char *s = "GET /machine-config?x=1 HTTP/1.1\r\nHost: localhost\r\n\r\n";
    assert_int_equal(parse_str(s, &r), (int)strlen(s));
    assert_int_equal(r.method, HTTP_GET);
    assert_string_equal(r.path, "/machine-config");
    assert_string_equal(r.query, "x=1");
    assert_true(r.keep_alive);
    assert_int_equal(r.body_len, 0);
}

static void test_body_and_methods(void **state)
{
    struct http_request r;
    const char *s = "PATCH /vm HTTP/1.1\r\ncOnTeNt-LeNgTh:  18 \r\n\r\n{\"state\":\"Paused\"}";
    assert_int_equal(parse_str(s, &r), (int)strlen(s));
    assert_int_equal(r.method, HTTP_PATCH);
    assert_int_equal(r.body_len, 18);
    assert_memory_equal(r.body, "{\"state\":\"Paused\"}", 18);

    s = "DELETE /vm HTTP/1.1\r\n\r\n";
    assert_int_equal(parse_str(s, &r), (int)strlen(s));
    assert_int_equal(r.method, HTTP_OTHER);
    assert_string_equal(r.method_name, "DELETE");
}

/* Feeding one byte at a time gives the same request, and nothing before the last byte. */
static void test_split_bytewise(void **state)
{
    const char *s = "PUT /boot-source HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
    size_t n = strlen(s);
    struct http_parser p;
    struct http_request r;
    http_parser_reset(&p);
    for (size_t i = 1; i < n; i++)
        assert_int_equal(http_parse(&p, s, i, &r), 0);
    assert_true(p.head_done);
    assert_int_equal(http_parse(&p, s, n, &r), (int)n);
    assert_string_equal(r.path, "/boot-source");
    assert_memory_equal(r.body, "hello", 5);
    /* Split at the CR/LF boundary inside the terminator too. */
    http_parser_reset(&p);
    const char *h = "GET / HTTP/1.1\r\n\r\n";
    assert_int_equal(http_parse(&p, h, strlen(h) - 1, &r), 0);
    assert_int_equal(http_parse(&p, h, strlen(h), &r), (int)strlen(h));
}

static void test_pipelined(void **state)
{
    const char *s = "GET / HTTP/1.1\r\n\r\nPUT /vm HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}"
                    "GET /version HTTP/1.1\r\nConnection: close\r\n\r\n";
    size_t len = strlen(s), off = 0;
    struct http_parser p;
    struct http_request r;
    http_parser_reset(&p);
    const char *paths[] = {"/", "/vm", "/version"};
    for (int i = 0; i < 3; i++) {
        int used = http_parse(&p, s + off, len - off, &r);
        assert_true(used > 0);
        assert_string_equal(r.path, paths[i]);
        assert_int_equal(r.keep_alive, i < 2);
        off += (size_t)used;
    }
    assert_int_equal(off, len);
}

static void test_oversized_head(void **state)
{
    size_t n = HTTP_HEAD_MAX + 100;
    char *s = malloc(n);
    memset(s, 'a', n);
    memcpy(s, "GET / HTTP/1.1\r\nX-Big: ", 23);
    struct http_request r;
    assert_int_equal(parse_all(s, n, &r), -431);
    /* Just under the limit is still waiting for more. */
    assert_int_equal(parse_all(s, HTTP_HEAD_MAX - 1, &r), 0);
    free(s);
}

static void test_oversized_body(void **state)
{
    struct http_request r;
    assert_int_equal(parse_str("PUT /x HTTP/1.1\r\nContent-Length: 65537\r\n\r\n", &r), -413);
    assert_int_equal(
        parse_str("PUT /x HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", &r), -413);
    /* Exactly the cap is fine (waits for the body). */
    assert_int_equal(parse_str("PUT /x HTTP/1.1\r\nContent-Length: 65536\r\n\r\n", &r), 0);
}

static void test_bad_content_length(void **state)
{
    struct http_request r;
    const char *bad[] = {
        "PUT /x HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        "PUT /x HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
        "PUT /x HTTP/1.1\r\nContent-Length: 1a\r\n\r\n",
        "PUT /x HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n",
        "PUT /x HTTP/1.1\r\nContent-Length: \r\n\r\n",
        "PUT /x HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n",
        "PUT /x HTTP/1.1\r\nContent-Length: 2, 2\r\n\r\n",
        "PUT /x HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(parse_str(bad[i], &r), -400);
    /* A repeated identical value is accepted. */
    const char *dup = "PUT /x HTTP/1.1\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\n{}";
    assert_int_equal(parse_str(dup, &r), (int)strlen(dup));
}

static void test_chunked_refused(void **state)
{
    struct http_request r;
    assert_int_equal(parse_str("PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", &r), -501);
}

static void test_control_and_utf8(void **state)
{
    struct http_request r;
    const char nul[] = "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n";
    assert_int_equal(parse_all(nul, sizeof(nul) - 1, &r), -400);
    assert_int_equal(parse_str("GET / HTTP/1.1\r\nX: a\x01\r\n\r\n", &r), -400);
    assert_int_equal(parse_str("GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n", &r), -400);
    assert_int_equal(parse_str("GET / HTTP/1.1\r\nX: \xff\xfe\r\n\r\n", &r), -400);
    assert_int_equal(parse_str("GET / HTTP/1.1\r\nX: \xc0\xaf\r\n\r\n", &r), -400); /* overlong */
    assert_int_equal(parse_str("GET / HTTP/1.1\r\nX: \xed\xa0\x80\r\n\r\n", &r), -400);
    assert_int_equal(parse_str("GET /\xc3\xa9 HTTP/1.1\r\n\r\n", &r), -400); /* non-ASCII path */
    /* Valid UTF-8 and a tab in a header value are fine. */
    assert_true(parse_str("GET / HTTP/1.1\r\nX: caf\xc3\xa9\tok\r\n\r\n", &r) > 0);
}

static void test_missing_crlf(void **state)
{
    struct http_request r;
    assert_int_equal(parse_str("GET / HTTP/1.1\nHost: x\r\n\r\n", &r), -400);
    assert_int_equal(parse_str("GET / HTTP/1.1\r\nHost: x\n\r\n\r\n", &r), -400);
    assert_int_equal(parse_str("GET / HTTP/1.1\r\nHo\rst: x\r\n\r\n", &r), -400);
    /* Only LFs: never a complete head; waits, then 431 at the cap. */
    assert_int_equal(parse_str("GET / HTTP/1.1\n\n", &r), 0);
}

static void test_bad_request_line(void **state)
{
    struct http_request r;
    const char *bad[] = {
        "GET HTTP/1.1\r\n\r\n",
        "GET  / HTTP/1.1\r\n\r\n",
        "GET x HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1 \r\n\r\n",
        "GET / FOO\r\n\r\n",
        " GET / HTTP/1.1\r\n\r\n",
        "G(T / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\n: v\r\n\r\n",
        "GET / HTTP/1.1\r\nX : v\r\n\r\n",
        "GET / HTTP/1.1\r\n folded\r\n\r\n",
        "GET / HTTP/1.1\r\nNoColon\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(parse_str(bad[i], &r), -400);
    assert_int_equal(parse_str("GET / HTTP/2.0\r\n\r\n", &r), -505);
    char big[HTTP_PATH_MAX + 64];
    memset(big, 'a', sizeof(big));
    memcpy(big, "GET /", 5);
    snprintf(big + HTTP_PATH_MAX + 10, 40, " HTTP/1.1\r\n\r\n");
    assert_int_equal(parse_str(big, &r), -414);
}

static void test_connection_and_http10(void **state)
{
    struct http_request r;
    assert_true(parse_str("GET / HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n", &r) > 0);
    assert_false(r.keep_alive);
    assert_true(parse_str("GET / HTTP/1.0\r\n\r\n", &r) > 0);
    assert_false(r.keep_alive);
    assert_true(parse_str("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &r) > 0);
    assert_true(r.keep_alive);
    assert_true(
        parse_str("PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n", &r) > 0);
    assert_true(r.expect_continue);
}

static void test_write_head(void **state)
{
    char buf[256];
    int n = http_write_head(buf, sizeof(buf), 400, 5, NULL, false);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_string_equal(buf, "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                             "Content-Length: 5\r\n\r\n");
    n = http_write_head(buf, sizeof(buf), 204, 0, NULL, true);
    buf[n] = '\0';
    assert_string_equal(buf, "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
    n = http_write_head(buf, sizeof(buf), 405, 2, "Allow: GET\r\n", false);
    buf[n] = '\0';
    assert_non_null(strstr(buf, "\r\nAllow: GET\r\n\r\n"));
    assert_int_equal(http_write_head(buf, 10, 200, 0, NULL, false), -ENOSPC);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_get),         cmocka_unit_test(test_body_and_methods),
        cmocka_unit_test(test_split_bytewise),     cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_oversized_head),     cmocka_unit_test(test_oversized_body),
        cmocka_unit_test(test_bad_content_length), cmocka_unit_test(test_chunked_refused),
        cmocka_unit_test(test_control_and_utf8),   cmocka_unit_test(test_missing_crlf),
        cmocka_unit_test(test_bad_request_line),   cmocka_unit_test(test_connection_and_http10),
        cmocka_unit_test(test_write_head),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
