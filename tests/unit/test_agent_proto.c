/* Unit tests for the amber-agent frame/TLV codec and passwd parsing, with hostile inputs. */
#include "proto/agent.h"
#include "guest/agent/user.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static size_t frame(uint8_t *out, uint32_t len_field, uint8_t type, uint32_t id)
{
    out[0] = (uint8_t)(len_field >> 24);
    out[1] = (uint8_t)(len_field >> 16);
    out[2] = (uint8_t)(len_field >> 8);
    out[3] = (uint8_t)len_field;
    out[4] = type;
    out[5] = (uint8_t)(id >> 24);
    out[6] = (uint8_t)(id >> 16);
    out[7] = (uint8_t)(id >> 8);
    out[8] = (uint8_t)id;
    return PROTO_HDR_LEN;
}

static void test_header_round_trip(void **state)
{
    uint8_t buf[PROTO_HDR_LEN + 3];
    struct proto_frame f;
    assert_int_equal(proto_frame_header(buf, PROTO_STDOUT, 0xdeadbeef, 3), 0);
    memcpy(buf + PROTO_HDR_LEN, "abc", 3);
    assert_int_equal(proto_frame_parse(buf, sizeof(buf), &f), (ssize_t)sizeof(buf));
    assert_int_equal(f.type, PROTO_STDOUT);
    assert_int_equal(f.id, 0xdeadbeef);
    assert_int_equal(f.len, 3);
    assert_memory_equal(f.payload, "abc", 3);
    assert_int_equal(proto_frame_header(buf, PROTO_DATA, 1, PROTO_MAX_PAYLOAD + 1), -EMSGSIZE);
}

static void test_truncated_needs_more(void **state)
{
    uint8_t buf[PROTO_HDR_LEN + 4];
    struct proto_frame f;
    frame(buf, 4, PROTO_DATA, 7);
    for (size_t n = 0; n < sizeof(buf); n++)
        assert_int_equal(proto_frame_parse(buf, n, &f), 0);
    assert_int_equal(proto_frame_parse(buf, sizeof(buf), &f), (ssize_t)sizeof(buf));
}

static void test_oversized_and_unknown(void **state)
{
    uint8_t buf[PROTO_HDR_LEN];
    struct proto_frame f;
    frame(buf, PROTO_MAX_PAYLOAD + 1, PROTO_DATA, 1);
    assert_int_equal(proto_frame_parse(buf, sizeof(buf), &f), -EMSGSIZE);
    frame(buf, 0xffffffffu, PROTO_EXEC, 1);
    assert_int_equal(proto_frame_parse(buf, sizeof(buf), &f), -EMSGSIZE);
    frame(buf, PROTO_MAX_PAYLOAD, PROTO_DATA, 1); /* the largest legal frame: wait for it */
    assert_int_equal(proto_frame_parse(buf, sizeof(buf), &f), 0);
    frame(buf, 0, 0x42, 1);
    assert_int_equal(proto_frame_parse(buf, sizeof(buf), &f), -EBADMSG);
    frame(buf, 0, 0x00, 1);
    assert_int_equal(proto_frame_parse(buf, sizeof(buf), &f), -EBADMSG);
}

static void test_zero_length(void **state)
{
    uint8_t buf[PROTO_HDR_LEN];
    struct proto_frame f;
    frame(buf, 0, PROTO_EOF, 9);
    assert_int_equal(proto_frame_parse(buf, sizeof(buf), &f), PROTO_HDR_LEN);
    assert_int_equal(f.len, 0);
    assert_int_equal(f.type, PROTO_EOF);
}

static void test_tlv_bounds(void **state)
{
    uint8_t small[10];
    struct proto_buf b = {small, 0, sizeof(small)};
    assert_int_equal(proto_tlv_put_u64(&b, TAG_SIZE, 1), -ENOSPC);
    assert_int_equal(b.len, 0);
    assert_int_equal(proto_tlv_put(&b, TAG_PATH, "abcd", 4), 0);
    assert_int_equal(proto_tlv_put(&b, TAG_PATH, "", 0), -ENOSPC);

    /* A TLV whose length runs past the payload, and a truncated TLV header. */
    const uint8_t overrun[] = {0, 7, 0, 0, 0, 9, 'x'};
    const uint8_t *val;
    uint16_t tag;
    uint32_t len;
    struct proto_tlv_iter it;
    proto_tlv_iter_init(&it, overrun, sizeof(overrun));
    assert_int_equal(proto_tlv_next(&it, &tag, &val, &len), -EBADMSG);
    proto_tlv_iter_init(&it, overrun, 3);
    assert_int_equal(proto_tlv_next(&it, &tag, &val, &len), -EBADMSG);
    const uint8_t huge[] = {0, 7, 0xff, 0xff, 0xff, 0xff};
    proto_tlv_iter_init(&it, huge, sizeof(huge));
    assert_int_equal(proto_tlv_next(&it, &tag, &val, &len), -EBADMSG);

    uint64_t v;
    assert_int_equal(proto_tlv_u64((const uint8_t *)"1234567", 7, &v), -EBADMSG);
    char *s = NULL;
    assert_int_equal(proto_tlv_strdup((const uint8_t *)"a\0b", 3, &s), -EBADMSG);
    assert_null(s);
    assert_int_equal(proto_tlv_strdup((const uint8_t *)"x", PROTO_MAX_STR + 1, &s), -ENAMETOOLONG);
}

static int put_str(struct proto_buf *b, uint16_t tag, const char *s)
{
    return proto_tlv_put_str(b, tag, s);
}

static void test_exec_decode_ok(void **state)
{
    uint8_t buf[512];
    struct proto_buf b = {buf, 0, sizeof(buf)};
    struct proto_exec_req req;
    put_str(&b, TAG_ARGV, "echo");
    put_str(&b, TAG_ARGV, "hi there");
    put_str(&b, TAG_ENV, "A=b=c");
    put_str(&b, TAG_CWD, "/tmp");
    put_str(&b, TAG_USER, "nobody");
    proto_tlv_put_u64(&b, TAG_TIMEOUT_MS, 1500);
    proto_tlv_put_u64(&b, 999, 5); /* unknown tags are skipped */
    assert_int_equal(proto_exec_req_decode(b.data, b.len, &req), 0);
    assert_int_equal(req.argc, 2);
    assert_string_equal(req.argv[1], "hi there");
    assert_null(req.argv[2]);
    assert_int_equal(req.envc, 1);
    assert_string_equal(req.env[0], "A=b=c");
    assert_string_equal(req.cwd, "/tmp");
    assert_string_equal(req.user, "nobody");
    assert_int_equal(req.timeout_ms, 1500);
    assert_null(req.shell);
    proto_exec_req_free(&req);

    b.len = 0;
    put_str(&b, TAG_SHELL, "echo $HOME | wc -c");
    assert_int_equal(proto_exec_req_decode(b.data, b.len, &req), 0);
    assert_string_equal(req.shell, "echo $HOME | wc -c");
    assert_int_equal(req.argc, 0);
    proto_exec_req_free(&req);
}

static void test_exec_decode_hostile(void **state)
{
    uint8_t buf[512];
    struct proto_buf b = {buf, 0, sizeof(buf)};
    struct proto_exec_req req;
    assert_int_equal(proto_exec_req_decode(NULL, 0, &req), -EINVAL); /* no command */

    put_str(&b, TAG_ARGV, "ls");
    put_str(&b, TAG_SHELL, "ls");
    assert_int_equal(proto_exec_req_decode(b.data, b.len, &req), -EINVAL); /* both */

    b.len = 0;
    put_str(&b, TAG_ARGV, "ls");
    put_str(&b, TAG_ENV, "NOEQUALS");
    assert_int_equal(proto_exec_req_decode(b.data, b.len, &req), -EINVAL);

    b.len = 0;
    put_str(&b, TAG_ARGV, "ls");
    put_str(&b, TAG_ENV, "=x");
    assert_int_equal(proto_exec_req_decode(b.data, b.len, &req), -EINVAL);

    b.len = 0;
    put_str(&b, TAG_ARGV, "ls");
    put_str(&b, TAG_CWD, "/a");
    put_str(&b, TAG_CWD, "/b");
    assert_int_equal(proto_exec_req_decode(b.data, b.len, &req), -EBADMSG);

    b.len = 0;
    put_str(&b, TAG_ARGV, "");
    assert_int_equal(proto_exec_req_decode(b.data, b.len, &req), -EINVAL);

    b.len = 0;
    put_str(&b, TAG_ARGV, "ls");
    proto_tlv_put(&b, TAG_TIMEOUT_MS, "abc", 3);
    assert_int_equal(proto_exec_req_decode(b.data, b.len, &req), -EBADMSG);

    b.len = 0;
    put_str(&b, TAG_ARGV, "ls");
    proto_tlv_put(&b, TAG_ARGV, "a\0b", 3);
    assert_int_equal(proto_exec_req_decode(b.data, b.len, &req), -EBADMSG);

    b.len = 0;
    put_str(&b, TAG_ARGV, "ls");
    b.data[b.len++] = 0; /* trailing garbage shorter than a TLV header */
    assert_int_equal(proto_exec_req_decode(b.data, b.len, &req), -EBADMSG);
}

static void test_exec_decode_huge_counts(void **state)
{
    size_t cap = (PROTO_MAX_ARGS + PROTO_MAX_ENV + 2) * 8;
    uint8_t *buf = malloc(cap);
    struct proto_buf b = {buf, 0, cap};
    struct proto_exec_req req;
    for (unsigned i = 0; i < PROTO_MAX_ARGS; i++)
        assert_int_equal(proto_tlv_put(&b, TAG_ARGV, "ab", 2), 0);
    assert_int_equal(proto_exec_req_decode(b.data, b.len, &req), 0);
    assert_int_equal(req.argc, PROTO_MAX_ARGS);
    proto_exec_req_free(&req);
    assert_int_equal(proto_tlv_put(&b, TAG_ARGV, "ab", 2), 0);
    assert_int_equal(proto_exec_req_decode(b.data, b.len, &req), -E2BIG);

    b.len = 0;
    assert_int_equal(proto_tlv_put(&b, TAG_ARGV, "ab", 2), 0);
    for (unsigned i = 0; i <= PROTO_MAX_ENV; i++)
        proto_tlv_put(&b, TAG_ENV, "A=", 2);
    assert_int_equal(proto_exec_req_decode(b.data, b.len, &req), -E2BIG);
    free(buf);
}

static void test_path_decode(void **state)
{
    uint8_t buf[128];
    struct proto_buf b = {buf, 0, sizeof(buf)};
    struct proto_path_req req;
    put_str(&b, TAG_PATH, "/etc/hosts");
    proto_tlv_put_u64(&b, TAG_MODE, 0750);
    assert_int_equal(proto_path_req_decode(b.data, b.len, &req), 0);
    assert_string_equal(req.path, "/etc/hosts");
    assert_int_equal(req.mode, 0750);
    proto_path_req_free(&req);

    b.len = 0;
    put_str(&b, TAG_PATH, "relative");
    assert_int_equal(proto_path_req_decode(b.data, b.len, &req), -EINVAL);
    b.len = 0;
    proto_tlv_put_u64(&b, TAG_MODE, 0644);
    assert_int_equal(proto_path_req_decode(b.data, b.len, &req), -EINVAL);
    b.len = 0;
    put_str(&b, TAG_PATH, "/x");
    proto_tlv_put_u64(&b, TAG_MODE, 010000);
    assert_int_equal(proto_path_req_decode(b.data, b.len, &req), -EINVAL);
}

static void test_rx_byte_by_byte(void **state)
{
    struct proto_rx rx;
    struct proto_frame f;
    uint8_t stream[64];
    size_t n = 0;
    n += frame(stream + n, 2, PROTO_DATA, 1);
    stream[n++] = 'h';
    stream[n++] = 'i';
    n += frame(stream + n, 0, PROTO_EOF, 1);
    n += frame(stream + n, PROTO_MAX_PAYLOAD + 5, PROTO_DATA, 1);
    assert_int_equal(proto_rx_init(&rx), 0);
    int frames = 0, err = 0;
    for (size_t i = 0; i < n && !err; i++) {
        size_t room;
        uint8_t *dst = proto_rx_space(&rx, &room);
        assert_true(room >= 1);
        *dst = stream[i];
        proto_rx_commit(&rx, 1);
        int r;
        while ((r = proto_rx_next(&rx, &f)) == 1) {
            frames++;
            if (frames == 1)
                assert_memory_equal(f.payload, "hi", 2);
            else
                assert_int_equal(f.type, PROTO_EOF);
        }
        err = r;
    }
    assert_int_equal(frames, 2);
    assert_int_equal(err, -EMSGSIZE);
    proto_rx_free(&rx);
}

static void test_passwd_lines(void **state)
{
    struct user_info u;
    assert_int_equal(
        user_parse_line("nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n", &u), 0);
    assert_int_equal(u.uid, 65534);
    assert_int_equal(u.gid, 65534);
    assert_string_equal(u.name, "nobody");
    assert_string_equal(u.home, "/nonexistent");
    assert_int_equal(user_parse_line("root:x:0:0:root:/root", &u), -EINVAL);
    assert_int_equal(user_parse_line("a:x:-1:0::/:/bin/sh", &u), -EINVAL);
    assert_int_equal(user_parse_line("a:x:12abc:0::/:/bin/sh", &u), -EINVAL);
    assert_int_equal(user_parse_line("a:x:99999999999:0::/:/bin/sh", &u), -EINVAL);
    assert_int_equal(user_parse_line("", &u), -EINVAL);
}

/* v1 additions: the new request and reply types are known, so a reader accepts their frames. */
static void test_new_types_known(void **state)
{
    const uint8_t types[] = {PROTO_ATTACH,   PROTO_KILL,   PROTO_LIST_PROCS, PROTO_STAT,
                             PROTO_LIST_DIR, PROTO_REMOVE, PROTO_RENAME,     PROTO_MKDIR,
                             PROTO_ENTRY,    PROTO_PTY,    PROTO_WATCH,      PROTO_RESIZE};
    for (size_t i = 0; i < sizeof(types); i++)
        assert_true(proto_type_known(types[i]));
    assert_false(proto_type_known(0x13));
    assert_false(proto_type_known(0x26));
}

/* PTY and RESIZE sizes: both sides required once, 1 .. PROTO_MAX_WINSIZE, 8-byte integers. */
static void test_winsize_decode(void **state)
{
    uint8_t buf[256];
    struct proto_buf b = {buf, 0, sizeof(buf)};
    uint16_t cols = 0, rows = 0;
    (void)state;
    proto_tlv_put_u64(&b, TAG_COLS, 120);
    proto_tlv_put_u64(&b, TAG_ROWS, 40);
    assert_int_equal(proto_winsize_decode(b.data, b.len, &cols, &rows), 0);
    assert_int_equal(cols, 120);
    assert_int_equal(rows, 40);
    struct proto_exec_req req;
    assert_int_equal(proto_pty_req_decode(b.data, b.len, &req), -EINVAL); /* no command */
    put_str(&b, TAG_SHELL, "stty size");
    assert_int_equal(proto_pty_req_decode(b.data, b.len, &req), 0);
    assert_true(req.pty);
    assert_int_equal(req.cols, 120);
    assert_int_equal(req.rows, 40);
    proto_exec_req_free(&req);

    const uint64_t bad_sides[] = {0, PROTO_MAX_WINSIZE + 1, 1ull << 32, UINT64_MAX};
    for (size_t i = 0; i < sizeof(bad_sides) / sizeof(bad_sides[0]); i++) {
        b.len = 0;
        proto_tlv_put_u64(&b, TAG_COLS, 80);
        proto_tlv_put_u64(&b, TAG_ROWS, bad_sides[i]);
        assert_int_equal(proto_winsize_decode(b.data, b.len, &cols, &rows), -EINVAL);
    }
    b.len = 0; /* ROWS missing */
    proto_tlv_put_u64(&b, TAG_COLS, 80);
    assert_int_equal(proto_winsize_decode(b.data, b.len, &cols, &rows), -EINVAL);
    proto_tlv_put_u64(&b, TAG_COLS, 81); /* COLS twice */
    proto_tlv_put_u64(&b, TAG_ROWS, 24);
    assert_int_equal(proto_winsize_decode(b.data, b.len, &cols, &rows), -EBADMSG);
    b.len = 0; /* a 4-byte integer */
    uint8_t four[4] = {0, 0, 0, 80};
    proto_tlv_put(&b, TAG_COLS, four, sizeof(four));
    proto_tlv_put_u64(&b, TAG_ROWS, 24);
    assert_int_equal(proto_winsize_decode(b.data, b.len, &cols, &rows), -EBADMSG);
    b.len = 0; /* a TLV running past the payload */
    proto_tlv_put_u64(&b, TAG_COLS, 80);
    proto_tlv_put_u64(&b, TAG_ROWS, 24);
    assert_int_equal(proto_winsize_decode(b.data, b.len - 1, &cols, &rows), -EBADMSG);
}

static void test_exec_background_tag(void **state)
{
    uint8_t buf[128];
    struct proto_buf b = {buf, 0, sizeof(buf)};
    struct proto_exec_req req;
    put_str(&b, TAG_SHELL, "sleep 1");
    assert_int_equal(proto_exec_req_decode(b.data, b.len, &req), 0);
    assert_false(req.background);
    proto_exec_req_free(&req);
    proto_tlv_put_u64(&b, TAG_BACKGROUND, 1);
    assert_int_equal(proto_exec_req_decode(b.data, b.len, &req), 0);
    assert_true(req.background);
    proto_exec_req_free(&req);
    b.len = 0;
    put_str(&b, TAG_SHELL, "x");
    proto_tlv_put_u64(&b, TAG_BACKGROUND, 2);
    assert_int_equal(proto_exec_req_decode(b.data, b.len, &req), -EINVAL);
    b.len = 0;
    put_str(&b, TAG_SHELL, "x");
    proto_tlv_put(&b, TAG_BACKGROUND, "\1", 1); /* not an 8-byte integer */
    assert_int_equal(proto_exec_req_decode(b.data, b.len, &req), -EBADMSG);
}

static void test_pid_decode(void **state)
{
    uint8_t buf[128];
    struct proto_buf b = {buf, 0, sizeof(buf)};
    struct proto_pid_req req;
    proto_tlv_put_u64(&b, TAG_PID, 42);
    assert_int_equal(proto_pid_req_decode(b.data, b.len, &req), 0);
    assert_int_equal(req.pid, 42);
    assert_int_equal(req.signal, 9);
    proto_tlv_put_u64(&b, TAG_SIGNAL, 15);
    put_str(&b, TAG_MESSAGE, "ignored");
    assert_int_equal(proto_pid_req_decode(b.data, b.len, &req), 0);
    assert_int_equal(req.signal, 15);

    assert_int_equal(proto_pid_req_decode(NULL, 0, &req), -EINVAL); /* no pid */
    const uint64_t bad_pids[] = {0, (1u << 22) + 1, UINT64_MAX};
    for (size_t i = 0; i < 3; i++) {
        b.len = 0;
        proto_tlv_put_u64(&b, TAG_PID, bad_pids[i]);
        assert_int_equal(proto_pid_req_decode(b.data, b.len, &req), -EINVAL);
    }
    const uint64_t bad_sigs[] = {0, 65, 1u << 31};
    for (size_t i = 0; i < 3; i++) {
        b.len = 0;
        proto_tlv_put_u64(&b, TAG_PID, 7);
        proto_tlv_put_u64(&b, TAG_SIGNAL, bad_sigs[i]);
        assert_int_equal(proto_pid_req_decode(b.data, b.len, &req), -EINVAL);
    }
    b.len = 0;
    proto_tlv_put_u64(&b, TAG_PID, 7);
    proto_tlv_put_u64(&b, TAG_PID, 8);
    assert_int_equal(proto_pid_req_decode(b.data, b.len, &req), -EBADMSG); /* repeated */
    b.len = 0;
    proto_tlv_put(&b, TAG_PID, "1234", 4);
    assert_int_equal(proto_pid_req_decode(b.data, b.len, &req), -EBADMSG);
    b.len = 0;
    proto_tlv_put_u64(&b, TAG_PID, 7);
    b.len -= 3; /* truncated TLV */
    assert_int_equal(proto_pid_req_decode(b.data, b.len, &req), -EBADMSG);
}

static void test_fs_decode(void **state)
{
    uint8_t buf[256];
    struct proto_buf b = {buf, 0, sizeof(buf)};
    struct proto_fs_req req;
    put_str(&b, TAG_PATH, "/tmp/a");
    assert_int_equal(proto_fs_req_decode(PROTO_STAT, b.data, b.len, &req), 0);
    assert_string_equal(req.path, "/tmp/a");
    assert_null(req.new_path);
    assert_int_equal(req.depth, 1);
    assert_int_equal(req.mode, 0755);
    proto_fs_req_free(&req);
    /* rename needs NEW_PATH, the others refuse it */
    assert_int_equal(proto_fs_req_decode(PROTO_RENAME, b.data, b.len, &req), -EINVAL);
    put_str(&b, TAG_NEW_PATH, "/tmp/b");
    assert_int_equal(proto_fs_req_decode(PROTO_RENAME, b.data, b.len, &req), 0);
    assert_string_equal(req.new_path, "/tmp/b");
    proto_fs_req_free(&req);
    assert_int_equal(proto_fs_req_decode(PROTO_REMOVE, b.data, b.len, &req), -EINVAL);
    b.len = 0;
    put_str(&b, TAG_PATH, "/tmp/a");
    put_str(&b, TAG_NEW_PATH, "relative");
    assert_int_equal(proto_fs_req_decode(PROTO_RENAME, b.data, b.len, &req), -EINVAL);

    b.len = 0;
    put_str(&b, TAG_PATH, "/d");
    proto_tlv_put_u64(&b, TAG_DEPTH, PROTO_MAX_DEPTH);
    proto_tlv_put_u64(&b, TAG_MODE, 0700);
    assert_int_equal(proto_fs_req_decode(PROTO_LIST_DIR, b.data, b.len, &req), 0);
    assert_int_equal(req.depth, PROTO_MAX_DEPTH);
    assert_int_equal(req.mode, 0700);
    proto_fs_req_free(&req);
    const uint64_t bad_depths[] = {0, PROTO_MAX_DEPTH + 1, UINT64_MAX};
    for (size_t i = 0; i < 3; i++) {
        b.len = 0;
        put_str(&b, TAG_PATH, "/d");
        proto_tlv_put_u64(&b, TAG_DEPTH, bad_depths[i]);
        assert_int_equal(proto_fs_req_decode(PROTO_LIST_DIR, b.data, b.len, &req), -EINVAL);
    }
    b.len = 0;
    put_str(&b, TAG_PATH, "/d");
    proto_tlv_put_u64(&b, TAG_MODE, 010000);
    assert_int_equal(proto_fs_req_decode(PROTO_MKDIR, b.data, b.len, &req), -EINVAL);
    b.len = 0;
    put_str(&b, TAG_PATH, "/d");
    put_str(&b, TAG_PATH, "/e");
    assert_int_equal(proto_fs_req_decode(PROTO_STAT, b.data, b.len, &req), -EBADMSG);
    b.len = 0;
    put_str(&b, TAG_PATH, "rel");
    assert_int_equal(proto_fs_req_decode(PROTO_STAT, b.data, b.len, &req), -EINVAL);
    b.len = 0;
    proto_tlv_put(&b, TAG_PATH, "/a\0b", 4);
    assert_int_equal(proto_fs_req_decode(PROTO_STAT, b.data, b.len, &req), -EBADMSG);
    assert_int_equal(proto_fs_req_decode(PROTO_STAT, NULL, 0, &req), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_round_trip),
        cmocka_unit_test(test_truncated_needs_more),
        cmocka_unit_test(test_oversized_and_unknown),
        cmocka_unit_test(test_zero_length),
        cmocka_unit_test(test_tlv_bounds),
        cmocka_unit_test(test_exec_decode_ok),
        cmocka_unit_test(test_exec_decode_hostile),
        cmocka_unit_test(test_exec_decode_huge_counts),
        cmocka_unit_test(test_path_decode),
        cmocka_unit_test(test_rx_byte_by_byte),
        cmocka_unit_test(test_passwd_lines),
        cmocka_unit_test(test_new_types_known),
        cmocka_unit_test(test_exec_background_tag),
        cmocka_unit_test(test_winsize_decode),
        cmocka_unit_test(test_pid_decode),
        cmocka_unit_test(test_fs_decode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
