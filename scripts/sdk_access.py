#!/usr/bin/env python3
"""The official Anthropic Python SDK with the server's three client credentials
(docs/security.md): an admin token for management, an environment key for the runner, and
each polled item's `secret` for that item alone.

Needs `anthropic` >= 2.10.0 (the first release whose `client.beta.environments.work.poller`
takes `environment_key`); .ci/run runs it against the newest release. Only the SDK's public
API is used; the poll `secret` is decoded as the SDK documents it (URL-safe base64 of JSON
with a `sessions_token`).

    python3 scripts/sdk_access.py --spawn PATH/TO/worklease-server

starts the server on a free port with an admin token and stops it at the end. Checks:

- `poller(environment_id=…, environment_key=…)` claims (polls and acks) every queued item
  with the environment key;
- heartbeats with the `sessions_token` decoded from an item's `secret` succeed, and a
  force-stop with it stops the item;
- the same `sessions_token` on another item is refused (403), and so is the environment
  key on `work.retrieve` (an admin route);
- a revoked key is refused (401).

Exits non-zero on the first unexpected answer.
"""

import asyncio
import base64
import json
import os
import subprocess
import sys

import anthropic

ADMIN_TOKEN = "sdk-access-admin-token"


def check(condition, message):
    if not condition:
        sys.exit(f"FAILED: {message}")
    print(f"ok: {message}")


def sessions_token(secret):
    """What the SDK's worker does with a polled item's `secret`."""
    payload = json.loads(base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4)))
    return payload["sessions_token"]


def refused(call, error, message):
    try:
        call()
    except error:
        check(True, message)
        return
    except anthropic.APIStatusError as other:
        sys.exit(f"FAILED: {message}: answered {other.status_code}")
    sys.exit(f"FAILED: {message}: accepted")


def client(base_url, bearer):
    return anthropic.Anthropic(base_url=base_url, auth_token=bearer, api_key=None, max_retries=0)


async def claim_with_key(base_url, environment_id, key):
    """Every queued item, claimed by the SDK's poller with the environment key."""
    runner = anthropic.AsyncAnthropic(base_url=base_url, auth_token="not-a-credential", api_key=None, max_retries=0)
    claimed = []
    poller = runner.beta.environments.work.poller(
        environment_id=environment_id,
        environment_key=key,
        drain=True,
        auto_stop=False,
        block_ms=None,
    )
    async for item in poller:
        claimed.append(item)
    return claimed


def run(base_url):
    admin = client(base_url, ADMIN_TOKEN)
    env = admin.beta.environments.create(name="sdk-access", config={"type": "self_hosted"})
    created = admin.post(f"/v1/environments/{env.id}/keys", body={"name": "runner"}, cast_to=object)
    key, key_id = created["key"], created["id"]
    check(key.startswith("wlk_"), f"an environment key {key_id} created with the admin token")
    for n in range(2):
        admin.post(
            f"/v1/environments/{env.id}/work",
            body={"data": {"type": "session", "id": f"sess_access{n}"}},
            cast_to=object,
        )

    claimed = asyncio.run(claim_with_key(base_url, env.id, key))
    check(len(claimed) == 2, f"poller(environment_key=…) claimed {len(claimed)} items")
    states = {admin.beta.environments.work.retrieve(item.id, environment_id=env.id).state for item in claimed}
    check(states == {"starting"}, f"each claimed item was acked by the poller with the key: {sorted(states)}")
    first, second = claimed
    tokens = {item.id: sessions_token(item.secret) for item in claimed}

    first_client = client(base_url, tokens[first.id])
    beat = first_client.beta.environments.work.heartbeat(first.id, environment_id=env.id)
    check(beat.lease_extended and beat.state == "active", "a heartbeat with the item's sessions_token")
    again = first_client.beta.environments.work.heartbeat(
        first.id, environment_id=env.id, expected_last_heartbeat=beat.last_heartbeat
    )
    check(again.lease_extended, "a second heartbeat with it, conditional on the first")
    refused(
        lambda: first_client.beta.environments.work.heartbeat(second.id, environment_id=env.id),
        anthropic.PermissionDeniedError,
        "the same sessions_token on another item is refused (403)",
    )
    refused(
        lambda: first_client.beta.environments.work.stop(second.id, environment_id=env.id, force=True),
        anthropic.PermissionDeniedError,
        "its stop of another item is refused (403)",
    )
    stopped = first_client.beta.environments.work.stop(first.id, environment_id=env.id, force=True)
    check(stopped.state == "stopped", "a force-stop with the item's sessions_token")
    second_stop = client(base_url, tokens[second.id]).beta.environments.work.stop(
        second.id, environment_id=env.id, force=True
    )
    check(second_stop.state == "stopped", "the other item stopped with its own sessions_token")

    runner = client(base_url, key)
    refused(
        lambda: runner.beta.environments.work.retrieve(first.id, environment_id=env.id),
        anthropic.PermissionDeniedError,
        "the environment key cannot retrieve work (403)",
    )
    admin.delete(f"/v1/environments/{env.id}/keys/{key_id}", cast_to=object)
    refused(
        lambda: runner.beta.environments.work.poll(environment_id=env.id),
        anthropic.AuthenticationError,
        "a revoked key is refused (401)",
    )


def main():
    if len(sys.argv) != 3 or sys.argv[1] != "--spawn":
        sys.exit("usage: sdk_access.py --spawn PATH/TO/worklease-server")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKLEASE_")}
    server = subprocess.Popen(
        [sys.argv[2], "--listen", "127.0.0.1:0", "--token", ADMIN_TOKEN],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True,
    )
    try:
        first = server.stdout.readline().strip()
        if not first.startswith("listening on "):
            sys.exit(f"FAILED: the server said {first!r}")
        print("anthropic", anthropic.__version__)
        run(first.removeprefix("listening on "))
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
