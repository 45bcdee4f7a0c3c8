#!/usr/bin/env python3
"""Bench setup for scripts/service-bench.sh and scripts/durable-bench.sh.

    python3 scripts/bench_items.py ADDRESS TOKEN ITEMS [CA] > ids

One environment and ITEMS acked items; prints the environment id, then the work ids. With CA
(a PEM file), over HTTPS trusting that CA.
"""
import http.client, json, ssl, sys
address, token, items = sys.argv[1], sys.argv[2], int(sys.argv[3])
if len(sys.argv) > 4:
    connection = http.client.HTTPSConnection(address, context=ssl.create_default_context(cafile=sys.argv[4]))
else:
    connection = http.client.HTTPConnection(address)
def call(method, path, body=None, headers=None):
    headers = {"Authorization": f"Bearer {token}", "content-type": "application/json", **(headers or {})}
    connection.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = connection.getresponse()
    data = response.read()
    if response.status != 200:
        sys.exit(f"{method} {path}: {response.status} {data!r}")
    return json.loads(data)
env = call("POST", "/v1/environments", {"name": "bench", "config": {"type": "self_hosted"}})["id"]
print(env)
base = f"/v1/environments/{env}/work"
for i in range(items):
    call("POST", base, {"data": {"type": "session", "id": f"sess_bench{i}"}})
for i in range(items):
    work = call("GET", f"{base}/poll", headers={"Worker-ID": "bench"})["id"]
    call("POST", f"{base}/{work}/ack", headers={"Worker-ID": "bench"})
    print(work)
