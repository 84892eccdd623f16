"""A small TCP proxy tests put between Modelgate and a dependency (PostgreSQL, Redis, an
MLflow server) to cut it in the two ways a network fails:

- ``stop()``: the dependency refuses. The listener closes and every open connection is
  reset, as when the server process dies; ``start()`` listens again on the same port.
- ``pause()``: the dependency goes silent. Connections are accepted and bytes are taken,
  but nothing is forwarded in either direction, as when a host freezes or a firewall drops
  packets; ``resume()`` lets the held bytes through.
"""

import contextlib
import random
import select
import socket
import threading
import time


class FaultProxy:
    def __init__(self, target_host: str, target_port: int, port: int = 0):
        self.target = (target_host, int(target_port))
        self.port = port
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._running = threading.Event()
        self._flowing = threading.Event()
        self._flowing.set()
        self.connections = 0  # accepted so far

    # --- control ------------------------------------------------------------------

    def start(self) -> "FaultProxy":
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.port:
            for attempt in range(50):  # a connection accepted while stopping may hold it a moment
                try:
                    listener.bind(("127.0.0.1", self.port))
                    break
                except OSError:
                    if attempt == 49:
                        raise
                    time.sleep(0.1)
        else:
            # Below the kernel's ephemeral range, so no outgoing connection takes the port while
            # the proxy is stopped and start() can listen on it again.
            for _ in range(200):
                try:
                    listener.bind(("127.0.0.1", random.randrange(20000, 32000)))
                    break
                except OSError:
                    continue
        listener.listen(128)
        listener.settimeout(0.1)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._running.set()
        threading.Thread(target=self._accept, args=(listener,), daemon=True, name="faultproxy-accept").start()
        return self

    def stop(self) -> None:
        """Refuse: close the listener and reset every connection."""
        self._running.clear()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                sock.close()

    def pause(self) -> None:
        """Go silent: accept, take bytes, forward nothing."""
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    # --- plumbing -----------------------------------------------------------------

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _accept(self, listener: socket.socket) -> None:
        while self._running.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._running.is_set():  # stopped while this one was being accepted
                client.close()
                return
            self.connections += 1
            self._track(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True, name="faultproxy-conn").start()

    def _serve(self, client: socket.socket) -> None:
        self._flowing.wait()  # a silent dependency never even answers the handshake
        if not self._running.is_set():
            return
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            with contextlib.suppress(OSError):
                client.close()
            return
        self._track(upstream)
        pairs = {client: upstream, upstream: client}
        try:
            while self._running.is_set():
                if not self._flowing.is_set():
                    self._flowing.wait(0.1)
                    continue
                readable, _, _ = select.select(list(pairs), [], [], 0.1)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    pairs[sock].sendall(data)
        except (OSError, ValueError):  # stop() closed the sockets under us
            return
        finally:
            for sock in pairs:
                with contextlib.suppress(OSError):
                    sock.close()
