"""Faults in our own infrastructure, made while a test runs, against real servers.

A mock of a dropped connection only shows what the mock's author thought
a driver does; these kill a real Redis and cut real PostgreSQL sessions, so
the test sees the errors and reconnects the drivers really produce. A
HangingServer accepts connections and never answers: a hung server, which
only the client's own timeouts end.

Several faults in a row are several ``at`` calls, joined at the end::

    with RedisServer() as cache, TcpProxy("127.0.0.1", 5432) as db:
        timers = [at(0.5, cache.kill), at(1, db.cut), at(2, cache.restart), at(2, db.restore)]
"""

import select
import signal
import socket
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager, suppress
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


class _Stopping:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class RedisServer(_Stopping):
    """A Redis of the test's own, on a port of its own: killing it harms no other test, nor the
    machine's shared Redis on 6379. Nothing is persisted, so a restart comes back empty, as a
    cache whose server was replaced does."""

    def __init__(self, binary="/usr/bin/redis-server", timeout=10.0):
        self.binary, self.timeout = binary, timeout
        with socket.socket() as sock:  # free now; another process could still take it first
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self._dir = tempfile.TemporaryDirectory(prefix="faults-redis-")
        self.log = Path(self._dir.name) / "redis.log"
        self._start()  # on failure the directory goes with the object

    def url(self, db=0):
        return f"redis://127.0.0.1:{self.port}/{db}"

    def _start(self):
        with open(self.log, "a") as log:
            self.process = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", self._dir.name, "--daemonize", "no", "--logfile", ""],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + self.timeout
        with redis.Redis(port=self.port, socket_timeout=1, retry=Retry(NoBackoff(), 0)) as r:
            while self.process.poll() is None and time.monotonic() < deadline:
                try:
                    return r.ping()
                except redis.ConnectionError:
                    time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"redis-server did not answer on {self.port}:\n{self.log.read_text()}")

    def kill(self):
        """A crash, not a shutdown: no goodbye to the clients. Returns once the port refuses."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=self.timeout)

    def restart(self):
        """A fresh, empty server on the same port, so the clients' URL finds it again."""
        self.kill()
        self._start()

    def stop(self):
        self.kill()
        self._dir.cleanup()


class TcpProxy(_Stopping):
    """A TCP forwarder in front of a server (PostgreSQL), so a test can drop the network between
    the application and the server while both stay up: what a failover or a firewall does.

    While cut, a new connection is accepted and closed at once: the client's connect succeeds
    and its first read finds the connection closed (psycopg: "server closed the connection
    unexpectedly"), quickly, instead of waiting out a timeout. The listening port stays ours.
    """

    def __init__(self, host, port):
        self.target = (host, port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)  # how often the accept loop sees stop()
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs = {}  # pump thread -> (client, upstream)
        self._cut = False
        self._stopping = threading.Event()
        self._acceptor = threading.Thread(target=self._accept, name=f"proxy:{self.port}", daemon=True)
        self._acceptor.start()

    def _accept(self):
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            client.setblocking(True)
            upstream = None
            with suppress(OSError):
                upstream = None if self._cut else socket.create_connection(self.target, timeout=5)
            with self._lock:
                if upstream is None or self._cut or self._stopping.is_set():
                    for sock in filter(None, (client, upstream)):
                        sock.close()
                    continue
                upstream.settimeout(None)
                pump = threading.Thread(target=self._pump, args=(client, upstream), daemon=True)
                self._pairs[pump] = (client, upstream)
                pump.start()

    def _pump(self, client, upstream):
        """Both directions in one thread: select blocks until either side has bytes or is gone."""
        peer = {client: upstream, upstream: client}
        try:
            with suppress(OSError, ValueError):  # the sockets were shut down or closed under us
                while True:
                    for sock in select.select([client, upstream], [], [])[0]:
                        data = sock.recv(65536)
                        if not data:
                            return
                        peer[sock].sendall(data)
        finally:
            client.close()
            upstream.close()
            with self._lock:
                self._pairs.pop(threading.current_thread(), None)

    def cut(self):
        """Drop every forwarded connection at once; returns when all are closed."""
        with self._lock:
            self._cut = True
            pairs = dict(self._pairs)
        for sock in (sock for socks in pairs.values() for sock in socks):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the pump's select, sends both sides a FIN
        for pump in pairs:
            pump.join(timeout=5)

    def restore(self):
        with self._lock:
            self._cut = False

    def stop(self):
        self._stopping.set()
        self._acceptor.join(timeout=5)
        self._listener.close()
        self.cut()


class HangingServer(_Stopping):
    """A server that accepts every connection and never answers: a hung cache, as a client sees
    it (the connect succeeds, every read waits until the client's own timeout).

    It reads nothing and writes nothing; the connections it accepted are held, at most
    MAX_HELD (a new one past that is closed), until ``stop()`` closes them all.
    """

    MAX_HELD = 64

    def __init__(self):
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)  # how often the accept loop sees stop()
        self.port = self._listener.getsockname()[1]
        self._held = []
        self._stopping = threading.Event()
        self._acceptor = threading.Thread(target=self._accept, name=f"hanging:{self.port}", daemon=True)
        self._acceptor.start()

    def url(self, db=0):
        return f"redis://127.0.0.1:{self.port}/{db}"

    def _accept(self):
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:  # the listener closed under us
                return
            if len(self._held) < self.MAX_HELD:
                self._held.append(conn)
            else:
                conn.close()

    def stop(self):
        self._stopping.set()
        self._acceptor.join(timeout=5)
        self._listener.close()
        for conn in self._held:
            conn.close()
        self._held.clear()


class At(threading.Timer):
    """A fault on a timer. ``join()`` raises what the action raised, so a fault that failed to
    happen fails the test instead of letting it pass against a healthy server."""

    error = None

    def run(self):
        try:
            super().run()
        except BaseException as error:  # handed to join()
            self.error = error

    def join(self, timeout=None):
        super().join(timeout)
        if self.error is not None:
            raise self.error


def at(seconds, action):
    """Run ``action`` on a daemon thread after ``seconds``; ``.cancel()`` it, or ``.join()`` to wait for it."""
    timer = At(seconds, action)
    timer.daemon = True
    timer.start()
    return timer


# The ways a cache is down, for tests run against each.
FAULTS = ["refused", "hung", "killed"]


@contextmanager
def cache_down(kind):
    """A Redis URL at which the cache is down in the given way, for as long as the block lasts."""
    if kind == "refused":
        # Bound, never listening: every connect is refused, and no other process can take the port.
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            yield f"redis://127.0.0.1:{closed.getsockname()[1]}/0"
    elif kind == "hung":
        with HangingServer() as server:
            yield server.url()
    elif kind == "killed":
        with RedisServer() as server:
            server.kill()
            yield server.url()
    else:  # pragma: no cover
        raise ValueError(kind)
