# SPDX-License-Identifier: MIT
# asyncio_echo.py server PORT | client PORT CONNS BYTES SEED - asyncio streams echo. The
# server echoes every byte back; the client runs CONNS connections at once, each writing
# BYTES pseudo-random bytes (chunk sizes 1 B .. 64 KiB) while reading the echo, and prints
# one line per connection: "sent-sha256 received-sha256 bytes".
import asyncio
import hashlib
import random
import sys


async def serve(port):
    async def echo(reader, writer):
        while True:
            d = await reader.read(65536)
            if not d:
                break
            writer.write(d)
            await writer.drain()
        writer.close()
        await writer.wait_closed()

    srv = await asyncio.start_server(echo, "127.0.0.1", port)
    async with srv:
        await srv.serve_forever()


async def one(port, nbytes, seed):
    rnd = random.Random(seed)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sent, got = hashlib.sha256(), hashlib.sha256()

    async def send():
        left = nbytes
        while left:
            n = min(left, rnd.choice((1, 7, 100, 1460, 4096, 65536)))
            d = rnd.randbytes(n)
            sent.update(d)
            writer.write(d)
            await writer.drain()
            left -= n
        writer.write_eof()

    async def recv():
        total = 0
        while True:
            d = await reader.read(65536)
            if not d:
                return total
            got.update(d)
            total += len(d)

    _, total = await asyncio.gather(send(), recv())
    writer.close()
    return "%s %s %d" % (sent.hexdigest(), got.hexdigest(), total)


async def client(port, conns, nbytes, seed):
    res = await asyncio.gather(*(one(port, nbytes, seed + i) for i in range(conns)))
    print("\n".join(res))


if sys.argv[1] == "server":
    asyncio.run(serve(int(sys.argv[2])))
else:
    asyncio.run(client(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])))
