#!/usr/bin/env python3
"""Bench setup for scripts/credentials-bench.sh.

    python3 scripts/bench_credentials.py ADDRESS TOKEN ITEMS > ids

One environment, an environment key, and ITEMS items polled with the key (each with its
secret) and acked; prints the environment id, the admin token, the key, then one
"work_id sessions_token" per line.
"""
import base64, http.client, json, sys
address, token, items = sys.argv[1], sys.argv[2], int(sys.argv[3])
connection = http.client.HTTPConnection(address)
def call(method, path, bearer, body=None, headers=None):
    headers = {"Authorization": f"Bearer {bearer}", "content-type": "application/json", **(headers or {})}
    connection.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    response = connection.getresponse()
    data = response.read()
    if response.status != 200:
        sys.exit(f"{method} {path}: {response.status} {data!r}")
    return json.loads(data)
env = call("POST", "/v1/environments", token, {"name": "bench"})["id"]
key = call("POST", f"/v1/environments/{env}/keys", token, {})["key"]
print(env)
print(token)
print(key)
base = f"/v1/environments/{env}/work"
for i in range(items):
    call("POST", base, token, {"data": {"type": "session", "id": f"sess_bench{i}"}})
for i in range(items):
    item = call("GET", f"{base}/poll", key, headers={"Worker-ID": "bench"})
    secret = item["secret"]
    sessions_token = json.loads(base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4)))["sessions_token"]
    call("POST", f"{base}/{item['id']}/ack", key, headers={"Worker-ID": "bench"})
    print(item["id"], sessions_token)
