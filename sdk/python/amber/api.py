"""A small client for amber's HTTP/1.1 JSON API on a Unix socket (http.client over AF_UNIX)."""
import http.client
import json
import socket


class UnixHTTPConnection(http.client.HTTPConnection):
    """An HTTPConnection whose transport is the Unix socket at path."""

    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(self.timeout)
            s.connect(self.unix_path)
        except BaseException:
            s.close()
            raise
        self.sock = s


class ApiResponse:
    """status (int), body (parsed JSON, or None when empty), text (the raw body)."""

    def __init__(self, status, text):
        self.status = status
        self.text = text
        try:
            self.body = json.loads(text) if text.strip() else None
        except ValueError:
            self.body = None

    @property
    def fault(self):
        """The fault_message of an error body (or the raw text)."""
        if isinstance(self.body, dict) and "fault_message" in self.body:
            return str(self.body["fault_message"])
        return self.text.strip() or "HTTP %d" % self.status

    def __repr__(self):
        return "ApiResponse(%d, %r)" % (self.status, self.text[:200])


def request(sock_path, method, path, body=None, timeout=10.0):
    """One request on a fresh connection; returns ApiResponse.

    Raises OSError (FileNotFoundError, ConnectionRefusedError, socket.timeout...) and
    http.client.HTTPException as they come: the caller maps them to SDK errors.
    """
    conn = UnixHTTPConnection(sock_path, timeout)
    try:
        headers = {"Accept": "application/json", "Connection": "close"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        text = resp.read().decode("utf-8", "replace")
        return ApiResponse(resp.status, text)
    finally:
        conn.close()
