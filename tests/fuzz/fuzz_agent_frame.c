/* libFuzzer target: amber-agent's frame reader and request decoders on arbitrary bytes. */
#include "proto/agent.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* One reader for the whole run (a fuzz harness may keep state): allocating and poisoning
     * 1 MiB per input would dominate the run time. */
    static struct proto_rx rx;
    struct proto_frame f;
    if (!rx.buf && proto_rx_init(&rx) < 0)
        return 0;
    rx.len = rx.start = 0;
    /* Feed in uneven pieces, as a socket would, and decode every frame that completes. */
    size_t off = 0, step = size ? (size_t)data[0] % 17 + 1 : 1;
    while (off < size) {
        size_t room, n = size - off < step ? size - off : step;
        uint8_t *dst = proto_rx_space(&rx, &room);
        if (n > room)
            n = room;
        memcpy(dst, data + off, n);
        proto_rx_commit(&rx, n);
        off += n;
        int r;
        while ((r = proto_rx_next(&rx, &f)) == 1) {
            struct proto_exec_req req;
            struct proto_path_req path;
            if (proto_exec_req_decode(f.payload, f.len, &req) == 0)
                proto_exec_req_free(&req);
            if (proto_path_req_decode(f.payload, f.len, &path) == 0)
                proto_path_req_free(&path);
            if (proto_pty_req_decode(f.payload, f.len, &req) == 0)
                proto_exec_req_free(&req);
            uint16_t cols, rows;
            proto_winsize_decode(f.payload, f.len, &cols, &rows);
            struct proto_pid_req pid;
            proto_pid_req_decode(f.payload, f.len, &pid);
            struct proto_fs_req fs;
            if (proto_fs_req_decode(f.type, f.payload, f.len, &fs) == 0)
                proto_fs_req_free(&fs);
            struct proto_tlv_iter it;
            uint16_t tag;
            const uint8_t *val;
            uint32_t len;
            uint64_t v;
            proto_tlv_iter_init(&it, f.payload, f.len);
            while (proto_tlv_next(&it, &tag, &val, &len) > 0)
                proto_tlv_u64(val, len, &v);
        }
        if (r < 0)
            break;
    }
    return 0;
}
