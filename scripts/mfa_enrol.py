#!/usr/bin/env python3
"""Sets up an authenticator app for each benchmark account through the flow executor, as a
person would (sign in, default-authenticator-setup: the app, then recovery codes), then writes
the codes the accounts' apps show for the next two time steps, one "email code" pair per line,
for scripts/mfa_sign_in.lua (see scripts/load).

Each app code signs in once per time step and device, so every sign-in of the benchmark needs
its own (account, step) pair: the file holds two per account, usable for about 30 seconds once
this script waits for a step to begin.

    scripts/mfa_enrol.py BASE PASSWORD OUT EMAIL...
"""

import base64
import concurrent.futures
import hashlib
import hmac
import http.cookiejar
import json
import struct
import sys
import time
import urllib.parse
import urllib.request

STEP = 30


def totp(secret_base32: str, step: int, digits: int = 6) -> str:
    """RFC 6238 with HMAC-SHA-1, as an authenticator app computes it."""
    key = base64.b32decode(secret_base32 + "=" * (-len(secret_base32) % 8))
    mac = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


class Person:
    """A browser: cookies, and the CSRF header its session needs."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        headers = {"Content-Type": "application/json"}
        csrf = next((c.value for c in self.jar if c.name.endswith("gatehouse_csrf")), None)
        if csrf:
            headers["X-CSRFToken"] = csrf
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        with self.opener.open(request, timeout=60) as response:
            return json.loads(response.read())


def enrol(base: str, password: str, email: str) -> tuple[str, str]:
    person = Person(base)
    sign_in = "/api/v3/flows/executor/default-authentication-flow/"
    person.call("GET", sign_in)
    person.call("POST", sign_in, {"component": "ak-stage-identification", "uid_field": email})
    done = person.call("POST", sign_in, {"component": "ak-stage-password", "password": password})
    assert done.get("component") == "xak-flow-redirect", f"{email}: sign-in ended with {done}"
    setup = "/api/v3/flows/executor/default-authenticator-setup/"
    challenge = person.call("GET", setup)
    assert challenge.get("component") == "ak-stage-authenticator-totp", f"{email}: {challenge}"
    query = urllib.parse.parse_qs(urllib.parse.urlparse(challenge["config_url"]).query)
    secret = query["secret"][0]
    codes = person.call("POST", setup, {"component": "ak-stage-authenticator-totp", "code": totp(secret, int(time.time()) // STEP)})
    assert codes.get("component") == "ak-stage-authenticator-static", f"{email}: {codes}"
    done = person.call("POST", setup, {"component": "ak-stage-authenticator-static"})
    assert done.get("component") == "xak-flow-redirect", f"{email}: setup ended with {done}"
    return email, secret


def main() -> None:
    base, password, out, *emails = sys.argv[1:]
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        secrets = list(pool.map(lambda email: enrol(base, password, email), emails))
    # Wait for a step to begin: the devices' confirming codes are of earlier steps, and the codes
    # of this step and the next are then accepted for the whole step.
    time.sleep(STEP - time.time() % STEP + 0.5)
    step = int(time.time()) // STEP
    with open(out, "w") as lines:
        for offset in (0, 1):
            for email, secret in secrets:
                lines.write(f"{email} {totp(secret, step + offset)}\n")
    print(f"{len(secrets)} authenticator apps set up; {2 * len(secrets)} codes for steps {step} and {step + 1}")


if __name__ == "__main__":
    main()
