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


def _encode(body):
    """(data, headers) for a request body: None, bytes or str as they are, else JSON."""
    headers = {"Accept": "application/json"}
    if body is None:
        return None, headers
    headers["Content-Type"] = "application/json"
    if isinstance(body, (bytes, str)):
        return body, headers
    return json.dumps(body).encode(), headers


def request(sock_path, method, path, body=None, timeout=10.0):
    """One request on a fresh connection; returns ApiResponse. body: a JSON-able value, or bytes
    or str sent as they are.

    Raises OSError (FileNotFoundError, ConnectionRefusedError, socket.timeout...) and
    http.client.HTTPException as they come: the caller maps them to SDK errors.
    """
    conn = UnixHTTPConnection(sock_path, timeout)
    try:
        data, headers = _encode(body)
        headers["Connection"] = "close"
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        return ApiResponse(resp.status, resp.read().decode("utf-8", "replace"))
    finally:
        conn.close()


class Client:
    """A keep-alive client: one connection reused for every request, opened on first use.

    call() returns ApiResponse. When the server has closed an idle connection, the request is
    sent once more on a fresh one. Errors are raised as request() raises them.
    """

    def __init__(self, sock_path, timeout=10.0):
        self.sock_path = sock_path
        self.timeout = timeout
        self.conn = None

    def call(self, method, path, body=None):
        data, headers = _encode(body)
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = UnixHTTPConnection(self.sock_path, self.timeout)
            try:
                self.conn.request(method, path, body=data, headers=headers)
                resp = self.conn.getresponse()
                raw = resp.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if attempt:
                    raise
        if resp.getheader("Connection", "").lower() == "close":
            self.close()
        return ApiResponse(resp.status, raw.decode("utf-8", "replace"))

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None
