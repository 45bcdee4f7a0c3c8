#!/usr/bin/env python3
"""The official Anthropic Python SDK's worker loop against a worklease server over HTTPS
(docs/tls.md), trusting a private CA, and a certificate rotated under it.

Usage, with a TLS server running (`--tls-cert`, `--tls-key`) and its CA at hand:

    pip install anthropic
    WORKLEASE_TOKEN=secret python3 scripts/sdk_tls.py https://127.0.0.1:8443 --ca ca.pem

or, making a CA and a server certificate with the `openssl` command in a temporary
directory, starting the server on a free port with them, and stopping it at the end (this
mode also rotates the certificate while the worker holds its lease):

    python3 scripts/sdk_tls.py --spawn PATH/TO/worklease-server [--server-arg=ARG ...]

Only the SDK's public API: `anthropic.Anthropic` with `http_client=anthropic.DefaultHttpxClient(
verify=ssl.create_default_context(cafile=CA))`, `client.beta.environments` for the worker loop
(poll, ack, heartbeats, stop), and `client.post` for the one call the SDK has no method for
(creating a work item). Exits non-zero on the first unexpected answer.
"""

import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from urllib.parse import urlsplit

import anthropic
from anthropic.types.beta.environments import BetaSelfHostedWork


def check(condition, message):
    if not condition:
        sys.exit(f"FAILED: {message}")
    print(f"ok: {message}")


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(directory):
    """A private CA, as docs/tls.md makes one: ca.pem and ca.key in `directory`."""
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-days", "3650", "-subj", "/CN=worklease sdk_tls CA", "-keyout", "ca.key", "-out", "ca.pem",
        cwd=directory,
    )


def issue(directory, name):
    """A server certificate for 127.0.0.1 and localhost signed by the CA: NAME.pem, NAME.key."""
    with open(os.path.join(directory, "san.ext"), "w") as ext:
        ext.write("subjectAltName = IP:127.0.0.1, DNS:localhost\nextendedKeyUsage = serverAuth\n")
    openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-subj", "/CN=worklease", "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=directory,
    )
    openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "30", "-extfile", "san.ext", "-out", f"{name}.pem",
        cwd=directory,
    )


def der(path):
    """The DER bytes of the PEM certificate at `path`."""
    with open(path) as pem:
        return ssl.PEM_cert_to_DER_cert(pem.read())


def served(base_url, ca):
    """The DER certificate a new handshake with the server gets."""
    url = urlsplit(base_url)
    context = ssl.create_default_context(cafile=ca)
    with socket.create_connection((url.hostname, url.port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=url.hostname) as tls:
            return tls.getpeercert(binary_form=True)


def client_for(base_url, token, ca):
    return anthropic.Anthropic(
        base_url=base_url,
        api_key=token,
        max_retries=0,
        http_client=anthropic.DefaultHttpxClient(verify=ssl.create_default_context(cafile=ca)),
    )


def worker_loop(client, label):
    """Creates an environment and two work items, then works them as a worker does: poll,
    ack, heartbeats echoing the token, stop, confirming stop. Returns the environment and a
    leased item for the caller to keep renewing."""
    environments = client.beta.environments
    work = environments.work
    env = environments.create(name=f"sdk-tls-{label}", config={"type": "self_hosted"})
    check(env.id.startswith("env_"), f"environments.create over HTTPS -> {env.id}")
    for session in ("sess_tls1", "sess_tls2"):
        created = client.post(
            f"/v1/environments/{env.id}/work",
            body={"data": {"type": "session", "id": session}},
            cast_to=BetaSelfHostedWork,
        )
        check(created.state == "queued", f"create work (client.post) -> {created.id}")

    item = work.poll(env.id, block_ms=500, anthropic_worker_id="sdk-tls-worker")
    check(item is not None, "work.poll delivers a queued item")
    acked = work.ack(item.id, environment_id=env.id, extra_headers={"anthropic-worker-id": "sdk-tls-worker"})
    check(acked.state == "starting", "work.ack -> starting")
    beat = work.heartbeat(item.id, environment_id=env.id, expected_last_heartbeat="NO_HEARTBEAT")
    check(beat.state == "active" and beat.lease_extended, "work.heartbeat NO_HEARTBEAT -> active")
    token = beat.last_heartbeat
    for _ in range(3):
        beat = work.heartbeat(item.id, environment_id=env.id, expected_last_heartbeat=token)
        check(beat.last_heartbeat > token, "work.heartbeat echoing the token renews the lease")
        token = beat.last_heartbeat
    check(work.stop(item.id, environment_id=env.id).state == "stopping", "work.stop -> stopping")
    check(work.stop(item.id, environment_id=env.id).state == "stopped", "work.stop again -> stopped")

    leased = work.poll(env.id, block_ms=500, anthropic_worker_id="sdk-tls-worker")
    check(leased is not None, "work.poll delivers the second item")
    work.ack(leased.id, environment_id=env.id, extra_headers={"anthropic-worker-id": "sdk-tls-worker"})
    first = work.heartbeat(leased.id, environment_id=env.id, expected_last_heartbeat="NO_HEARTBEAT")
    return env.id, leased.id, first.last_heartbeat


def refusals(base_url, token):
    """Without the CA, or over plain HTTP, the SDK gets no answer."""
    try:
        anthropic.Anthropic(base_url=base_url, api_key=token, max_retries=0).beta.environments.list()
        check(False, "a client without the CA must be refused")
    except anthropic.APIConnectionError as error:
        check("CERTIFICATE_VERIFY_FAILED" in repr(error.__cause__), "a client without the CA -> APIConnectionError (certificate verify failed)")
    plain = base_url.replace("https://", "http://", 1)
    try:
        anthropic.Anthropic(base_url=plain, api_key=token, max_retries=0).beta.environments.list()
        check(False, "plain HTTP must get no answer")
    except anthropic.APIConnectionError:
        check(True, "plain HTTP to the TLS port -> APIConnectionError")


def against(base_url, token, ca):
    check(base_url.startswith("https://"), f"the server serves HTTPS ({base_url})")
    refusals(base_url, token)
    client = client_for(base_url, token, ca)
    worker_loop(client, "run")
    print("the SDK's worker loop ran over HTTPS")


def spawned(binary, server_args):
    directory = tempfile.mkdtemp(prefix="worklease-sdk-tls-")
    token = "sdk-tls-token"
    server = None
    try:
        make_ca(directory)
        issue(directory, "first")
        cert, key = os.path.join(directory, "server.pem"), os.path.join(directory, "server.key")
        shutil.copy(os.path.join(directory, "first.pem"), cert)
        shutil.copy(os.path.join(directory, "first.key"), key)
        ca = os.path.join(directory, "ca.pem")
        env = {k: v for k, v in os.environ.items() if not k.startswith("WORKLEASE_")}
        server = subprocess.Popen(
            [binary, "--listen", "127.0.0.1:0", "--token", token, "--tls-cert", cert, "--tls-key", key, *server_args],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True,
        )
        first = server.stdout.readline().strip()
        if not first.startswith("listening on "):
            sys.exit(f"FAILED: the server said {first!r}")
        base_url = first.removeprefix("listening on ")
        against(base_url, token, ca)

        # Rotation: the worker keeps renewing its lease on its open connection while the
        # files are replaced; new handshakes then get the new certificate.
        client = client_for(base_url, token, ca)
        env_id, work_id, held = worker_loop(client, "rotation")
        work = client.beta.environments.work
        check(served(base_url, ca) == der(os.path.join(directory, "first.pem")), "the first certificate is served")
        issue(directory, "second")
        for name, path in (("second.key", key), ("second.pem", cert)):
            shutil.copy(os.path.join(directory, name), path + ".new")
            os.replace(path + ".new", path)
        expected = der(os.path.join(directory, "second.pem"))
        deadline = time.monotonic() + 5
        while served(base_url, ca) != expected and time.monotonic() < deadline:
            held = work.heartbeat(work_id, environment_id=env_id, expected_last_heartbeat=held).last_heartbeat
            time.sleep(0.2)
        check(served(base_url, ca) == expected, "after the files are replaced, new handshakes get the new certificate")
        beat = work.heartbeat(work_id, environment_id=env_id, expected_last_heartbeat=held)
        check(beat.last_heartbeat > held, "the worker's lease renews across the rotation")
        check(work.stop(work_id, environment_id=env_id).state == "stopping", "work.stop after the rotation")
        fresh = client_for(base_url, token, ca)
        check(fresh.beta.environments.work.stop(work_id, environment_id=env_id).state == "stopped", "a new client (new handshake) confirms the stop")
        print("all SDK calls over HTTPS behaved as documented")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        shutil.rmtree(directory, ignore_errors=True)


def main():
    args = sys.argv[1:]
    if len(args) >= 2 and args[0] == "--spawn":
        unknown = [arg for arg in args[2:] if not arg.startswith("--server-arg=")]
        if unknown:
            sys.exit(f"unknown arguments {unknown!r}: only --server-arg=ARG may follow --spawn")
        return spawned(args[1], [arg.removeprefix("--server-arg=") for arg in args[2:]])
    if len(args) == 3 and args[1] == "--ca":
        return against(args[0], os.environ["WORKLEASE_TOKEN"], args[2])
    sys.exit(__doc__)


if __name__ == "__main__":
    main()
