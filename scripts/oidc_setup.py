"""Sets up the OpenID Connect phases of scripts/load: two confidential clients that may use
client credentials, one signing with an RSA key (RS256) and one with the managed key (ES256), and
for the refresh phase one refresh token per connection, each from a complete code-with-PKCE sign-in
of the benchmark account. Writes what wrk needs into the directory given.

    python3 scripts/oidc_setup.py BASE ADMIN_KEY ACCOUNT PASSWORD OUT_DIR CONNECTIONS
"""
import base64
import hashlib
import http.cookiejar
import json
import os
import secrets
import sys
import urllib.parse
import urllib.request

base, admin_key, account, password, out, connections = sys.argv[1:7]
connections = int(connections)
CALLBACK = "https://bench.example/callback"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def api(method, path, body=None):
    request = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"Bearer {admin_key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read() or b"null")


def client(name, slug, signing_key):
    implicit = api("GET", "/api/v3/flows/instances/default-provider-authorization-implicit-consent/")["pk"]
    invalidation = api("GET", "/api/v3/flows/instances/default-invalidation-flow/")["pk"]
    provider = api("POST", "/api/v3/providers/oauth2/", {
        "name": name, "authorization_flow": implicit, "invalidation_flow": invalidation, "client_type": "confidential",
        "grant_types": ["authorization_code", "refresh_token", "client_credentials"], "signing_key": signing_key,
        "redirect_uris": [{"matching_mode": "strict", "url": CALLBACK}]})
    api("POST", "/api/v3/core/applications/", {"name": name, "slug": slug, "provider": provider["pk"]})
    return provider["client_id"], provider["client_secret"]


def basic(client_id, secret):
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def token(form, credentials):
    request = urllib.request.Request(base + "/application/o/token/", data=urllib.parse.urlencode(form).encode(),
                                     headers={"Authorization": basic(*credentials), "Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


rsa = api("POST", "/api/v3/crypto/certificatekeypairs/generate/", {"common_name": "load-rs256", "validity_days": 30, "alg": "rsa"})
rs256 = client("bench RS256", "bench-rs256", rsa["pk"])
es256 = client("bench ES256", "bench-es256", None)

# The benchmark account signs in once; each connection's refresh token comes from its own code.
jar = http.cookiejar.CookieJar()
browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)
sign_in = urllib.request.Request(base + "/api/v3/auth/sign_in/", data=json.dumps({"email": account, "password": password}).encode(),
                                 headers={"Content-Type": "application/json"})
browser.open(sign_in).read()
refresh_tokens, access_token = [], None
for _ in range(connections):
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = urllib.parse.urlencode({"client_id": es256[0], "response_type": "code", "redirect_uri": CALLBACK,
                                    "scope": "openid offline_access", "code_challenge": challenge, "code_challenge_method": "S256"})
    try:
        browser.open(base + "/application/o/authorize/?" + query)
        raise SystemExit("authorize did not redirect")
    except urllib.error.HTTPError as answer:
        location = answer.headers["Location"]
    code = urllib.parse.parse_qs(urllib.parse.urlparse(location).query)["code"][0]
    tokens = token({"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK, "code_verifier": verifier}, es256)
    refresh_tokens.append(tokens["refresh_token"])
    access_token = tokens["access_token"]

os.makedirs(out, exist_ok=True)
for name, value in {"rs256.auth": basic(*rs256), "es256.auth": basic(*es256), "access_token": access_token}.items():
    with open(os.path.join(out, name), "w") as file:
        file.write(value)
with open(os.path.join(out, "refresh_tokens"), "w") as file:
    file.write("\n".join(refresh_tokens) + "\n")
