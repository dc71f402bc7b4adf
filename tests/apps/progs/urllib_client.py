# SPDX-License-Identifier: MIT
# urllib_client.py URL COUNT - fetch URL COUNT times (a new connection each time, as urllib
# does); print the sha256 of every body, one line each.
import hashlib
import sys
import urllib.request

url, count = sys.argv[1], int(sys.argv[2])
for _ in range(count):
    with urllib.request.urlopen(url, timeout=30) as r:
        if r.status != 200:
            sys.exit("HTTP status %d" % r.status)
        print(hashlib.sha256(r.read()).hexdigest())
