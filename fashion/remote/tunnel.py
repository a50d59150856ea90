"""Local port forwarding through the SSH transport (``ssh -L`` without the ssh binary)."""
import select
import socketserver
import threading

import paramiko

from fashion.remote.settings import RemoteError


class _Handler(socketserver.BaseRequestHandler):
    def handle(self):
        server = self.server
        try:
            channel = server.transport.open_channel(
                "direct-tcpip", (server.remote_host, server.remote_port),
                self.request.getpeername())
        except (paramiko.SSHException, OSError) as exc:
            server.errors.append(f"the host could not open {server.remote_host}:"
                                 f"{server.remote_port} ({exc})")
            return
        try:
            _pump(self.request, channel)
        finally:
            channel.close()


def _pump(sock, channel):
    """Copy bytes both ways until either side closes."""
    while True:
        readable, _, _ = select.select([sock, channel], [], [], 1.0)
        if sock in readable:
            data = sock.recv(65536)
            if not data:
                break
            channel.sendall(data)
        if channel in readable:
            data = channel.recv(65536)
            if not data:
                break
            sock.sendall(data)


class Tunnel(socketserver.ThreadingTCPServer):
    """Listens on ``127.0.0.1:local_port``; each connection becomes a direct-tcpip channel."""
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, transport, local_port, remote_port, remote_host="127.0.0.1"):
        self.transport, self.remote_host, self.remote_port = (
            transport, remote_host, remote_port)
        self.errors = []
        try:
            super().__init__(("127.0.0.1", local_port), _Handler)
        except OSError as exc:
            raise RemoteError(f"cannot listen on local port {local_port} ({exc.strerror}); "
                              f"choose another --local-port.") from None
        self.thread = None

    @property
    def local_port(self):
        return self.server_address[1]

    def start(self):
        """Serve in a background thread; returns self."""
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()
        return self

    def close(self):
        self.shutdown()
        self.server_close()

