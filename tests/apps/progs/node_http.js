// SPDX-License-Identifier: MIT
// node_http.js server PORT | client PORT REQUESTS BYTES - node's http module. The server
// answers POST with the request body's sha256 and GET /blob with BYTES pseudo-random bytes
// (seeded, so the client knows them). The client sends REQUESTS POSTs of 1..64 KiB over a
// keep-alive agent (4 sockets), checks every answer, then GETs /blob and checks its sha256;
// prints "ok REQUESTS BLOB-SHA256".
'use strict';
const http = require('http');
const crypto = require('crypto');

function blob(n) { // deterministic pseudo-random bytes (xorshift32)
  const w = new Uint32Array(Math.ceil(n / 4));
  let x = 2463534242;
  for (let i = 0; i < w.length; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    w[i] = x;
  }
  return Buffer.from(w.buffer, 0, n);
}

const [mode, port] = [process.argv[2], Number(process.argv[3])];
if (mode === 'server') {
  const big = blob(Number(process.argv[4] || 16 << 20));
  http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/blob') {
      res.writeHead(200, {'Content-Length': big.length});
      res.end(big);
      return;
    }
    const h = crypto.createHash('sha256');
    req.on('data', (d) => h.update(d));
    req.on('end', () => res.end(h.digest('hex')));
  }).listen(port, '127.0.0.1');
} else {
  const n = Number(process.argv[4]), bytes = Number(process.argv[5]);
  const agent = new http.Agent({keepAlive: true, maxSockets: 4});
  const post = (body) => new Promise((resolve, reject) => {
    const req = http.request({port, host: '127.0.0.1', method: 'POST', path: '/', agent,
                              headers: {'Content-Length': body.length}}, (res) => {
      let s = '';
      res.on('data', (d) => s += d);
      res.on('end', () => resolve(s));
    });
    req.on('error', reject);
    req.end(body);
  });
  const get = () => new Promise((resolve, reject) => {
    http.get({port, host: '127.0.0.1', path: '/blob', agent}, (res) => {
      const h = crypto.createHash('sha256');
      let len = 0;
      res.on('data', (d) => { h.update(d); len += d.length; });
      res.on('end', () => resolve([len, h.digest('hex')]));
    }).on('error', reject);
  });
  (async () => {
    let seed = 0, inflight = [];
    for (let i = 0; i < n; i++) {
      const body = crypto.createHash('sha512').update(String(seed++)).digest();
      const size = 1 + (body.readUInt32LE(0) % 65536);
      const b = Buffer.alloc(size, body);
      const want = crypto.createHash('sha256').update(b).digest('hex');
      inflight.push(post(b).then((got) => {
        if (got !== want) throw new Error(`request ${i}: answer ${got}, expected ${want}`);
      }));
      if (inflight.length === 8) { await Promise.all(inflight); inflight = []; }
    }
    await Promise.all(inflight);
    const [len, sum] = await get();
    if (len !== bytes) throw new Error(`blob: ${len} bytes, expected ${bytes}`);
    const want = crypto.createHash('sha256').update(blob(bytes)).digest('hex');
    if (sum !== want) throw new Error('blob: wrong sha256');
    console.log(`ok ${n} ${sum}`);
    agent.destroy();
  })().catch((e) => { console.error(e.message); process.exit(1); });
}
