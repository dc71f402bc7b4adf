# SPDX-License-Identifier: MIT
# epoll_switch.py — regression test (run preloaded, NEARSOCK_UPGRADE=eager, by
# epoll_switch.sh): a socket registered with epoll for EPOLLIN *before* its connection
# switches to shared memory, while the application sleeps in epoll_wait. The server's switch
# marker byte makes the kernel fd readable; that must not reach the application as EPOLLIN
# (it would read and get EAGAIN — wrk counts that as a read error and reconnects). Every
# EPOLLIN reported must be followed by a read that returns data or EOF.
import ctypes
import select
import socket
import sys
import threading
import time

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 50
MODE_SHM = 2


class Stats(ctypes.Structure):  # struct nearsock_conn_stats (include/nearsock/nearsock.h)
    _fields_ = [("mode", ctypes.c_uint32), ("reserved", ctypes.c_uint32)] + [
        (n, ctypes.c_uint64) for n in ("tx_shm_bytes", "rx_shm_bytes", "tx_tcp_bytes",
                                       "rx_tcp_bytes", "tx_shm_msgs", "rx_shm_msgs",
                                       "wakeups_sent")]


def fd_mode(fd):
    try:
        f = ctypes.CDLL(None).nearsock_fd_stats
    except AttributeError:
        return -1  # not preloaded
    st = Stats()
    return st.mode if f(fd, ctypes.byref(st)) == 0 else -1


def server(ls, n):
    for _ in range(n):
        time.sleep(0.01)  # the client is asleep in epoll_wait when the claim happens
        c, _ = ls.accept()
        time.sleep(0.01)
        c.sendall(b"x" * 100)
        c.close()


def main():
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(64)
    port = ls.getsockname()[1]
    t = threading.Thread(target=server, args=(ls, ROUNDS), daemon=True)
    t.start()
    spurious = 0
    upgraded = 0
    for _ in range(ROUNDS):
        c = socket.create_connection(("127.0.0.1", port))
        c.setblocking(False)
        ep = select.epoll()
        ep.register(c.fileno(), select.EPOLLIN)
        got = b""
        deadline = time.time() + 5
        while True:
            if time.time() > deadline:
                print("FAIL: no EOF within 5 s, got %d bytes" % len(got))
                return 1
            ev = ep.poll(1.0)
            if not ev:
                continue
            try:
                d = c.recv(65536)
            except BlockingIOError:
                spurious += 1
                continue
            if not d:
                break
            got += d
        upgraded += fd_mode(c.fileno()) == MODE_SHM
        ep.close()
        c.close()
        if got != b"x" * 100:
            print("FAIL: received %r" % got[:200])
            return 1
    print("rounds=%d upgraded=%d spurious_epollin=%d" % (ROUNDS, upgraded, spurious))
    # (under heavy load an offer may still be queued when the server has already closed)
    if upgraded < ROUNDS * 8 // 10:
        print("FAIL: only %d of %d connections moved to shared memory: the case was not "
              "exercised" % (upgraded, ROUNDS))
        return 1
    if spurious:
        print("FAIL: %d EPOLLIN reports were followed by EAGAIN" % spurious)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
