"""Raw-socket helpers for tests/agent/test_agent_host.sh's hostile-frame checks."""
import socket
import struct

HDR = ">IBI"  # payload length, frame type, stream id
HDR_LEN = struct.calcsize(HDR)


def connect(path):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    return s


def read_to_eof(s, timeout=5):
    """Everything the agent sends until it closes the connection (socket.timeout if it does not
    within timeout seconds of silence)."""
    s.settimeout(timeout)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk


def frames(data):
    """(type, id) of each whole frame in data."""
    out = []
    while len(data) >= HDR_LEN:
        n, t, i = struct.unpack(HDR, data[:HDR_LEN])
        out.append((t, i))
        data = data[HDR_LEN + n:]
    return out
