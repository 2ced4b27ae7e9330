#!/usr/bin/env python3
"""Compatibility checks: authentik's official Python client (authentik-client) against Gatehouse.

Reads GATEHOUSE_URL (e.g. http://127.0.0.1:9000) and GATEHOUSE_API_KEY (a superuser's API key)
from the environment and drives every operation Gatehouse implements under /api/v3/ through the
client's typed methods. A check passes when the typed call returns without an exception and the
typed object it returns holds what was sent. Each failure is printed on one line, then one
summary line `N passed, M failed`; the exit status is 1 when a check failed or none ran.

Around the typed calls, state is set up and verified with the client's `*_without_preload_content`
variants (the client builds and sends the request, the body is read as plain JSON). That keeps
one failing typed call from hiding the checks after it, and lets the effect of actions that
return nothing (add_user, set_key, send, ...) be verified independently of other typed models.

The flow executor's answers are read with the client's model for the challenge's `component`
(IdentificationChallenge, PasswordChallenge, RedirectChallenge, ...), as authentik's own frontends
do: the typed flows_executor_get/solve cannot read any challenge from any server, because several
of ChallengeTypes' oneOf schemas have no required field and match every object ("Multiple
matches found").

Gatehouse's operations that authentik-client 2026.8.5 has no method for (tokens `rotate/`,
sessions `revoke_others/`, flows `import/`) go through the client's own request machinery
(`ApiClient.param_serialize`, `call_api`, `response_deserialize`) with the same authentication.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import re
import secrets
import socketserver
import string
import sys
import threading
import urllib.parse
import zlib
from http.cookies import SimpleCookie
from typing import Any, Callable

import pydantic
import pyotp

import authentik_client as ak
from authentik_client.exceptions import ApiException, BadRequestException, ForbiddenException

DETAIL_LIMIT = 300


# ---------------------------------------------------------------------------------------------
# Running checks


class Checks:
    def __init__(self) -> None:
        self.passed: list[str] = []
        self.failed: list[tuple[str, str]] = []

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        """Runs one check; returns what `fn` returned, or None when it failed."""
        try:
            result = fn()
        except Exception as error:  # every failure is reported, none stops the run
            self.failed.append((name, describe(error)))
            return None
        self.passed.append(name)
        return result

    def report(self) -> int:
        if os.environ.get("COMPAT_VERBOSE"):
            for name in self.passed:
                print(f"ok   {name}")
        for name, detail in self.failed:
            print(f"FAIL {name}: {detail}")
        print(f"{len(self.passed)} passed, {len(self.failed)} failed")
        return 1 if self.failed or not self.passed else 0


def one_line(text: str, limit: int = DETAIL_LIMIT) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[:limit] + "..."


def describe(error: Exception) -> str:
    if isinstance(error, ApiException):
        body = error.body if isinstance(error.body, str) else repr(error.body)
        return f"{type(error).__name__}: HTTP {error.status} {error.reason}: {one_line(body or '')}"
    if isinstance(error, pydantic.ValidationError):
        parts = []
        for item in error.errors():
            location = ".".join(str(p) for p in item["loc"]) or "(root)"
            shown = one_line(repr(item.get("input")), 60)
            parts.append(f"{location}: {item['msg']} (got {shown})")
        return one_line(f"ValidationError in {error.title}: " + "; ".join(parts), 2 * DETAIL_LIMIT)
    if isinstance(error, AssertionError):
        return one_line(f"AssertionError: {error}")
    return one_line(f"{type(error).__name__}: {error}")


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def expect_raises(exception: type[Exception], fn: Callable[[], Any]) -> Exception:
    try:
        result = fn()
    except exception as error:
        return error
    raise AssertionError(f"expected {exception.__name__}, the call returned {one_line(repr(result), 120)}")


# ---------------------------------------------------------------------------------------------
# Plumbing around the typed calls


def raw(method: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[int, Any]:
    """The `*_without_preload_content` variant of a typed client method: status and JSON body."""
    variant = getattr(method.__self__, method.__name__ + "_without_preload_content")
    response = variant(*args, **kwargs)
    data = response.data
    try:
        return response.status, json.loads(data) if data else None
    except ValueError:
        return response.status, data


def raw_ok(method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    status, body = raw(method, *args, **kwargs)
    if not 200 <= status < 300:
        raise AssertionError(f"setup call {method.__name__} answered {status}: {one_line(str(body), 200)}")
    return body


def find_one(method: Callable[..., Any], key: str, **filters: Any) -> Any:
    """`key` of the single list result matching `filters`, read without the typed model."""
    body = raw_ok(method, **filters)
    results = body.get("results", []) if isinstance(body, dict) else []
    if len(results) != 1:
        raise AssertionError(f"setup: {method.__name__}({filters}) found {len(results)} results")
    return results[0][key]


def untyped(api_client: ak.ApiClient, method: str, path: str, *, path_params: dict | None = None,
            body: Any = None, files: dict | None = None, post_params: list | None = None,
            types: dict[str, str] | None = None) -> Any:
    """An operation the client has no method for, through the client's own request machinery."""
    headers = {"Accept": "application/json"}
    if files or post_params:
        headers["Content-Type"] = "multipart/form-data"
    elif body is not None:
        headers["Content-Type"] = "application/json"
    serialized = api_client.param_serialize(
        method=method, resource_path=path, path_params=path_params, header_params=headers, body=body,
        post_params=post_params, files=files, auth_settings=["authentik"])
    response = api_client.call_api(*serialized)
    response.read()
    return api_client.response_deserialize(response, types or {"200": "object", "204": None}).data


class Browser:
    """A client without an API key that keeps cookies, as a browser signing in would."""

    def __init__(self, url: str) -> None:
        self.api_client = ak.ApiClient(ak.Configuration(host=f"{url}/api/v3"))
        self.cookies: dict[str, str] = {}
        self.core = ak.CoreApi(self.api_client)
        self.flows = ak.FlowsApi(self.api_client)

    def take_cookies(self, headers: Any) -> None:
        if headers is None:
            return
        if hasattr(headers, "getlist"):
            values = headers.getlist("set-cookie")
        else:
            joined = next((v for k, v in headers.items() if k.lower() == "set-cookie"), "")
            values = re.split(r",\s*(?=[A-Za-z0-9_.-]+=)", joined) if joined else []
        for value in values:
            parsed = SimpleCookie()
            parsed.load(value)
            for name, morsel in parsed.items():
                if morsel.value == "" or morsel["max-age"] == "0":
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        self.api_client.cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items()) or None
        if "gatehouse_csrf" in self.cookies:
            self.api_client.set_default_header("X-CSRFToken", self.cookies["gatehouse_csrf"])

    def raw_step(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> dict:
        variant = getattr(method.__self__, method.__name__ + "_without_preload_content")
        response = variant(*args, **kwargs)
        self.take_cookies(response.headers)
        if response.status != 200:
            raise AssertionError(f"setup: {method.__name__} answered {response.status}: {one_line(response.data.decode(), 200)}")
        return json.loads(response.data)


def challenge_request(component: str, **fields: Any) -> ak.FlowChallengeResponseRequest:
    models = {
        "ak-stage-identification": ak.IdentificationChallengeResponseRequest,
        "ak-stage-password": ak.PasswordChallengeResponseRequest,
    }
    return ak.FlowChallengeResponseRequest(models[component](component=component, **fields))


def challenge_models() -> dict[str, type]:
    """The client's challenge models by the `component` each one names."""
    names = ak.ChallengeTypes.model_fields["one_of_schemas"].default
    return {getattr(ak, n).model_fields["component"].default: getattr(ak, n) for n in names}


def challenge_of(body: bytes) -> Any:
    """A challenge read with the client's model for its `component`, as authentik's own
    frontends do. The client's ChallengeTypes cannot read any challenge: several of its oneOf
    schemas (EmailChallenge, IframeLogoutChallenge, NativeLogoutChallenge, ...) have no required
    field and match every object, so it raises "Multiple matches" whatever the server sends."""
    component = json.loads(body).get("component")
    model = challenge_models().get(component)
    expect(model is not None, f"no challenge model in the client for component {component!r}")
    return model.from_json(body.decode())


AUTH_FLOW = "default-authentication-flow"
QUERY = "next=/if/user/"


def sign_in_raw(url: str, uid: str, password: str) -> Browser:
    """Signs in through the default authentication flow, reading the challenges as plain JSON."""
    browser = Browser(url)
    step = browser.raw_step(browser.flows.flows_executor_get, AUTH_FLOW, QUERY)
    expect(step.get("component") == "ak-stage-identification", f"setup: first challenge is {step.get('component')}")
    step = browser.raw_step(browser.flows.flows_executor_solve, AUTH_FLOW, QUERY,
                            challenge_request("ak-stage-identification", uid_field=uid))
    expect(step.get("component") == "ak-stage-password", f"setup: second challenge is {step.get('component')}")
    step = browser.raw_step(browser.flows.flows_executor_solve, AUTH_FLOW, QUERY,
                            challenge_request("ak-stage-password", password=password))
    expect(step.get("component") == "xak-flow-redirect", f"setup: last challenge is {step.get('component')}")
    expect("gatehouse_session" in browser.cookies, "setup: no session cookie after signing in")
    return browser


def gatehouse_key(kind: str = "api") -> str:
    """A fresh key in Gatehouse's format: prefix, 43 random base62 characters, base62 CRC32."""
    alphabet = string.digits + string.ascii_uppercase + string.ascii_lowercase
    head = f"gatehouse_{kind}_" + "".join(secrets.choice(alphabet) for _ in range(43))
    value = zlib.crc32(head.encode())
    digits = []
    for _ in range(6):
        digits.append(alphabet[value % 62])
        value //= 62
    return head + "".join(reversed(digits))


def status_of(method: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    return raw(method, *args, **kwargs)[0]


# ---------------------------------------------------------------------------------------------
# The checks


def run_checks(checks: Checks) -> None:
    url = os.environ["GATEHOUSE_URL"].rstrip("/")
    key = os.environ["GATEHOUSE_API_KEY"]
    api_client = ak.ApiClient(ak.Configuration(host=f"{url}/api/v3", access_token=key))
    core = ak.CoreApi(api_client)
    flows = ak.FlowsApi(api_client)
    stages = ak.StagesApi(api_client)
    events = ak.EventsApi(api_client)
    tasks = ak.TasksApi(api_client)

    run = checks.run
    tag = secrets.token_hex(4)
    now = dt.datetime.now(dt.timezone.utc)

    # --- users -------------------------------------------------------------------------------
    username = f"compat-{tag}-user"
    email = f"compat-{tag}@example.com"
    password = "Compat-" + secrets.token_urlsafe(18)

    def users_create():
        user = core.core_users_create(ak.UserRequest(
            username=username, name="Compat User", email=email, is_active=True, path="users",
            attributes={"compat": tag}))
        expect(user.username == username and user.name == "Compat User" and user.email == email,
               f"created user reads {user.username!r} {user.name!r} {user.email!r}")
        expect((user.attributes or {}).get("compat") == tag, f"attributes {user.attributes!r}")
        return user

    user = run("core_users_create", users_create)
    user_pk = user.pk if user else find_one(core.core_users_list, "pk", username=username)

    def users_list():
        page = core.core_users_list(username=username, ordering="-date_joined")
        expect(page.pagination.count == 1, f"count {page.pagination.count}")
        expect([u.pk for u in page.results] == [user_pk], f"results {[u.pk for u in page.results]}")
        page = core.core_users_list(is_active=True, ordering="username", page_size=100)
        expect(user_pk in [u.pk for u in page.results], "active users lack the created user")

    run("core_users_list", users_list)

    def users_retrieve():
        got = core.core_users_retrieve(user_pk)
        expect(got.pk == user_pk and got.username == username, f"retrieved {got.pk} {got.username!r}")

    run("core_users_retrieve", users_retrieve)

    def users_update():
        got = core.core_users_update(user_pk, ak.UserRequest(
            username=username, name="Compat User Renamed", email=email, is_active=True, path="users"))
        expect(got.name == "Compat User Renamed", f"name {got.name!r}")

    run("core_users_update", users_update)

    def users_partial_update():
        got = core.core_users_partial_update(user_pk, ak.PatchedUserRequest(name="Compat User Patched"))
        expect(got.name == "Compat User Patched" and got.username == username, f"name {got.name!r}")

    run("core_users_partial_update", users_partial_update)

    def users_set_password():
        result = core.core_users_set_password_create(user_pk, ak.UserPasswordSetRequest(password=password))
        expect(result is None, f"returned {result!r}")

    run("core_users_set_password_create", users_set_password)

    def users_me():
        me = core.core_users_me_retrieve()
        expect(me.user.is_superuser, "me.user.is_superuser is false for the superuser key")
        expect(me.user.pk != user_pk, "me is the created user")

    run("core_users_me_retrieve", users_me)

    sa_name = f"compat-{tag}-service"
    sa_pk = None

    def users_service_account():
        nonlocal sa_pk
        got = core.core_users_service_account_create(ak.UserServiceAccountRequest(
            name=sa_name, create_group=True, expiring=True, expires=now + dt.timedelta(days=30)))
        sa_pk = got.user_pk
        expect(got.username == sa_name, f"username {got.username!r}")
        expect(bool(got.token), "no token")
        expect(bool(got.group_pk), "no group although create_group was sent")

    run("core_users_service_account_create", users_service_account)
    if sa_pk is None:
        try:
            sa_pk = find_one(core.core_users_list, "pk", username=sa_name)
        except AssertionError:
            pass

    # --- groups ------------------------------------------------------------------------------
    group_name = f"compat-{tag}-group"

    def groups_create():
        group = core.core_groups_create(ak.GroupRequest(name=group_name, attributes={"compat": tag}))
        expect(group.name == group_name, f"name {group.name!r}")
        expect((group.attributes or {}).get("compat") == tag, f"attributes {group.attributes!r}")
        return group

    group = run("core_groups_create", groups_create)
    group_pk = str(group.pk) if group else find_one(core.core_groups_list, "pk", name=group_name)

    def groups_list():
        page = core.core_groups_list(name=group_name, ordering="name")
        expect(page.pagination.count == 1, f"count {page.pagination.count}")
        expect([str(g.pk) for g in page.results] == [group_pk], f"results {[str(g.pk) for g in page.results]}")

    run("core_groups_list", groups_list)

    def groups_retrieve():
        got = core.core_groups_retrieve(group_pk)
        expect(str(got.pk) == group_pk and got.name == group_name, f"retrieved {got.pk} {got.name!r}")

    run("core_groups_retrieve", groups_retrieve)

    group_name2 = group_name + "-renamed"

    def groups_update():
        got = core.core_groups_update(group_pk, ak.GroupRequest(name=group_name2, attributes={"compat": tag}))
        expect(got.name == group_name2, f"name {got.name!r}")

    run("core_groups_update", groups_update)

    def groups_partial_update():
        got = core.core_groups_partial_update(group_pk, ak.PatchedGroupRequest(attributes={"compat": tag, "patched": True}))
        expect((got.attributes or {}).get("patched") is True, f"attributes {got.attributes!r}")

    run("core_groups_partial_update", groups_partial_update)

    def members() -> list:
        return raw_ok(core.core_groups_retrieve, group_pk).get("users", [])

    def groups_add_user():
        result = core.core_groups_add_user_create(group_pk, ak.UserAccountRequest(pk=user_pk))
        expect(result is None, f"returned {result!r}")
        expect(user_pk in members(), f"group members after add_user: {members()}")

    run("core_groups_add_user_create", groups_add_user)

    def groups_list_members():
        page = core.core_groups_list(members_by_pk=[user_pk], include_users=True, ordering="-name")
        expect(group_pk in [str(g.pk) for g in page.results], "members_by_pk filter lacks the group")

    run("core_groups_list (members_by_pk)", groups_list_members)

    def groups_remove_user():
        result = core.core_groups_remove_user_create(group_pk, ak.UserAccountRequest(pk=user_pk))
        expect(result is None, f"returned {result!r}")
        expect(user_pk not in members(), f"group members after remove_user: {members()}")

    run("core_groups_remove_user_create", groups_remove_user)

    def groups_destroy():
        result = core.core_groups_destroy(group_pk)
        expect(result is None, f"returned {result!r}")
        expect(status_of(core.core_groups_retrieve, group_pk) == 404, "group still retrievable")

    run("core_groups_destroy", groups_destroy)

    # --- tokens ------------------------------------------------------------------------------
    identifier = f"compat-{tag}-token"
    expires = (now + dt.timedelta(days=30)).replace(microsecond=0)

    def tokens_create():
        token = core.core_tokens_create(ak.TokenRequest(
            identifier=identifier, intent=ak.IntentEnum.API, description="compat token",
            expiring=True, expires=expires))
        expect(token.identifier == identifier and token.description == "compat token",
               f"token {token.identifier!r} {token.description!r}")
        expect(token.intent == ak.IntentEnum.API, f"intent {token.intent!r}")
        expect(token.expires is not None and abs((token.expires - expires).total_seconds()) < 1, f"expires {token.expires}")
        return token

    run("core_tokens_create", tokens_create)

    def tokens_list():
        page = core.core_tokens_list(identifier=identifier, intent="api", ordering="-created")
        expect(page.pagination.count == 1, f"count {page.pagination.count}")
        expect([t.identifier for t in page.results] == [identifier], f"results {[t.identifier for t in page.results]}")

    run("core_tokens_list", tokens_list)

    def tokens_retrieve():
        got = core.core_tokens_retrieve(identifier)
        expect(got.identifier == identifier, f"identifier {got.identifier!r}")

    run("core_tokens_retrieve", tokens_retrieve)

    def tokens_update():
        got = core.core_tokens_update(identifier, ak.TokenRequest(
            identifier=identifier, intent=ak.IntentEnum.API, description="compat token updated",
            expiring=True, expires=expires))
        expect(got.description == "compat token updated", f"description {got.description!r}")

    run("core_tokens_update", tokens_update)

    def tokens_partial_update():
        got = core.core_tokens_partial_update(identifier, ak.PatchedTokenRequest(description="compat token patched"))
        expect(got.description == "compat token patched", f"description {got.description!r}")

    run("core_tokens_partial_update", tokens_partial_update)

    def tokens_view_key():
        view = core.core_tokens_view_key_retrieve(identifier)
        expect(view.key.startswith("gatehouse_api_"), f"key {view.key[:14]!r}...")

    run("core_tokens_view_key_retrieve", tokens_view_key)

    def current_key() -> str:
        return raw_ok(core.core_tokens_view_key_retrieve, identifier)["key"]

    chosen_key = gatehouse_key()

    def tokens_set_key():
        result = core.core_tokens_set_key_create(identifier, ak.TokenSetKeyRequest(key=chosen_key))
        expect(result is None, f"returned {result!r}")
        expect(current_key() == chosen_key, "view_key does not show the key that was set")

    run("core_tokens_set_key_create", tokens_set_key)

    def tokens_rotate():
        before = current_key()
        untyped(api_client, "POST", "/core/tokens/{identifier}/rotate/", path_params={"identifier": identifier})
        after = current_key()
        expect(after != before and after.startswith("gatehouse_api_"), "rotate did not replace the key")

    run("core_tokens_rotate (no method in the client)", tokens_rotate)

    def tokens_used_by():
        used = core.core_tokens_used_by_list(identifier)
        expect(isinstance(used, list), f"used_by returned {type(used).__name__}")

    run("core_tokens_used_by_list", tokens_used_by)

    def tokens_destroy():
        expect(core.core_tokens_destroy(identifier) is None, "returned something")
        expect(status_of(core.core_tokens_retrieve, identifier) == 404, "token still retrievable")

    run("core_tokens_destroy", tokens_destroy)

    # --- flow executor and sessions (the created user signs in) -------------------------------
    executor = Browser(url)

    def executor_step(method: Callable[..., Any], *args: Any) -> Any:
        response = getattr(method.__self__, method.__name__ + "_without_preload_content")(*args)
        executor.take_cookies(response.headers)
        expect(response.status == 200, f"HTTP {response.status}: {one_line(response.data.decode(), 200)}")
        return challenge_of(response.data)

    def executor_get():
        challenge = executor_step(executor.flows.flows_executor_get, AUTH_FLOW, QUERY)
        expect(isinstance(challenge, ak.IdentificationChallenge), f"challenge is {type(challenge).__name__}")
        expect(ak.UserFieldsEnum.EMAIL.value in (challenge.user_fields or []), f"user_fields {challenge.user_fields!r}")

    run("flows_executor_get", executor_get)

    def executor_solve_identification():
        challenge = executor_step(executor.flows.flows_executor_solve, AUTH_FLOW, QUERY,
                                  challenge_request("ak-stage-identification", uid_field=email))
        expect(isinstance(challenge, ak.PasswordChallenge), f"challenge is {type(challenge).__name__}")

    def executor_solve_password():
        challenge = executor_step(executor.flows.flows_executor_solve, AUTH_FLOW, QUERY,
                                  challenge_request("ak-stage-password", password=password))
        expect(isinstance(challenge, ak.RedirectChallenge), f"challenge is {type(challenge).__name__}")
        expect(challenge.to == "/if/user/", f"redirect to {challenge.to!r}")
        expect("gatehouse_session" in executor.cookies, "no session cookie after the flow")
        return True

    run("flows_executor_solve (identification)", executor_solve_identification)
    run("flows_executor_solve (password)", executor_solve_password)
    # Three sessions of the created user: the one above (or a fresh one when the typed flow
    # checks failed) and two more, so that destroy and revoke_others each have one to end.
    session_a = executor if "gatehouse_session" in executor.cookies else None
    try:
        if session_a is None:
            session_a = sign_in_raw(url, email, password)
        session_b = sign_in_raw(url, email, password)
        sign_in_raw(url, email, password)
    except Exception as error:  # without sessions, the session checks cannot run
        checks.failed.append(("setup: sign in through the flow executor", describe(error)))
        session_a = session_b = None

    if session_a is not None:
        def own_sessions(browser: Browser) -> list:
            return raw_ok(browser.core.core_authenticated_sessions_list)["results"]

        def sessions_list():
            page = session_a.core.core_authenticated_sessions_list(ordering="-last_used", user__username=username)
            expect(page.pagination.count == 3, f"count {page.pagination.count}, expected 3 sessions")
            current = [s for s in page.results if s.current]
            expect(len(current) == 1, f"{len(current)} sessions marked current")
            expect(all(s.user == user_pk for s in page.results), "sessions of another user listed")

        run("core_authenticated_sessions_list", sessions_list)

        def sessions_destroy():
            others = [s["uuid"] for s in own_sessions(session_a) if not s.get("current")]
            expect(len(others) == 2, f"setup: {len(others)} other sessions")
            result = session_a.core.core_authenticated_sessions_destroy(others[0])
            expect(result is None, f"returned {result!r}")
            remaining = [s["uuid"] for s in own_sessions(session_a)]
            expect(others[0] not in remaining and len(remaining) == 2, f"sessions after destroy: {remaining}")

        run("core_authenticated_sessions_destroy", sessions_destroy)

        def sessions_revoke_others():
            others = len(own_sessions(session_a)) - 1
            expect(others >= 1, "setup: no other session to revoke")
            result = untyped(session_a.api_client, "POST", "/core/authenticated_sessions/revoke_others/")
            expect(isinstance(result, dict) and result.get("revoked") == others, f"returned {result!r}, expected revoked={others}")
            remaining = own_sessions(session_a)
            expect(len(remaining) == 1 and remaining[0].get("current"), f"sessions after revoke_others: {remaining}")
            expect(status_of(session_b.core.core_authenticated_sessions_list) in (401, 403), "revoked session still works")

        run("core_authenticated_sessions_revoke_others (no method in the client)", sessions_revoke_others)

        def forbidden_for_plain_user():
            error = expect_raises(ForbiddenException, lambda: session_a.core.core_users_list(ordering="username"))
            expect(error.status == 403, f"status {error.status}")
            body = json.loads(error.body or "{}")
            expect("detail" in body, f"403 body {error.body!r}")

        run("core_users_list as a non-superuser raises ForbiddenException", forbidden_for_plain_user)

        def forbidden_create_for_plain_user():
            expect_raises(ForbiddenException, lambda: session_a.core.core_groups_create(ak.GroupRequest(name=f"compat-{tag}-denied")))

        run("core_groups_create as a non-superuser raises ForbiddenException", forbidden_create_for_plain_user)

    # --- flows -------------------------------------------------------------------------------
    slug = f"compat-{tag}-flow"

    def flow_request(title: str, slug_: str = slug) -> ak.FlowRequest:
        return ak.FlowRequest(
            name=f"Compat flow {tag}", slug=slug_, title=title, designation=ak.FlowDesignationEnum.AUTHENTICATION,
            authentication=ak.AuthenticationEnum.REQUIRE_UNAUTHENTICATED, denied_action=ak.DeniedActionEnum.MESSAGE_CONTINUE)

    def flows_create():
        flow = flows.flows_instances_create(flow_request("Compat"))
        expect(flow.slug == slug and flow.title == "Compat", f"flow {flow.slug!r} {flow.title!r}")
        expect(flow.designation == ak.FlowDesignationEnum.AUTHENTICATION, f"designation {flow.designation!r}")
        return flow

    flow = run("flows_instances_create", flows_create)
    flow_pk = str(flow.pk) if flow else find_one(flows.flows_instances_list, "pk", slug=slug)

    def flows_list():
        page = flows.flows_instances_list(slug=slug, designation=ak.FlowDesignationEnum.AUTHENTICATION, ordering="-slug")
        expect(page.pagination.count == 1, f"count {page.pagination.count}")
        expect([f.slug for f in page.results] == [slug], f"results {[f.slug for f in page.results]}")

    run("flows_instances_list", flows_list)

    def flows_retrieve():
        got = flows.flows_instances_retrieve(slug)
        expect(got.slug == slug and str(got.pk) == flow_pk, f"retrieved {got.slug!r}")

    run("flows_instances_retrieve", flows_retrieve)

    def flows_update():
        got = flows.flows_instances_update(slug, flow_request("Compat updated"))
        expect(got.title == "Compat updated", f"title {got.title!r}")

    run("flows_instances_update", flows_update)

    def flows_partial_update():
        got = flows.flows_instances_partial_update(slug, ak.PatchedFlowRequest(title="Compat patched"))
        expect(got.title == "Compat patched" and got.slug == slug, f"title {got.title!r}")

    run("flows_instances_partial_update", flows_partial_update)

    # --- stages of each kind -----------------------------------------------------------------
    inbuilt = ak.BackendsEnum.AUTHENTIK_DOT_CORE_DOT_AUTH_DOT_INBUILT_BACKEND
    kinds: dict[str, dict[str, Any]] = {
        "identification": dict(
            fields=["user_fields", "case_insensitive_matching", "show_matched_user", "pretend_user_exists"],
            create=lambda n: ak.IdentificationStageRequest(name=n, user_fields=[ak.UserFieldsEnum.EMAIL], case_insensitive_matching=True),
            created=lambda s: s.user_fields == [ak.UserFieldsEnum.EMAIL] and s.case_insensitive_matching is True,
            update=lambda n: ak.IdentificationStageRequest(name=n, user_fields=[ak.UserFieldsEnum.EMAIL, ak.UserFieldsEnum.USERNAME], show_matched_user=True),
            updated=lambda s: s.show_matched_user is True and ak.UserFieldsEnum.USERNAME in (s.user_fields or []),
            patch=lambda: ak.PatchedIdentificationStageRequest(pretend_user_exists=False),
            patched=lambda s: s.pretend_user_exists is False and s.show_matched_user is True),
        "password": dict(
            fields=["backends", "failed_attempts_before_cancel"],
            create=lambda n: ak.PasswordStageRequest(name=n, backends=[inbuilt], failed_attempts_before_cancel=3),
            created=lambda s: s.backends == [inbuilt] and s.failed_attempts_before_cancel == 3,
            update=lambda n: ak.PasswordStageRequest(name=n, backends=[inbuilt], failed_attempts_before_cancel=4),
            updated=lambda s: s.failed_attempts_before_cancel == 4,
            patch=lambda: ak.PatchedPasswordStageRequest(failed_attempts_before_cancel=6),
            patched=lambda s: s.failed_attempts_before_cancel == 6),
        "user_login": dict(
            fields=["session_duration", "terminate_other_sessions", "remember_me_offset"],
            create=lambda n: ak.UserLoginStageRequest(name=n, session_duration="hours=2"),
            created=lambda s: s.session_duration == "hours=2",
            update=lambda n: ak.UserLoginStageRequest(name=n, session_duration="hours=3", terminate_other_sessions=True),
            updated=lambda s: s.session_duration == "hours=3" and s.terminate_other_sessions is True,
            patch=lambda: ak.PatchedUserLoginStageRequest(remember_me_offset="days=7"),
            # Gatehouse answers duration strings in canonical form: days=7 comes back as weeks=1.
            patched=lambda s: s.remember_me_offset in ("days=7", "weeks=1") and s.session_duration == "hours=3"),
        "user_logout": dict(
            fields=["name"],
            create=lambda n: ak.UserLogoutStageRequest(name=n),
            created=lambda s: True,
            update=lambda n: ak.UserLogoutStageRequest(name=n),
            updated=lambda s: True,
            patch=lambda: None,
            patched=lambda s: True),
        "deny": dict(
            fields=["deny_message"],
            create=lambda n: ak.DenyStageRequest(name=n, deny_message="No entry."),
            created=lambda s: s.deny_message == "No entry.",
            update=lambda n: ak.DenyStageRequest(name=n, deny_message="Still no entry."),
            updated=lambda s: s.deny_message == "Still no entry.",
            patch=lambda: ak.PatchedDenyStageRequest(deny_message="Never."),
            patched=lambda s: s.deny_message == "Never."),
    }
    stage_pks: dict[str, str] = {}

    def shown(stage: Any, spec: dict) -> str:
        return ", ".join(f"{f}={getattr(stage, f, None)!r}" for f in spec["fields"])

    for kind, spec in kinds.items():
        name = f"compat-{tag}-{kind}"
        method = lambda suffix, kind=kind: getattr(stages, f"stages_{kind}_{suffix}")

        def stage_create(kind=kind, spec=spec, name=name, method=method):
            stage = method("create")(spec["create"](name))
            expect(stage.name == name, f"name {stage.name!r}")
            expect(spec["created"](stage), f"created stage reads {shown(stage, spec)}")
            return stage

        stage = run(f"stages_{kind}_create", stage_create)
        try:
            stage_pks[kind] = str(stage.pk) if stage else find_one(method("list"), "pk", name=name)
        except AssertionError as error:
            checks.failed.append((f"setup: find the {kind} stage", describe(error)))
            continue
        pk = stage_pks[kind]

        def stage_list(name=name, pk=pk, method=method):
            page = method("list")(name=name, ordering="-name")
            expect(page.pagination.count == 1, f"count {page.pagination.count}")
            expect([str(s.pk) for s in page.results] == [pk], f"results {[str(s.pk) for s in page.results]}")

        run(f"stages_{kind}_list", stage_list)

        def stage_retrieve(name=name, pk=pk, method=method):
            got = method("retrieve")(pk)
            expect(str(got.pk) == pk and got.name == name, f"retrieved {got.name!r}")

        run(f"stages_{kind}_retrieve", stage_retrieve)

        renamed = name + "-renamed"

        def stage_update(spec=spec, pk=pk, method=method, renamed=renamed):
            got = method("update")(pk, spec["update"](renamed))
            expect(got.name == renamed, f"name {got.name!r}")
            expect(spec["updated"](got), f"updated stage reads {shown(got, spec)}")

        run(f"stages_{kind}_update", stage_update)

        def stage_partial_update(kind=kind, spec=spec, pk=pk, method=method, renamed=renamed):
            body = spec["patch"]()
            if body is None:
                body = getattr(ak, f"Patched{''.join(p.title() for p in kind.split('_'))}StageRequest")(name=renamed + "-patched")
            got = method("partial_update")(pk, body)
            expect(spec["patched"](got), f"sent {body.to_dict()}, patched stage reads {shown(got, spec)}")
            if kind == "user_logout":
                expect(got.name == renamed + "-patched", f"name {got.name!r}")

        run(f"stages_{kind}_partial_update", stage_partial_update)

        def stage_used_by(pk=pk, method=method):
            used = method("used_by_list")(pk)
            expect(isinstance(used, list), f"used_by returned {type(used).__name__}")

        run(f"stages_{kind}_used_by_list", stage_used_by)

    # --- stages/all --------------------------------------------------------------------------
    def stages_all_list():
        page = stages.stages_all_list(search=f"compat-{tag}", ordering="name", page_size=50)
        found = {str(s.pk) for s in page.results}
        expect(set(stage_pks.values()) <= found, f"list lacks {set(stage_pks.values()) - found}")
        expect(page.pagination.count == len(stage_pks), f"count {page.pagination.count}, created {len(stage_pks)}")
        components = {str(s.pk): s.component for s in page.results}
        expect(components.get(stage_pks.get("deny")) == "ak-stage-deny-form", f"deny stage component {components.get(stage_pks.get('deny'))!r}")

    run("stages_all_list", stages_all_list)

    def stages_all_types():
        types = stages.stages_all_types_list()
        names = {t.model_name for t in types}
        expected = {"identificationstage", "passwordstage", "userloginstage", "userlogoutstage", "denystage"}
        expect(expected <= names, f"types lack {expected - names}")

    run("stages_all_types_list", stages_all_types)

    def stages_all_retrieve():
        got = stages.stages_all_retrieve(stage_pks["password"])
        expect(str(got.pk) == stage_pks["password"] and got.meta_model_name.endswith("passwordstage"),
               f"retrieved {got.name!r} {got.meta_model_name!r}")

    run("stages_all_retrieve", stages_all_retrieve)

    # --- bindings ----------------------------------------------------------------------------
    binding_pk = None

    def bindings_create():
        nonlocal binding_pk
        binding = flows.flows_bindings_create(ak.FlowStageBindingRequest(
            target=flow_pk, stage=stage_pks["deny"], order=10, evaluate_on_plan=True,
            invalid_response_action=ak.InvalidResponseActionEnum.RETRY))
        binding_pk = str(binding.pk)
        expect(str(binding.target) == flow_pk and str(binding.stage) == stage_pks["deny"], "target or stage differ")
        expect(binding.order == 10, f"order {binding.order}")
        expect(str(binding.stage_obj.pk) == stage_pks["deny"], "stage_obj differs")

    run("flows_bindings_create", bindings_create)
    if binding_pk is None and "deny" in stage_pks:
        try:
            binding_pk = find_one(flows.flows_bindings_list, "pk", target=flow_pk)
        except AssertionError as error:
            checks.failed.append(("setup: find the binding", describe(error)))

    if binding_pk is not None:
        def bindings_list():
            page = flows.flows_bindings_list(target=flow_pk, ordering="order")
            expect(page.pagination.count == 1, f"count {page.pagination.count}")
            expect([str(b.pk) for b in page.results] == [binding_pk], "results differ")

        run("flows_bindings_list", bindings_list)

        def bindings_retrieve():
            got = flows.flows_bindings_retrieve(binding_pk)
            expect(str(got.pk) == binding_pk and got.order == 10, f"order {got.order}")

        run("flows_bindings_retrieve", bindings_retrieve)

        def bindings_update():
            got = flows.flows_bindings_update(binding_pk, ak.FlowStageBindingRequest(
                target=flow_pk, stage=stage_pks["deny"], order=20,
                invalid_response_action=ak.InvalidResponseActionEnum.RESTART))
            expect(got.order == 20 and got.invalid_response_action == ak.InvalidResponseActionEnum.RESTART,
                   f"order {got.order} action {got.invalid_response_action!r}")

        run("flows_bindings_update", bindings_update)

        def bindings_partial_update():
            got = flows.flows_bindings_partial_update(binding_pk, ak.PatchedFlowStageBindingRequest(order=30))
            expect(got.order == 30 and got.invalid_response_action == ak.InvalidResponseActionEnum.RESTART,
                   f"order {got.order} action {got.invalid_response_action!r}")

        run("flows_bindings_partial_update", bindings_partial_update)

        def bindings_used_by():
            used = flows.flows_bindings_used_by_list(binding_pk)
            expect(isinstance(used, list), f"used_by returned {type(used).__name__}")

        run("flows_bindings_used_by_list", bindings_used_by)

    def stages_all_used_by():
        used = stages.stages_all_used_by_list(stage_pks["deny"])
        expect(isinstance(used, list), f"used_by returned {type(used).__name__}")

    run("stages_all_used_by_list", stages_all_used_by)

    def flows_used_by():
        used = flows.flows_instances_used_by_list(slug)
        expect(isinstance(used, list), f"used_by returned {type(used).__name__}")

    run("flows_instances_used_by_list", flows_used_by)

    # --- export and import -------------------------------------------------------------------
    exported: dict[str, bytes] = {}

    def flows_export():
        document = flows.flows_instances_export_retrieve(slug)
        expect(isinstance(document, (bytes, bytearray)), f"export returned {type(document).__name__}")
        expect(slug.encode() in document, "the export does not name the flow's slug")
        exported["document"] = bytes(document)

    run("flows_instances_export_retrieve", flows_export)
    if "document" not in exported:
        status, body = raw(flows.flows_instances_export_retrieve, slug)
        if status == 200:
            exported["document"] = body if isinstance(body, bytes) else json.dumps(body).encode()

    imported_slug = slug + "-imported"

    def flows_import():
        expect("document" in exported, "setup: no exported document to import")
        document = exported["document"].replace(slug.encode(), imported_slug.encode())
        result = untyped(api_client, "POST", "/flows/instances/import/",
                         files={"file": (f"{imported_slug}.yaml", document)}, post_params=[("clear", "false")])
        expect(isinstance(result, dict) and result.get("success") is True, f"import result {one_line(repr(result), 200)}")
        got = raw_ok(flows.flows_instances_retrieve, imported_slug)
        expect(got["slug"] == imported_slug, "the imported flow is missing")
        bindings = raw_ok(flows.flows_bindings_list, target=got["pk"])
        expect(bindings["pagination"]["count"] == 1, f"the imported flow has {bindings['pagination']['count']} bindings")

    run("flows_instances_import (no method in the client)", flows_import)

    # --- permissions -------------------------------------------------------------------------
    rbac = ak.RbacApi(api_client)

    def rbac_permissions_list():
        page = rbac.rbac_permissions_list(codename="view_user", content_type__app_label="authentik_core")
        expect(page.pagination.count == 1 and len(page.results) == 1, f"{page.pagination.count} permissions named view_user")
        permission = page.results[0]
        expect(permission.codename == "view_user" and permission.app_label == "authentik_core" and permission.model == "user",
               f"unexpected permission {permission}")
        one = rbac.rbac_permissions_retrieve(id=permission.id)
        expect(one.codename == "view_user", f"retrieve gave {one.codename}")

    run("rbac_permissions_list and rbac_permissions_retrieve", rbac_permissions_list)

    # --- events ------------------------------------------------------------------------------
    event_pk = None

    def events_list():
        nonlocal event_pk
        page = events.events_events_list(action="model_created", ordering="-created", page_size=50)
        expect(page.pagination.count >= 1 and page.results, "no model_created events")
        expect(all(e.action == ak.EventActions.MODEL_CREATED for e in page.results), "other actions listed")
        created = [e.created for e in page.results]
        expect(created == sorted(created, reverse=True), "not ordered by -created")
        event_pk = str(page.results[0].pk)

    run("events_events_list", events_list)
    if event_pk is None:
        try:
            body = raw_ok(events.events_events_list, action="model_created", ordering="-created")
            event_pk = body["results"][0]["pk"]
        except (AssertionError, KeyError, IndexError) as error:
            checks.failed.append(("setup: find an event", describe(error)))

    if event_pk is not None:
        def events_retrieve():
            got = events.events_events_retrieve(event_pk)
            expect(str(got.pk) == event_pk and got.action == ak.EventActions.MODEL_CREATED, f"retrieved {got.pk} {got.action!r}")

        run("events_events_retrieve", events_retrieve)

    # --- tasks and schedules -----------------------------------------------------------------
    schedule_id = None

    def schedules_list():
        nonlocal schedule_id
        page = tasks.tasks_schedules_list(actor_name="gatehouse.purge_finished_tasks", ordering="identifier")
        expect(page.pagination.count == 1, f"count {page.pagination.count}")
        schedule_id = str(page.results[0].id)
        expect(page.results[0].actor_name == "gatehouse.purge_finished_tasks", f"actor {page.results[0].actor_name!r}")

    run("tasks_schedules_list", schedules_list)
    if schedule_id is None:
        try:
            schedule_id = find_one(tasks.tasks_schedules_list, "id", actor_name="gatehouse.purge_finished_tasks")
        except AssertionError as error:
            checks.failed.append(("setup: find a schedule", describe(error)))

    if schedule_id is not None:
        original = raw_ok(tasks.tasks_schedules_retrieve, schedule_id)

        def schedules_retrieve():
            got = tasks.tasks_schedules_retrieve(schedule_id)
            expect(str(got.id) == schedule_id and got.crontab == original["crontab"], f"retrieved {got.id} {got.crontab!r}")

        run("tasks_schedules_retrieve", schedules_retrieve)

        def schedules_update():
            got = tasks.tasks_schedules_update(schedule_id, ak.ScheduleRequest(crontab="18 3 * * *", paused=False))
            expect(got.crontab == "18 3 * * *" and got.paused is False, f"crontab {got.crontab!r} paused {got.paused}")

        run("tasks_schedules_update", schedules_update)

        def schedules_partial_update():
            got = tasks.tasks_schedules_partial_update(schedule_id, ak.PatchedScheduleRequest(paused=True))
            expect(got.paused is True and got.crontab == "18 3 * * *", f"crontab {got.crontab!r} paused {got.paused}")

        run("tasks_schedules_partial_update", schedules_partial_update)
        raw(tasks.tasks_schedules_update, schedule_id, ak.ScheduleRequest(crontab=original["crontab"], paused=bool(original.get("paused"))))

        def sent_tasks() -> list:
            return raw_ok(tasks.tasks_tasks_list, actor_name="gatehouse.purge_finished_tasks")["results"]

        before = len(sent_tasks())

        def schedules_send():
            expect(tasks.tasks_schedules_send_create(schedule_id) is None, "returned something")
            expect(len(sent_tasks()) == before + 1, "no task was queued by send")

        run("tasks_schedules_send_create", schedules_send)

    task_id = None

    def tasks_list():
        nonlocal task_id
        page = tasks.tasks_tasks_list(actor_name="gatehouse.purge_finished_tasks", ordering="-mtime")
        expect(page.pagination.count >= 1 and page.results, "no task listed")
        expect(all(t.actor_name == "gatehouse.purge_finished_tasks" for t in page.results), "other actors listed")
        task_id = str(page.results[0].message_id)

    run("tasks_tasks_list", tasks_list)
    if task_id is None:
        try:
            task_id = raw_ok(tasks.tasks_tasks_list, actor_name="gatehouse.purge_finished_tasks")["results"][0]["message_id"]
        except (AssertionError, KeyError, IndexError) as error:
            checks.failed.append(("setup: find a task", describe(error)))

    def tasks_status():
        status = tasks.tasks_tasks_status_retrieve()
        # Every task counts once, under its aggregated status (a done task under its worst log level).
        total = sum(getattr(status, f) for f in ak.GlobalTaskStatus.model_fields)
        expect(total >= 1, f"status counts {status!r}")

    run("tasks_tasks_status_retrieve", tasks_status)

    if task_id is not None:
        def tasks_retrieve():
            got = tasks.tasks_tasks_retrieve(task_id)
            expect(str(got.message_id) == task_id and got.actor_name == "gatehouse.purge_finished_tasks", f"retrieved {got.message_id}")
            expect(isinstance(got.logs, list) and isinstance(got.previous_logs, list), "logs missing")

        run("tasks_tasks_retrieve", tasks_retrieve)

        def tasks_retry():
            # Only rejected tasks can be retried and nothing here can make one fail, so this checks
            # that the refusal for a task that is not rejected surfaces as authentik's 400.
            state = raw_ok(tasks.tasks_tasks_retrieve, task_id).get("state")
            if state == "rejected":
                expect(tasks.tasks_tasks_retry_create(task_id) is None, "returned something")
            else:
                expect_raises(BadRequestException, lambda: tasks.tasks_tasks_retry_create(task_id))

        run("tasks_tasks_retry_create (not rejected: BadRequestException)", tasks_retry)

    def workers_list():
        workers = tasks.tasks_workers_list()
        expect(len(workers) >= 1, "no workers listed while the server runs its own")
        expect(all(w.worker_id for w in workers), "worker without worker_id")

    run("tasks_workers_list", workers_list)

    # --- authenticators -----------------------------------------------------------------------
    authenticators = ak.AuthenticatorsApi(api_client)
    sms_stage_pk = None
    sms_secret = "compat-sms-" + secrets.token_urlsafe(12)

    def sms_stage_create():
        nonlocal sms_stage_pk
        got = stages.stages_authenticator_sms_create(ak.AuthenticatorSMSStageRequest(
            name=f"compat-{tag}-sms", provider=ak.ProviderEnum.GENERIC, from_number="Gatehouse",
            account_sid="https://sms.example.com/hook", auth=sms_secret, auth_type=ak.AuthTypeEnum.BEARER))
        expect(got.provider == ak.ProviderEnum.GENERIC and got.auth_type == ak.AuthTypeEnum.BEARER,
               f"provider {got.provider!r} auth_type {got.auth_type!r}")
        expect(got.component == "ak-stage-authenticator-sms-form", f"component {got.component!r}")
        expect(sms_secret not in got.to_json(), "the provider's secret came back")
        sms_stage_pk = str(got.pk)

    run("stages_authenticator_sms_create", sms_stage_create)

    if sms_stage_pk is not None:
        def sms_stage_read():
            got = stages.stages_authenticator_sms_retrieve(sms_stage_pk)
            expect(str(got.pk) == sms_stage_pk and got.from_number == "Gatehouse", f"retrieved {got.pk} {got.from_number!r}")
            page = stages.stages_authenticator_sms_list(name=f"compat-{tag}-sms")
            expect([str(s.pk) for s in page.results] == [sms_stage_pk], f"listed {[s.pk for s in page.results]}")

        run("stages_authenticator_sms_retrieve and _list", sms_stage_read)

        def sms_stage_partial_update():
            got = stages.stages_authenticator_sms_partial_update(sms_stage_pk, ak.PatchedAuthenticatorSMSStageRequest(friendly_name="Text message"))
            expect(got.friendly_name == "Text message" and got.account_sid == "https://sms.example.com/hook", f"friendly_name {got.friendly_name!r}")

        run("stages_authenticator_sms_partial_update", sms_stage_partial_update)

        validate_pk = None

        def validate_stage_create():
            nonlocal validate_pk
            got = stages.stages_authenticator_validate_create(ak.AuthenticatorValidateStageRequest(
                name=f"compat-{tag}-mfa", device_classes=[ak.DeviceClassesEnum.SMS],
                not_configured_action=ak.NotConfiguredActionEnum.CONFIGURE, configuration_stages=[sms_stage_pk]))
            expect(got.device_classes == [ak.DeviceClassesEnum.SMS], f"device_classes {got.device_classes!r}")
            expect([str(s) for s in got.configuration_stages or []] == [sms_stage_pk], f"configuration_stages {got.configuration_stages!r}")
            validate_pk = str(got.pk)

        run("stages_authenticator_validate_create", validate_stage_create)

        def validate_stage_refuses_webauthn():
            expect_raises(BadRequestException, lambda: stages.stages_authenticator_validate_create(
                ak.AuthenticatorValidateStageRequest(name=f"compat-{tag}-webauthn", device_classes=[ak.DeviceClassesEnum.WEBAUTHN])))

        run("stages_authenticator_validate_create (webauthn: BadRequestException)", validate_stage_refuses_webauthn)

        if validate_pk is not None:
            def validate_stage_read_and_destroy():
                got = stages.stages_authenticator_validate_retrieve(validate_pk)
                expect(got.not_configured_action == ak.NotConfiguredActionEnum.CONFIGURE, f"action {got.not_configured_action!r}")
                expect(stages.stages_authenticator_validate_destroy(validate_pk) is None, "returned something")

            run("stages_authenticator_validate_retrieve and _destroy", validate_stage_read_and_destroy)

    def devices_lists():
        expect(authenticators.authenticators_sms_list().pagination.count == 0, "the key's owner has SMS devices")
        expect(authenticators.authenticators_admin_sms_list(ordering="name").pagination.count == 0, "SMS devices exist")
        expect(authenticators.authenticators_all_list() == [], "devices listed")

    run("authenticators_sms_list, _admin_sms_list, _all_list", devices_lists)

    def devices_admin_create():
        expect_raises(BadRequestException, lambda: authenticators.authenticators_admin_sms_create(ak.SMSDeviceRequest(name="phone")))

    run("authenticators_admin_sms_create (BadRequestException: devices come from enrolment)", devices_admin_create)

    if sms_stage_pk is not None:
        def sms_stage_destroy():
            expect(stages.stages_authenticator_sms_destroy(sms_stage_pk) is None, "returned something")
            expect(status_of(stages.stages_authenticator_sms_retrieve, sms_stage_pk) == 404, "stage still retrievable")

        run("stages_authenticator_sms_destroy", sms_stage_destroy)

    otp_checks(checks, url, api_client, tag, email, password)
    email_checks(checks, url, api_client, tag, email, password)
    mapping_checks(checks, api_client, tag)
    media_checks(checks, url, api_client, tag)
    crypto_checks(checks, api_client, tag)
    oauth_checks(checks, url, api_client, tag, email, password)
    endpoint_checks(checks, url, api_client, tag)

    # --- removals ----------------------------------------------------------------------------
    if binding_pk is not None:
        def bindings_destroy():
            expect(flows.flows_bindings_destroy(binding_pk) is None, "returned something")
            expect(status_of(flows.flows_bindings_retrieve, binding_pk) == 404, "binding still retrievable")

        run("flows_bindings_destroy", bindings_destroy)

    raw(flows.flows_instances_destroy, imported_slug)

    def flows_destroy():
        expect(flows.flows_instances_destroy(slug) is None, "returned something")
        expect(status_of(flows.flows_instances_retrieve, slug) == 404, "flow still retrievable")

    run("flows_instances_destroy", flows_destroy)

    for kind in [k for k in kinds if k in stage_pks and k != "user_logout"]:
        def stage_destroy(kind=kind):
            pk = stage_pks[kind]
            expect(getattr(stages, f"stages_{kind}_destroy")(pk) is None, "returned something")
            expect(status_of(getattr(stages, f"stages_{kind}_retrieve"), pk) == 404, "stage still retrievable")

        run(f"stages_{kind}_destroy", stage_destroy)

    if "user_logout" in stage_pks:
        def stages_all_destroy():
            pk = stage_pks["user_logout"]
            expect(stages.stages_all_destroy(pk) is None, "returned something")
            expect(status_of(stages.stages_all_retrieve, pk) == 404, "stage still retrievable")

        run("stages_all_destroy", stages_all_destroy)

    def users_destroy():
        expect(core.core_users_destroy(user_pk) is None, "returned something")
        expect(status_of(core.core_users_retrieve, user_pk) == 404, "user still retrievable")

    run("core_users_destroy", users_destroy)
    if sa_pk is not None:
        raw(core.core_users_destroy, sa_pk)
        for remaining in raw_ok(core.core_groups_list, name=sa_name).get("results", []):
            raw(core.core_groups_destroy, remaining["pk"])


def otp_checks(checks: Checks, url: str, api_client: ak.ApiClient, tag: str, email: str, password: str) -> None:
    """Authenticator apps and recovery codes: their setup stages through the typed stage API, a
    person setting both up through the flow executor (pyotp plays the app, reading the
    otpauth:// address), signing in with an app code in a flow with a validation stage, and the
    device APIs, own and admin."""
    run = checks.run
    stages = ak.StagesApi(api_client)
    flows = ak.FlowsApi(api_client)
    authenticators = ak.AuthenticatorsApi(api_client)
    pks: dict[str, str] = {}

    def totp_stage_create():
        got = stages.stages_authenticator_totp_create(ak.AuthenticatorTOTPStageRequest(
            name=f"compat-{tag}-totp", digits=ak.DigitsEnum.ENUM_6, friendly_name="Authenticator app"))
        expect(got.component == "ak-stage-authenticator-totp-form", f"component {got.component!r}")
        expect(got.digits == ak.DigitsEnum.ENUM_6, f"digits {got.digits!r}")
        pks["totp"] = str(got.pk)

    run("stages_authenticator_totp_create", totp_stage_create)

    def static_stage_create():
        got = stages.stages_authenticator_static_create(ak.AuthenticatorStaticStageRequest(
            name=f"compat-{tag}-static", token_count=8, token_length=14))
        expect(got.component == "ak-stage-authenticator-static-form", f"component {got.component!r}")
        expect((got.token_count, got.token_length) == (8, 14), f"counts {got.token_count} {got.token_length}")
        pks["static"] = str(got.pk)

    run("stages_authenticator_static_create", static_stage_create)

    def static_stage_refuses_short_codes():
        expect_raises(BadRequestException, lambda: stages.stages_authenticator_static_create(
            ak.AuthenticatorStaticStageRequest(name=f"compat-{tag}-short", token_length=4)))

    run("stages_authenticator_static_create (token_length 4: BadRequestException)", static_stage_refuses_short_codes)
    if "totp" not in pks or "static" not in pks:
        return

    def stages_read_and_update():
        got = stages.stages_authenticator_totp_partial_update(pks["totp"], ak.PatchedAuthenticatorTOTPStageRequest(digits=ak.DigitsEnum.ENUM_8))
        expect(got.digits == ak.DigitsEnum.ENUM_8, f"digits {got.digits!r}")
        got = stages.stages_authenticator_totp_update(pks["totp"], ak.AuthenticatorTOTPStageRequest(name=f"compat-{tag}-totp", digits=ak.DigitsEnum.ENUM_6))
        expect(got.digits == ak.DigitsEnum.ENUM_6, f"digits {got.digits!r}")
        page = stages.stages_authenticator_totp_list(name=f"compat-{tag}-totp")
        expect([str(s.pk) for s in page.results] == [pks["totp"]], f"listed {[s.pk for s in page.results]}")
        got = stages.stages_authenticator_static_retrieve(pks["static"])
        expect(got.token_count == 8, f"token_count {got.token_count}")
        page = stages.stages_authenticator_static_list(name=f"compat-{tag}-static")
        expect([str(s.pk) for s in page.results] == [pks["static"]], f"listed {[s.pk for s in page.results]}")

    run("stages_authenticator_totp_partial_update, _update, _list and static _retrieve, _list", stages_read_and_update)

    # A configuration flow with both setup stages, run by the created user.
    setup_slug = f"compat-{tag}-setup"
    raw_ok(flows.flows_instances_create, ak.FlowRequest(
        name=setup_slug, slug=setup_slug, title="Set up", designation=ak.FlowDesignationEnum.STAGE_CONFIGURATION,
        authentication=ak.AuthenticationEnum.REQUIRE_AUTHENTICATED))
    flow_pk = raw_ok(flows.flows_instances_retrieve, setup_slug)["pk"]
    for order, kind in enumerate(["totp", "static"]):
        raw_ok(flows.flows_bindings_create, ak.FlowStageBindingRequest(target=flow_pk, stage=pks[kind], order=order))
    person = sign_in_raw(url, email, password)
    state: dict[str, Any] = {}

    def setup_totp():
        step = person.raw_step(person.flows.flows_executor_get, setup_slug, QUERY)
        challenge = challenge_of(json.dumps(step).encode())
        expect(isinstance(challenge, ak.AuthenticatorTOTPChallenge), f"challenge {type(challenge).__name__}")
        app = pyotp.parse_uri(challenge.config_url)
        state["app"] = app
        answer = ak.FlowChallengeResponseRequest(ak.AuthenticatorTOTPChallengeResponseRequest(
            component="ak-stage-authenticator-totp", code=app.now()))
        state["after_totp"] = person.raw_step(person.flows.flows_executor_solve, setup_slug, QUERY, answer)

    run("flows_executor (AuthenticatorTOTPChallenge, set up with pyotp)", setup_totp)

    def setup_static():
        step = state.get("after_totp") or {}
        challenge = challenge_of(json.dumps(step).encode())
        expect(isinstance(challenge, ak.AuthenticatorStaticChallenge), f"challenge {type(challenge).__name__}")
        expect(len(challenge.codes) == 8 and all(len(c) == 14 for c in challenge.codes), f"{len(challenge.codes)} codes")
        state["codes"] = challenge.codes
        answer = ak.FlowChallengeResponseRequest(ak.AuthenticatorStaticChallengeResponseRequest(component="ak-stage-authenticator-static"))
        done = person.raw_step(person.flows.flows_executor_solve, setup_slug, QUERY, answer)
        expect(done.get("component") == "xak-flow-redirect", f"after the codes: {done.get('component')}")

    run("flows_executor (AuthenticatorStaticChallenge)", setup_static)

    own = ak.AuthenticatorsApi(person.api_client)

    def own_devices():
        apps = own.authenticators_totp_list()
        expect(apps.pagination.count == 1 and apps.results[0].name == "TOTP Device", f"apps {[d.name for d in apps.results]}")
        sets = own.authenticators_static_list()
        expect(sets.pagination.count == 1 and sets.results[0].token_set == [], "the codes are listed again")
        kinds = sorted(d.type for d in own.authenticators_all_list())
        expect(kinds == ["authentik_stages_authenticator_static.StaticDevice", "authentik_stages_authenticator_totp.TOTPDevice"], f"all {kinds}")
        state["app_pk"] = apps.results[0].pk
        state["set_pk"] = sets.results[0].pk
        got = own.authenticators_totp_partial_update(state["app_pk"], ak.PatchedTOTPDeviceRequest(name="Phone app"))
        expect(got.name == "Phone app", f"renamed {got.name!r}")
        got = own.authenticators_totp_retrieve(state["app_pk"])
        expect(got.user.email == email, f"owner {got.user.email!r}")
        expect(own.authenticators_static_used_by_list(state["set_pk"]) == [], "used by something")

    run("authenticators_totp_list, _static_list, _all_list, _totp_partial_update, _retrieve, _static_used_by_list", own_devices)

    # Signing in with the app in a flow whose validation stage asks for it.
    signin_slug = f"compat-{tag}-mfa-signin"
    validate = raw_ok(stages.stages_authenticator_validate_create, ak.AuthenticatorValidateStageRequest(
        name=f"compat-{tag}-validate-otp", device_classes=[ak.DeviceClassesEnum.TOTP, ak.DeviceClassesEnum.STATIC],
        not_configured_action=ak.NotConfiguredActionEnum.DENY))
    sign_in_flow_with(flows, stages, signin_slug, validate["pk"])

    def sign_in_with_app():
        browser = Browser(url)
        browser.raw_step(browser.flows.flows_executor_get, signin_slug, QUERY)
        browser.raw_step(browser.flows.flows_executor_solve, signin_slug, QUERY, challenge_request("ak-stage-identification", uid_field=email))
        step = browser.raw_step(browser.flows.flows_executor_solve, signin_slug, QUERY, challenge_request("ak-stage-password", password=password))
        challenge = challenge_of(json.dumps(step).encode())
        expect(isinstance(challenge, ak.AuthenticatorValidationChallenge), f"challenge {type(challenge).__name__}")
        classes = sorted(c.device_class for c in challenge.device_challenges)
        expect(classes == [ak.DeviceClassesEnum.STATIC, ak.DeviceClassesEnum.TOTP], f"device classes {classes}")
        app = state["app"]
        # The setup took this step's code; the next step's is accepted too.
        code = app.at(dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=30))
        answer = ak.FlowChallengeResponseRequest(ak.AuthenticatorValidationChallengeResponseRequest(component="ak-stage-authenticator-validate", code=code))
        done = browser.raw_step(browser.flows.flows_executor_solve, signin_slug, QUERY, answer)
        expect(done.get("component") == "xak-flow-redirect", f"after the code: {done.get('component')} {done.get('response_errors')}")
        expect("gatehouse_session" in browser.cookies, "no session after the code")
        again = sign_in_raw_until_validate(url, signin_slug, email, password)
        replay = again.raw_step(again.flows.flows_executor_solve, signin_slug, QUERY, answer)
        expect(replay.get("component") == "ak-stage-authenticator-validate", f"a used code signed in again: {replay.get('component')}")

    if "app" in state:
        run("flows_executor (AuthenticatorValidationChallenge, a pyotp code once)", sign_in_with_app)

    def admin_devices():
        listed = authenticators.authenticators_admin_totp_list(ordering="name")
        expect(state.get("app_pk") in [d.pk for d in listed.results], f"admin list {[d.pk for d in listed.results]}")
        got = authenticators.authenticators_admin_totp_retrieve(state["app_pk"])
        expect(got.name == "Phone app", f"name {got.name!r}")
        got = authenticators.authenticators_admin_totp_update(state["app_pk"], ak.TOTPDeviceRequest(name="Helpdesk renamed"))
        expect(got.name == "Helpdesk renamed", f"name {got.name!r}")
        got = authenticators.authenticators_admin_static_partial_update(state["set_pk"], ak.PatchedStaticDeviceRequest(name="Paper"))
        expect(got.name == "Paper" and got.token_set == [], f"set {got.name!r}")
        expect_raises(BadRequestException, lambda: authenticators.authenticators_admin_totp_create(ak.TOTPDeviceRequest(name="x")))
        expect_raises(BadRequestException, lambda: authenticators.authenticators_admin_static_create(ak.StaticDeviceRequest(name="x")))
        expect(authenticators.authenticators_admin_static_destroy(state["set_pk"]) is None, "returned something")
        expect(status_of(authenticators.authenticators_admin_static_retrieve, state["set_pk"]) == 404, "set still retrievable")
        expect(own.authenticators_totp_destroy(state["app_pk"]) is None, "returned something")
        expect(own.authenticators_all_list() == [], "devices left")

    if "app_pk" in state:
        run("authenticators_admin_totp_list, _retrieve, _update, _admin_static_partial_update, _create (BadRequestException), _destroy", admin_devices)

    for slug in [signin_slug, setup_slug]:
        raw(flows.flows_instances_destroy, slug)
    raw(stages.stages_all_destroy, validate["pk"])

    def require_mfa_switch():
        page = stages.stages_authenticator_validate_list(name="default-authentication-mfa-validation")
        expect(page.pagination.count == 1, f"default validation stages {page.pagination.count}")
        default = page.results[0]
        expect(default.not_configured_action == ak.NotConfiguredActionEnum.SKIP and len(default.configuration_stages or []) == 1,
               f"shipped as {default.not_configured_action!r} with {default.configuration_stages!r}")
        setup = flows.flows_instances_retrieve("default-authenticator-setup")
        expect(setup.designation == ak.FlowDesignationEnum.STAGE_CONFIGURATION, f"designation {setup.designation!r}")
        try:
            got = stages.stages_authenticator_validate_partial_update(
                default.pk, ak.PatchedAuthenticatorValidateStageRequest(not_configured_action=ak.NotConfiguredActionEnum.CONFIGURE))
            expect(got.not_configured_action == ak.NotConfiguredActionEnum.CONFIGURE, f"switched to {got.not_configured_action!r}")
        finally:
            raw(stages.stages_authenticator_validate_partial_update, default.pk,
                ak.PatchedAuthenticatorValidateStageRequest(not_configured_action=ak.NotConfiguredActionEnum.SKIP))

    run("stages_authenticator_validate_list and _partial_update (the shipped \"require MFA\" switch), flows_instances_retrieve (default-authenticator-setup)", require_mfa_switch)

    def stages_destroy():
        expect(stages.stages_authenticator_totp_destroy(pks["totp"]) is None, "returned something")
        expect(stages.stages_authenticator_static_destroy(pks["static"]) is None, "returned something")
        expect(status_of(stages.stages_authenticator_totp_retrieve, pks["totp"]) == 404, "stage still retrievable")

    run("stages_authenticator_totp_destroy and _static_destroy", stages_destroy)


def mapping_checks(checks: Checks, api_client: ak.ApiClient, tag: str) -> None:
    """Webhook mappings: the typed property mapping API, and an SMS stage naming one."""
    run = checks.run
    mappings = ak.PropertymappingsApi(api_client)
    stages = ak.StagesApi(api_client)
    state: dict[str, Any] = {}

    def mapping_crud():
        got = mappings.propertymappings_notification_create(ak.NotificationWebhookMappingRequest(
            name=f"compat-{tag}-mapping", expression='{"to": payload.To, "text": "Code " + code}'))
        state["pk"] = str(got.pk)
        expect(got.name == f"compat-{tag}-mapping", f"name {got.name!r}")
        page = mappings.propertymappings_notification_list(name=f"compat-{tag}-mapping")
        expect([str(m.pk) for m in page.results] == [state["pk"]], f"listed {[m.pk for m in page.results]}")
        got = mappings.propertymappings_notification_partial_update(state["pk"], ak.PatchedNotificationWebhookMappingRequest(expression="payload"))
        expect(got.expression == "payload", f"expression {got.expression!r}")
        got = mappings.propertymappings_notification_update(state["pk"], ak.NotificationWebhookMappingRequest(
            name=f"compat-{tag}-mapping-2", expression="payload"))
        expect(mappings.propertymappings_notification_retrieve(state["pk"]).name == f"compat-{tag}-mapping-2", "not renamed")
        expect_raises(BadRequestException, lambda: mappings.propertymappings_notification_create(
            ak.NotificationWebhookMappingRequest(name=f"compat-{tag}-bad", expression="1 +")))

    run("propertymappings_notification_create, _list, _partial_update, _update, _retrieve, _create (BadRequestException)", mapping_crud)
    if "pk" not in state:
        return

    def stage_with_mapping():
        got = stages.stages_authenticator_sms_create(ak.AuthenticatorSMSStageRequest(
            name=f"compat-{tag}-sms-mapped", provider=ak.ProviderEnum.GENERIC, from_number="G",
            account_sid="https://sms.example.com/hook", auth="token", auth_type=ak.AuthTypeEnum.BEARER, mapping=state["pk"]))
        expect(str(got.mapping) == state["pk"], f"mapping {got.mapping!r}")
        used = mappings.propertymappings_notification_used_by_list(state["pk"])
        expect([u.name for u in used] == [f"compat-{tag}-sms-mapped"], f"used by {[u.name for u in used]}")
        expect(stages.stages_authenticator_sms_destroy(str(got.pk)) is None, "returned something")

    run("stages_authenticator_sms_create (with a mapping), propertymappings_notification_used_by_list", stage_with_mapping)

    def mapping_destroy():
        expect(mappings.propertymappings_notification_destroy(state["pk"]) is None, "returned something")
        expect(status_of(mappings.propertymappings_notification_retrieve, state["pk"]) == 404, "mapping still retrievable")

    run("propertymappings_notification_destroy", mapping_destroy)


def tiny_png() -> bytes:
    """A valid 1x1 transparent PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")
    header = (1).to_bytes(4, "big") * 2 + bytes([8, 6, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 5)) + chunk(b"IEND", b"")


def crypto_checks(checks: Checks, api_client: ak.ApiClient, tag: str) -> None:
    """Certificate-key pairs: generating, importing what was generated, listing, reading and
    deleting, and the managed JWT key."""
    run = checks.run
    crypto = ak.CryptoApi(api_client)
    state: dict[str, Any] = {}

    def generate_and_read():
        got = crypto.crypto_certificatekeypairs_generate_create(ak.CertificateGenerationRequest(
            common_name=f"compat-{tag}.example.com", subject_alt_name=f"compat-{tag}.example.com", validity_days=30,
            alg=ak.AlgEnum.ECDSA))
        state["pk"] = str(got.pk)
        expect(got.private_key_available and got.key_type == "ec", f"key {got.private_key_available!r} {got.key_type!r}")
        expect(got.cert_subject == f"OU=Self-signed,O=Gatehouse,CN=compat-{tag}.example.com", f"subject {got.cert_subject!r}")
        expect(len(got.fingerprint_sha256 or "") == 95, f"fingerprint {got.fingerprint_sha256!r}")
        state["certificate"] = crypto.crypto_certificatekeypairs_view_certificate_retrieve(state["pk"]).data
        state["key"] = crypto.crypto_certificatekeypairs_view_private_key_retrieve(state["pk"]).data
        expect(state["certificate"].startswith("-----BEGIN CERTIFICATE-----"), "not a PEM certificate")
        expect(state["key"].startswith("-----BEGIN PRIVATE KEY-----"), "not a PKCS#8 key")

    run("crypto_certificatekeypairs_generate_create, _view_certificate_retrieve, _view_private_key_retrieve", generate_and_read)
    if "key" not in state:
        return

    def import_list_update():
        got = crypto.crypto_certificatekeypairs_create(ak.CertificateKeyPairRequest(
            name=f"compat-{tag}-imported", certificate_data=state["certificate"], key_data=state["key"]))
        state["imported"] = str(got.pk)
        expect(got.private_key_available, "imported without its key")
        page = crypto.crypto_certificatekeypairs_list(has_key=True, key_type=[ak.KeyTypeEnum.EC, ak.KeyTypeEnum.RSA], search=f"compat-{tag}")
        expect(sorted(str(p.pk) for p in page.results) == sorted([state["pk"], state["imported"]]), f"listed {[p.name for p in page.results]}")
        got = crypto.crypto_certificatekeypairs_partial_update(state["imported"], ak.PatchedCertificateKeyPairRequest(name=f"compat-{tag}-renamed"))
        expect(crypto.crypto_certificatekeypairs_retrieve(state["imported"]).name == f"compat-{tag}-renamed", "not renamed")
        expect(crypto.crypto_certificatekeypairs_used_by_list(state["imported"]) == [], "used by something")
        expect_raises(BadRequestException, lambda: crypto.crypto_certificatekeypairs_create(ak.CertificateKeyPairRequest(
            name=f"compat-{tag}-bad", certificate_data="not a certificate")))

    run("crypto_certificatekeypairs_create, _list, _partial_update, _retrieve, _used_by_list, _create (BadRequestException)", import_list_update)

    def managed_and_destroy():
        page = crypto.crypto_certificatekeypairs_list(managed="goauthentik.io/crypto/jwt-managed")
        expect(page.pagination.count == 1, f"managed keys {page.pagination.count}")
        expect_raises(BadRequestException, lambda: crypto.crypto_certificatekeypairs_destroy(str(page.results[0].pk)))
        for pk in (state["pk"], state.get("imported")):
            if pk:
                expect(crypto.crypto_certificatekeypairs_destroy(pk) is None, "returned something")
                expect(status_of(crypto.crypto_certificatekeypairs_retrieve, pk) == 404, "pair still retrievable")

    run("crypto_certificatekeypairs_list (managed), _destroy", managed_and_destroy)


def endpoint_checks(checks: Checks, url: str, api_client: ak.ApiClient, tag: str) -> None:
    """The agent connector: connectors, device access groups and enrollment tokens through the
    administrator's calls; then an agent's own calls (enroll with the enrollment key, the
    configuration and a check-in with the device token) through the same client, and the device
    they make."""
    run = checks.run
    endpoints = ak.EndpointsApi(api_client)
    state: dict[str, Any] = {}

    def administration():
        connector = endpoints.endpoints_agents_connectors_create(ak.AgentConnectorRequest(
            name=f"compat-{tag}", refresh_interval="minutes=10", nss_uid_offset=3000))
        state["connector"] = str(connector.connector_uuid)
        expect(connector.snapshot_expiry == "days=1" and connector.nss_gid_offset == 1000, f"defaults {connector}")
        got = endpoints.endpoints_agents_connectors_partial_update(state["connector"], ak.PatchedAgentConnectorRequest(
            challenge_idle_timeout="seconds=3"))
        expect(got.challenge_idle_timeout == "seconds=3" and got.refresh_interval == "minutes=10", f"patched {got}")
        page = endpoints.endpoints_agents_connectors_list(name=f"compat-{tag}")
        expect([str(c.connector_uuid) for c in page.results] == [state["connector"]], f"listed {page.results}")
        group = endpoints.endpoints_device_access_groups_create(ak.DeviceAccessGroupRequest(name=f"compat-{tag}", attributes={"site": "lab"}))
        state["group"] = str(group.pbm_uuid)
        expect(endpoints.endpoints_device_access_groups_retrieve(state["group"]).attributes == {"site": "lab"}, "attributes")
        token = endpoints.endpoints_agents_enrollment_tokens_create(ak.EnrollmentTokenRequest(
            name=f"compat-{tag}", connector=state["connector"], device_group=state["group"]))
        state["token"] = str(token.token_uuid)
        expect(token.device_group_obj is not None and token.device_group_obj.name == f"compat-{tag}", f"group {token.device_group_obj}")
        state["enrollment_key"] = endpoints.endpoints_agents_enrollment_tokens_view_key_retrieve(state["token"]).key
        page = endpoints.endpoints_agents_enrollment_tokens_list(connector=state["connector"])
        expect([str(t.token_uuid) for t in page.results] == [state["token"]], f"tokens {page.results}")
        expect([u.name for u in endpoints.endpoints_agents_connectors_used_by_list(state["connector"])] == [f"compat-{tag}"], "used_by")

    run("endpoints_agents_connectors_create, _partial_update, _list, _used_by_list; endpoints_device_access_groups_create, "
        "_retrieve; endpoints_agents_enrollment_tokens_create, _view_key_retrieve, _list", administration)
    if "enrollment_key" not in state:
        return

    def agent():
        enrolling = ak.ApiClient(ak.Configuration(host=f"{url}/api/v3", access_token=state["enrollment_key"]))
        agent_api = ak.EndpointsApi(enrolling)
        got = agent_api.endpoints_agents_connectors_enroll_create(ak.EnrollRequest(device_serial=f"SN-{tag}", device_name=f"host-{tag}"))
        expect(got.expires_in == 0 and got.token.startswith("gatehouse_dev_"), f"enrolled {got.expires_in!r}")
        headers = {"Authorization": f"Bearer+agent {got.token}"}
        config = agent_api.endpoints_agents_connectors_agent_config_retrieve(_headers=headers)
        expect(config.refresh_interval == 600 and config.nss_uid_offset == 3000, f"config {config.refresh_interval} {config.nss_uid_offset}")
        expect(len(config.jwks_auth.get("keys", [])) >= 1 and config.jwks_challenge is None, f"keys {config.jwks_auth}")
        facts = ak.DeviceFactsRequest(
            os=ak.OperatingSystemRequest(family=ak.DeviceFactsOSFamily.LINUX, name="Debian GNU/Linux", version="12 (bookworm)", arch="amd64"),
            network=ak.NetworkRequest(hostname=f"host-{tag}", interfaces=[ak.NetworkInterfaceRequest(
                name="eth0", hardware_address="02:42:ac:11:00:02", ip_addresses=["172.17.0.2"])]),
            hardware=ak.HardwareRequest(serial=f"SN-{tag}", cpu_count=2, memory_bytes=25_769_803_776),
            software=[ak.SoftwareRequest(name="openssh-server", version="1:9.2p1-2+deb12u3", source="dpkg")],
            vendor={"goauthentik.io/platform": {"agent_version": "0.23.0"}})
        expect(agent_api.endpoints_agents_connectors_check_in_create(facts, _headers=headers) is None, "check-in answered something")
        state["device_token"] = got.token

    run("endpoints_agents_connectors_enroll_create, _agent_config_retrieve, _check_in_create (as an agent)", agent)

    def devices():
        page = endpoints.endpoints_devices_list(search=f"SN-{tag}")
        expect(len(page.results) == 1, f"devices {page.results}")
        device = page.results[0]
        state["device"] = str(device.device_uuid)
        expect(device.name == f"host-{tag}" and str(device.access_group) == state["group"], f"device {device}")
        expect(device.facts is not None and device.facts.vendor == ak.VendorEnum.GOAUTHENTIK_DOT_IO_SLASH_AT_MERGED, f"facts {device.facts}")
        expect(device.facts.data.os.family == ak.DeviceFactsOSFamily.LINUX and device.facts.data.hardware.memory_bytes == 25_769_803_776,
               f"facts {device.facts.data}")
        details = endpoints.endpoints_devices_retrieve(state["device"])
        expect([str(c) for c in details.connections] == [state["connector"]], f"connections {details.connections}")
        expect(details.connections_obj[0].connector_obj.name == f"compat-{tag}", "connector_obj")
        got = endpoints.endpoints_devices_partial_update(state["device"], ak.PatchedEndpointDeviceRequest(name=f"renamed-{tag}", attributes={"rack": 4}))
        expect(got.name == f"renamed-{tag}" and got.attributes == {"rack": 4}, f"patched {got}")
        summary = endpoints.endpoints_devices_summary_retrieve()
        expect(summary.total_count >= 1 and summary.outdated_agent_count == 0, f"summary {summary}")
        expect(endpoints.endpoints_devices_destroy(state["device"]) is None, "returned something")
        expect(status_of(endpoints.endpoints_devices_retrieve, state["device"]) == 404, "device still retrievable")

    def bindings_and_directory():
        core = ak.CoreApi(api_client)
        device = endpoints.endpoints_devices_list(search=f"SN-{tag}").results[0]
        person = core.core_users_create(ak.UserRequest(username=f"unix-{tag}", name="Unix User", email=f"unix-{tag}@example.com",
                                                       attributes={"uidNumber": "42000"}))
        # authentik's client types `connector_obj` as never null, but a binding made through the
        # API has no connector (authentik's own serializer answers null too): read it raw.
        status, body = raw(endpoints.endpoints_device_bindings_create, ak.DeviceUserBindingRequest(
            target=device.device_uuid, user=person.pk, order=0))
        expect(status == 201 and body["user_obj"]["pk"] == person.pk and body["connector_obj"] is None, f"binding {status} {body}")
        expect(set(body) == set(ak.DeviceUserBinding.model_fields), f"binding fields {sorted(body)}")
        status, page = raw(endpoints.endpoints_device_bindings_list, target=device.device_uuid)
        expect(status == 200 and [b["pk"] for b in page["results"]] == [body["pk"]], f"bindings {page}")
        connectors = endpoints.endpoints_connectors_list()
        expect(state["connector"] in [str(c.connector_uuid) for c in connectors.results], f"connectors {connectors.results}")
        expect([t.model_name for t in endpoints.endpoints_connectors_types_list()] == ["agentconnector"], "connector types")
        stages = ak.StagesApi(api_client)
        stage = stages.stages_endpoints_create(ak.EndpointStageRequest(
            name=f"compat-endpoint-{tag}", connector=state["connector"], mode=ak.StageModeEnum.REQUIRED))
        expect(stage.mode == ak.StageModeEnum.REQUIRED and stage.connector_obj.name == f"compat-{tag}", f"endpoint stage {stage}")
        expect(stages.stages_endpoints_retrieve(str(stage.pk)).connector == stage.connector, "endpoint stage retrieved")
        expect(stages.stages_endpoints_destroy(str(stage.pk)) is None, "endpoint stage not deleted")
        # The agent pages the directory with its device token, through authentik's models.
        agent_core = ak.CoreApi(ak.ApiClient(ak.Configuration(host=f"{url}/api/v3")))
        headers = {"Authorization": f"Bearer+agent {state['device_token']}"}
        users = agent_core.core_users_list(include_groups=True, page=1, page_size=100, _headers=headers)
        expect([u.username for u in users.results] == [f"unix-{tag}"], f"directory {[u.username for u in users.results]}")
        expect(users.results[0].attributes.get("uidNumber") == "42000", "uidNumber")
        groups = agent_core.core_groups_list(include_users=True, page=1, page_size=100, _headers=headers)
        expect(groups.results == [], f"groups {groups.results}")
        agent_endpoints = ak.EndpointsApi(ak.ApiClient(ak.Configuration(host=f"{url}/api/v3")))
        started = agent_endpoints.endpoints_agents_connectors_auth_ia_create(_headers=headers)
        expect(started.url.startswith(f"{url}/endpoints/agent/authenticate/"), f"auth_ia {started.url}")
        expect(status_of(endpoints.endpoints_device_bindings_destroy, body["pk"]) == 204, "binding not deleted")
        expect(agent_core.core_users_list(page=1, page_size=100, _headers=headers).results == [], "unbound account still listed")

    if "device_token" in state:
        run("endpoints_device_bindings_create, _list, _destroy; endpoints_connectors_list, _types_list; stages_endpoints_create, "
            "_retrieve, _destroy; core_users_list, "
            "core_groups_list, endpoints_agents_connectors_auth_ia_create (as an agent)", bindings_and_directory)
    if "device_token" in state:
        run("endpoints_devices_list, _retrieve, _partial_update, _summary_retrieve, _destroy", devices)

    def removals():
        expect(endpoints.endpoints_agents_enrollment_tokens_destroy(state["token"]) is None, "returned something")
        expect(endpoints.endpoints_device_access_groups_destroy(state["group"]) is None, "returned something")
        expect(endpoints.endpoints_agents_connectors_destroy(state["connector"]) is None, "returned something")
        expect(status_of(endpoints.endpoints_agents_connectors_retrieve, state["connector"]) == 404, "connector still retrievable")

    run("endpoints_agents_enrollment_tokens_destroy, endpoints_device_access_groups_destroy, endpoints_agents_connectors_destroy", removals)


def oauth_checks(checks: Checks, url: str, api_client: ak.ApiClient, tag: str, email: str, password: str) -> None:
    """Applications and OAuth2/OpenID providers: creating, listing, changing and deleting them,
    the client secret shown once, and the provider's key set; then Python's authlib as a
    confidential relying party signing a person in."""
    import json as json_module
    import urllib.request
    run = checks.run
    providers = ak.ProvidersApi(api_client)
    core = ak.CoreApi(api_client)
    flows = ak.FlowsApi(api_client)
    state: dict[str, Any] = {}

    def create_provider():
        authorization = flows.flows_instances_retrieve("default-authentication-flow").pk
        invalidation = flows.flows_instances_retrieve("default-invalidation-flow").pk
        got = providers.providers_oauth2_create(ak.OAuth2ProviderRequest(
            name=f"compat-{tag}-wiki", authorization_flow=authorization, invalidation_flow=invalidation,
            client_type=ak.ClientTypeEnum.CONFIDENTIAL, access_code_validity="minutes=1",
            redirect_uris=[ak.RedirectURIRequest(matching_mode=ak.MatchingModeEnum.STRICT, url="https://wiki.example/callback")]))
        state["pk"] = got.pk
        expect(bool(got.client_secret) and len(got.client_secret) >= 60, "no generated secret")
        expect(got.redirect_uris[0].url == "https://wiki.example/callback", f"redirect URIs {got.redirect_uris!r}")
        again = providers.providers_oauth2_retrieve(got.pk)
        expect(again.client_secret is None, "the secret is shown again")
        expect(again.client_id == got.client_id and again.sub_mode == ak.SubModeEnum.HASHED_USER_ID, f"read back {again!r}")
        expect_raises(BadRequestException, lambda: providers.providers_oauth2_create(ak.OAuth2ProviderRequest(
            name=f"compat-{tag}-implicit", authorization_flow=authorization, invalidation_flow=invalidation,
            grant_types=[ak.GrantTypeEnum.IMPLICIT], redirect_uris=[])))

    run("providers_oauth2_create, _retrieve, _create (BadRequestException)", create_provider)
    if "pk" not in state:
        return

    def applications():
        got = core.core_applications_create(ak.ApplicationRequest(
            name=f"compat {tag} wiki", slug=f"compat-{tag}-wiki", provider=state["pk"], meta_launch_url="https://wiki.example/"))
        expect(got.provider_obj is not None and got.provider_obj.assigned_application_slug == f"compat-{tag}-wiki",
               f"provider {got.provider_obj!r}")
        expect(got.launch_url == "https://wiki.example/", f"launch URL {got.launch_url!r}")
        page = core.core_applications_list(search=f"compat-{tag}")
        expect([a.slug for a in page.results] == [f"compat-{tag}-wiki"], f"listed {[a.slug for a in page.results]}")
        got = core.core_applications_partial_update(f"compat-{tag}-wiki", ak.PatchedApplicationRequest(meta_publisher="Compat"))
        expect(core.core_applications_retrieve(f"compat-{tag}-wiki").meta_publisher == "Compat", "not changed")
        listed = providers.providers_oauth2_list(name=f"compat-{tag}-wiki")
        expect(listed.pagination.count == 1 and listed.results[0].assigned_application_name == f"compat {tag} wiki",
               f"providers {[p.name for p in listed.results]}")
        used = providers.providers_oauth2_used_by_list(state["pk"])
        expect([u.model_name for u in used] == ["application"], f"used by {used!r}")

    run("core_applications_create, _list, _partial_update, _retrieve, providers_oauth2_list, _used_by_list", applications)

    def key_set():
        with urllib.request.urlopen(f"{url}/application/o/compat-{tag}-wiki/jwks/") as response:
            keys = json_module.loads(response.read())["keys"]
        expect(len(keys) == 1 and keys[0]["kty"] == "EC" and keys[0]["alg"] == "ES256", f"keys {keys!r}")

    run("GET /application/o/<slug>/jwks/", key_set)

    def authlib_relying_party():
        import requests
        from authlib.common.security import generate_token
        from authlib.integrations.requests_client import OAuth2Session
        from joserfc import jwt
        from joserfc.jwk import KeySet
        consent = flows.flows_instances_retrieve("default-provider-authorization-implicit-consent").pk
        invalidation = flows.flows_instances_retrieve("default-invalidation-flow").pk
        callback = "https://rp.example/callback"
        created = providers.providers_oauth2_create(ak.OAuth2ProviderRequest(
            name=f"compat-{tag}-authlib", authorization_flow=consent, invalidation_flow=invalidation,
            client_type=ak.ClientTypeEnum.CONFIDENTIAL,
            redirect_uris=[ak.RedirectURIRequest(matching_mode=ak.MatchingModeEnum.STRICT, url=callback)]))
        state["authlib"] = created.pk
        core.core_applications_create(ak.ApplicationRequest(name=f"compat {tag} authlib", slug=f"compat-{tag}-authlib", provider=created.pk))
        issuer = f"{url}/application/o/compat-{tag}-authlib/"
        metadata = requests.get(f"{issuer}.well-known/openid-configuration", timeout=10).json()
        expect(metadata["issuer"] == issuer, f"issuer {metadata['issuer']!r}")
        rp = OAuth2Session(created.client_id, created.client_secret, scope="openid email profile", redirect_uri=callback,
                           code_challenge_method="S256")
        verifier, nonce = generate_token(48), generate_token(20)
        authorize_url, _ = rp.create_authorization_url(metadata["authorization_endpoint"], code_verifier=verifier, nonce=nonce)
        # The browser's part: a signed-in person opens the authorization URL.
        browser = sign_in_raw(url, email, password)
        cookie = "; ".join(f"{k}={v}" for k, v in browser.cookies.items())
        answer = requests.get(authorize_url, headers={"Cookie": cookie}, allow_redirects=False, timeout=10)
        expect(answer.status_code == 302 and answer.headers["location"].startswith(callback), f"authorize answered {answer.status_code}")
        token = rp.fetch_token(metadata["token_endpoint"], authorization_response=answer.headers["location"], code_verifier=verifier)
        # Checked with joserfc, the JOSE library authlib itself builds on.
        keys = KeySet.import_key_set(requests.get(metadata["jwks_uri"], timeout=10).json())
        decoded = jwt.decode(token["id_token"], keys, algorithms=["ES256", "RS256", "EdDSA"])
        jwt.JWTClaimsRegistry(iss={"essential": True, "value": issuer}, aud={"essential": True, "value": created.client_id},
                              nonce={"essential": True, "value": nonce}, exp={"essential": True}).validate(decoded.claims)
        claims = decoded.claims
        expect(claims["email"] == email, f"ID token email {claims.get('email')!r}")
        info = rp.get(metadata["userinfo_endpoint"], timeout=10).json()
        expect(info["sub"] == claims["sub"] and info["email"] == email, f"userinfo {info!r}")
        # Introspection by the same client, and revocation ending the token.
        about = requests.post(metadata["introspection_endpoint"], data={"token": token["access_token"]},
                              auth=(created.client_id, created.client_secret), timeout=10).json()
        expect(about.get("active") is True and about.get("client_id") == created.client_id, f"introspection {about!r}")
        rp.revoke_token(metadata["revocation_endpoint"], token=token["access_token"])
        expect(rp.get(metadata["userinfo_endpoint"], timeout=10).status_code == 401, "the revoked token still reads userinfo")

    run("authlib: discovery, code with PKCE, ID token against the key set, userinfo, introspection, revocation", authlib_relying_party)

    def issued_tokens():
        oauth2 = ak.Oauth2Api(api_client)
        page = oauth2.oauth2_access_tokens_list(provider=state["authlib"])
        expect(page.pagination.count == 1, f"access tokens {page.results!r}")
        token = page.results[0]
        expect(token.revoked is True and token.provider.pk == state["authlib"] and token.user.email == email,
               f"token {token!r}")
        expect(token.scope == ["openid", "email", "profile"], f"scope {token.scope!r}")
        claims = json.loads(token.id_token)
        expect(claims.get("iss") == f"{url}/application/o/compat-{tag}-authlib/" and "sid" in claims, f"claims {claims!r}")
        expect(oauth2.oauth2_access_tokens_retrieve(token.pk).pk == token.pk, "retrieved another token")
        expect(oauth2.oauth2_access_tokens_used_by_list(token.pk) == [], "a token is used by something")
        expect(oauth2.oauth2_refresh_tokens_list(provider=state["authlib"]).pagination.count == 0, "a refresh token without offline_access")
        expect(oauth2.oauth2_authorization_codes_list(provider=state["authlib"]).pagination.count == 0, "the exchanged code is listed")
        expect(oauth2.oauth2_access_tokens_destroy(token.pk) is None, "returned something")
        expect(oauth2.oauth2_access_tokens_list(provider=state["authlib"]).pagination.count == 0, "the token survived its deletion")
        expect(status_of(oauth2.oauth2_access_tokens_retrieve, token.pk) == 404, "the deleted token is still retrievable")

    if "authlib" in state:
        run("oauth2_access_tokens_list, _retrieve, _used_by_list, _destroy, oauth2_refresh_tokens_list, "
            "oauth2_authorization_codes_list", issued_tokens)

    def authlib_private_key_jwt():
        import requests
        from authlib.integrations.requests_client import OAuth2Session
        from authlib.oauth2.rfc7523 import PrivateKeyJWT
        crypto = ak.CryptoApi(api_client)
        pair = crypto.crypto_certificatekeypairs_generate_create(ak.CertificateGenerationRequest(
            common_name=f"compat-{tag}-service.example.com", validity_days=30, alg=ak.AlgEnum.RSA))
        state["service_key"] = str(pair.pk)
        private_key = crypto.crypto_certificatekeypairs_view_private_key_retrieve(str(pair.pk)).data
        consent = flows.flows_instances_retrieve("default-provider-authorization-implicit-consent").pk
        invalidation = flows.flows_instances_retrieve("default-invalidation-flow").pk
        created = providers.providers_oauth2_create(ak.OAuth2ProviderRequest(
            name=f"compat-{tag}-service", authorization_flow=consent, invalidation_flow=invalidation,
            client_type=ak.ClientTypeEnum.CONFIDENTIAL, grant_types=[ak.GrantTypeEnum.CLIENT_CREDENTIALS], redirect_uris=[]))
        state["service"] = created.pk
        # client_keys is Gatehouse's own field: the client has no attribute for it.
        untyped(api_client, "PATCH", "/providers/oauth2/{id}/", path_params={"id": created.pk}, body={"client_keys": [str(pair.pk)]})
        core.core_applications_create(ak.ApplicationRequest(name=f"compat {tag} service", slug=f"compat-{tag}-service", provider=created.pk))
        metadata = requests.get(f"{url}/application/o/compat-{tag}-service/.well-known/openid-configuration", timeout=10).json()
        expect("private_key_jwt" in metadata["token_endpoint_auth_methods_supported"], f"methods {metadata['token_endpoint_auth_methods_supported']!r}")
        token_endpoint = metadata["token_endpoint"]
        client = OAuth2Session(created.client_id, private_key, token_endpoint_auth_method=PrivateKeyJWT(token_endpoint, alg="RS256"))
        token = client.fetch_token(token_endpoint, grant_type="client_credentials")
        expect(bool(token.get("access_token")), f"token {sorted(token)!r}")
        # The same way of proving itself, with a fresh assertion, at the introspection endpoint.
        introspecting = OAuth2Session(created.client_id, private_key,
                                      token_endpoint_auth_method=PrivateKeyJWT(metadata["introspection_endpoint"], alg="RS256"))
        about = introspecting.introspect_token(metadata["introspection_endpoint"], token=token["access_token"]).json()
        expect(about.get("active") is True and about.get("client_id") == created.client_id, f"introspection {about!r}")

    run("authlib: private_key_jwt (RFC 7523) for client credentials and introspection", authlib_private_key_jwt)

    mappings = ak.PropertymappingsApi(api_client)

    def scope_mappings():
        shipped = mappings.propertymappings_provider_scope_list(managed__isnull=False, ordering="scope_name", page_size=50)
        names = [m.scope_name for m in shipped.results]
        expect(names == ["email", "entitlements", "offline_access", "openid", "profile"], f"shipped {names!r}")
        made = mappings.propertymappings_provider_scope_create(ak.ScopeMappingRequest(
            name=f"compat-{tag}-team", scope_name="team", expression='{"team": "blue-" + user.username}', description="Your team"))
        state["mapping"] = made.pk
        expect(made.managed is None and made.scope_name == "team", f"made {made!r}")
        got = mappings.propertymappings_provider_scope_partial_update(made.pk, ak.PatchedScopeMappingRequest(description="The team"))
        expect(got.description == "The team" and got.expression == made.expression, f"patched {got!r}")
        got = mappings.propertymappings_provider_scope_retrieve(made.pk)
        expect(got.component == "ak-property-mapping-provider-scope-form", f"component {got.component!r}")
        expect_raises(BadRequestException, lambda: mappings.propertymappings_provider_scope_create(
            ak.ScopeMappingRequest(name=f"compat-{tag}-bad", scope_name="bad", expression="1 +")))
        expect(mappings.propertymappings_provider_scope_used_by_list(made.pk) == [], "a new mapping is used by something")

    run("propertymappings_provider_scope_create, _list, _partial_update, _retrieve, _used_by_list", scope_mappings)

    def explicit_consent():
        import requests
        stages = ak.StagesApi(api_client)
        stage = stages.stages_consent_create(ak.ConsentStageRequest(
            name=f"compat-{tag}-consent", mode=ak.ConsentModeEnum.PERMANENT, consent_expire_in="weeks=4"))
        state["consent_stage"] = stage.pk
        expect(stage.mode == ak.ConsentModeEnum.PERMANENT and stage.consent_expire_in == "weeks=4", f"stage {stage!r}")
        slug = f"compat-{tag}-consent"
        flow = flows.flows_instances_create(ak.FlowRequest(
            name=f"Compat consent {tag}", slug=slug, title="Allow?", designation=ak.FlowDesignationEnum.AUTHORIZATION,
            authentication=ak.AuthenticationEnum.REQUIRE_AUTHENTICATED))
        state["consent_flow"] = slug
        flows.flows_bindings_create(ak.FlowStageBindingRequest(target=flow.pk, stage=stage.pk, order=0))
        invalidation = flows.flows_instances_retrieve("default-invalidation-flow").pk
        callback = "https://consenting.example/callback"
        shipped = [m.pk for m in mappings.propertymappings_provider_scope_list(managed__isnull=False).results
                   if m.scope_name in ("openid", "email")]
        created = providers.providers_oauth2_create(ak.OAuth2ProviderRequest(
            name=f"compat-{tag}-consenting", authorization_flow=flow.pk, invalidation_flow=invalidation,
            client_type=ak.ClientTypeEnum.CONFIDENTIAL, property_mappings=shipped + [state["mapping"]],
            redirect_uris=[ak.RedirectURIRequest(matching_mode=ak.MatchingModeEnum.STRICT, url=callback)]))
        state["consenting"] = created.pk
        application = core.core_applications_create(ak.ApplicationRequest(
            name=f"compat {tag} consenting", slug=f"compat-{tag}-consenting", provider=created.pk))
        browser = sign_in_raw(url, email, password)
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        query = urllib.parse.urlencode({"client_id": created.client_id, "response_type": "code", "redirect_uri": callback,
                                        "scope": "openid email team", "code_challenge": challenge, "code_challenge_method": "S256"})
        cookie = lambda: "; ".join(f"{k}={v}" for k, v in browser.cookies.items())
        answer = requests.get(f"{url}/application/o/authorize/?{query}", headers={"Cookie": cookie()}, allow_redirects=False, timeout=10)
        expect(answer.status_code == 302 and answer.headers["location"] == f"/if/flow/{slug}/", f"authorize answered {answer.status_code}")
        browser.take_cookies(answer.raw.headers)
        asked = challenge_of(browser.flows.flows_executor_get_without_preload_content(slug, "").data)
        expect(isinstance(asked, ak.ConsentChallenge), f"challenge {asked!r}")
        expect([p.name for p in asked.permissions] == ["Email address", "The team"], f"permissions {asked.permissions!r}")
        step = browser.raw_step(browser.flows.flows_executor_solve, slug, "", ak.FlowChallengeResponseRequest(
            ak.ConsentChallengeResponseRequest(component="ak-stage-consent", token=asked.token)))
        expect(step.get("component") == "xak-flow-redirect" and "flow_proof=" in step.get("to", ""), f"after consent {step!r}")
        back = requests.get(url + step["to"], headers={"Cookie": cookie()}, allow_redirects=False, timeout=10)
        expect(back.status_code == 302 and back.headers["location"].startswith(callback + "?code="), f"came back {back.status_code}")
        consents = core.core_user_consent_list(application=application.pk)
        expect(len(consents.results) == 1 and consents.results[0].permissions == "email team", f"consents {consents.results!r}")
        expect(consents.results[0].application.slug == f"compat-{tag}-consenting" and consents.results[0].expiring is False,
               f"consent {consents.results[0]!r}")
        # Remembered: the next request comes straight back.
        again = requests.get(f"{url}/application/o/authorize/?{query}", headers={"Cookie": cookie()}, allow_redirects=False, timeout=10)
        expect(again.status_code == 302 and again.headers["location"].startswith(callback + "?code="), "asked again")
        expect(core.core_user_consent_destroy(consents.results[0].pk) is None, "returned something")
        expect(core.core_user_consent_list(application=application.pk).results == [], "the consent survived its revocation")

    run("stages_consent_create, an authorization flow asking consent through the executor (ConsentChallenge), "
        "core_user_consent_list, _destroy", explicit_consent)

    def destroy():
        expect(core.core_applications_destroy(f"compat-{tag}-wiki") is None, "returned something")
        if "consenting" in state:
            core.core_applications_destroy(f"compat-{tag}-consenting")
            providers.providers_oauth2_destroy(state["consenting"])
        if "consent_flow" in state:
            flows.flows_instances_destroy(state["consent_flow"])
        if "consent_stage" in state:
            ak.StagesApi(api_client).stages_consent_destroy(state["consent_stage"])
        if "mapping" in state:
            expect(mappings.propertymappings_provider_scope_destroy(state["mapping"]) is None, "returned something")
        if "authlib" in state:
            core.core_applications_destroy(f"compat-{tag}-authlib")
            providers.providers_oauth2_destroy(state["authlib"])
        if "service" in state:
            core.core_applications_destroy(f"compat-{tag}-service")
            providers.providers_oauth2_destroy(state["service"])
        if "service_key" in state:
            ak.CryptoApi(api_client).crypto_certificatekeypairs_destroy(state["service_key"])
        expect(providers.providers_oauth2_destroy(state["pk"]) is None, "returned something")
        expect(status_of(providers.providers_oauth2_retrieve, state["pk"]) == 404, "provider still retrievable")
        expect(status_of(core.core_applications_retrieve, f"compat-{tag}-wiki") == 404, "application still retrievable")

    run("core_applications_destroy, providers_oauth2_destroy, propertymappings_provider_scope_destroy", destroy)


def media_checks(checks: Checks, url: str, api_client: ak.ApiClient, tag: str) -> None:
    """Uploaded files: authentik's file API, the served file, and a flow using one."""
    import urllib.request
    run = checks.run
    admin = ak.AdminApi(api_client)
    flows = ak.FlowsApi(api_client)
    name = f"compat-{tag}/logo.png"
    state: dict[str, Any] = {}

    def upload_and_list():
        expect(admin.admin_file_create(file=("logo.png", tiny_png()), name=name, usage="media") is None, "returned something")
        files = admin.admin_file_list(search=f"compat-{tag}", usage=ak.UsageEnum.MEDIA)
        expect([(f.name, f.mime_type) for f in files] == [(name, "image/png")], f"listed {files}")
        with urllib.request.urlopen(url + files[0].url) as served:
            expect(served.headers["Content-Type"] == "image/png", f"served as {served.headers['Content-Type']}")
            expect(served.read() == tiny_png(), "served other bytes")
        state["uploaded"] = True
        expect_raises(BadRequestException, lambda: admin.admin_file_create(file=("x.png", tiny_png()), name="../x.png"))
        expect_raises(BadRequestException, lambda: admin.admin_file_create(file=("page.png", b"<html></html>")))

    run("admin_file_create, admin_file_list, the served file, admin_file_create (BadRequestException)", upload_and_list)
    if "uploaded" not in state:
        return

    def used_by_a_flow():
        flow = flows.flows_instances_create(ak.FlowRequest(
            name=f"compat-{tag}-branded", slug=f"compat-{tag}-branded", title="Branded",
            designation=ak.FlowDesignationEnum.AUTHENTICATION, background=name))
        expect(flow.background_url == f"/files/media/{name}", f"background_url {flow.background_url!r}")
        used = admin.admin_file_used_by_list(name=name)
        expect([(u.model_name, u.name) for u in used] == [("flow", f"compat-{tag}-branded")], f"used by {used}")
        flows.flows_instances_destroy(flow.slug)

    run("admin_file_used_by_list (a flow's background)", used_by_a_flow)

    def delete():
        expect(admin.admin_file_destroy(name=name, usage=ak.UsageEnum.MEDIA) is None, "returned something")
        expect(admin.admin_file_list(search=f"compat-{tag}") == [], "still listed")
        expect(status_of(admin.admin_file_destroy, name=name) == 404, "deleted twice")

    run("admin_file_destroy", delete)


class MailSink(socketserver.ThreadingTCPServer):
    """A mail relay on loopback for the e-mail authenticator: it speaks enough SMTP for one
    message per connection and keeps the messages."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], str]] = []
        super().__init__(("127.0.0.1", 0), MailSinkHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def last_code(self) -> str:
        found = re.search(r"authenticate in Gatehouse: (\d{6})", self.messages[-1][1]) if self.messages else None
        expect(found is not None, "no code was mailed")
        return found.group(1)


class MailSinkHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        say = lambda text: self.wfile.write((text + "\r\n").encode())
        say("220 sink ESMTP")
        recipients: list[str] = []
        while line := self.rfile.readline().decode(errors="replace").rstrip("\r\n"):
            command = line.upper()
            if command.startswith("EHLO"):
                say("250-sink\r\n250-AUTH PLAIN\r\n250 8BITMIME")
            elif command.startswith("AUTH PLAIN"):
                say("235 2.7.0 ok")
            elif command.startswith("RCPT TO"):
                recipients.append(line[8:].strip().strip("<>"))
                say("250 ok")
            elif command == "DATA":
                say("354 go ahead")
                data = []
                while (body := self.rfile.readline().decode(errors="replace").rstrip("\r\n")) != ".":
                    data.append(body)
                self.server.messages.append((recipients, "\n".join(data)))
                say("250 queued")
            elif command == "QUIT":
                say("221 bye")
                return
            else:
                say("250 ok")


def email_checks(checks: Checks, url: str, api_client: ak.ApiClient, tag: str, email: str, password: str) -> None:
    """E-mail authenticators: the setup stage through the typed stage API, a person setting an
    address up through the flow executor with a local mail sink taking the code, signing in with
    a code by e-mail through a validation stage, and the device APIs, own and admin."""
    run = checks.run
    stages = ak.StagesApi(api_client)
    flows = ak.FlowsApi(api_client)
    authenticators = ak.AuthenticatorsApi(api_client)
    sink = MailSink()
    state: dict[str, Any] = {}

    def email_stage_create():
        got = stages.stages_authenticator_email_create(ak.AuthenticatorEmailStageRequest(
            name=f"compat-{tag}-email", host="127.0.0.1", port=sink.port, username="relay", password="relay-secret",
            from_address="gatehouse@example.com", subject="Your code", token_expiry="minutes=5", friendly_name="E-mail"))
        expect(got.component == "ak-stage-authenticator-email-form", f"component {got.component!r}")
        expect(got.port == sink.port and got.token_expiry == "minutes=5" and got.use_global_settings is False, f"read back {got!r}")
        raw_body = raw_ok(stages.stages_authenticator_email_retrieve, str(got.pk))
        expect("password" not in raw_body, "the relay password is readable")
        state["stage"] = str(got.pk)
        got = stages.stages_authenticator_email_partial_update(state["stage"], ak.PatchedAuthenticatorEmailStageRequest(subject="Sign-in code"))
        expect(got.subject == "Sign-in code", f"subject {got.subject!r}")
        page = stages.stages_authenticator_email_list(name=f"compat-{tag}-email")
        expect([str(s.pk) for s in page.results] == [state["stage"]], f"listed {[s.pk for s in page.results]}")

    run("stages_authenticator_email_create, _retrieve, _partial_update, _list", email_stage_create)
    if "stage" not in state:
        return
    setup_slug = f"compat-{tag}-email-setup"
    raw_ok(flows.flows_instances_create, ak.FlowRequest(
        name=setup_slug, slug=setup_slug, title="Set up", designation=ak.FlowDesignationEnum.STAGE_CONFIGURATION,
        authentication=ak.AuthenticationEnum.REQUIRE_AUTHENTICATED))
    raw_ok(flows.flows_bindings_create, ak.FlowStageBindingRequest(
        target=raw_ok(flows.flows_instances_retrieve, setup_slug)["pk"], stage=state["stage"], order=0))
    person = sign_in_raw(url, email, password)

    def setup_email():
        step = person.raw_step(person.flows.flows_executor_get, setup_slug, QUERY)
        challenge = challenge_of(json.dumps(step).encode())
        expect(isinstance(challenge, ak.AuthenticatorEmailChallenge), f"challenge {type(challenge).__name__}")
        expect(challenge.email_required is False and challenge.email and challenge.email.endswith("@example.com"), f"email {challenge.email!r}")
        asked = ak.FlowChallengeResponseRequest(ak.AuthenticatorEmailChallengeResponseRequest(component="ak-stage-authenticator-email"))
        step = person.raw_step(person.flows.flows_executor_solve, setup_slug, QUERY, asked)
        expect(step.get("component") == "ak-stage-authenticator-email", f"after asking: {step.get('component')}")
        expect(sink.messages and sink.messages[-1][0] == [email], f"mailed to {sink.messages[-1][0] if sink.messages else None}")
        expect("Subject: Sign-in code" in sink.messages[-1][1], "the stage's subject is not used")
        answer = ak.FlowChallengeResponseRequest(ak.AuthenticatorEmailChallengeResponseRequest(
            component="ak-stage-authenticator-email", code=sink.last_code()))
        done = person.raw_step(person.flows.flows_executor_solve, setup_slug, QUERY, answer)
        expect(done.get("component") == "xak-flow-redirect", f"after the code: {done.get('component')} {done.get('response_errors')}")

    run("flows_executor (AuthenticatorEmailChallenge, the code from a local mail sink)", setup_email)
    own = ak.AuthenticatorsApi(person.api_client)

    def own_devices():
        listed = own.authenticators_email_list()
        expect(listed.pagination.count == 1 and listed.results[0].email == email, f"devices {[d.email for d in listed.results]}")
        state["device"] = listed.results[0].pk
        kinds = [d.type for d in own.authenticators_all_list()]
        expect(kinds == ["authentik_stages_authenticator_email.EmailDevice"], f"all {kinds}")
        got = own.authenticators_email_partial_update(state["device"], ak.PatchedEmailDeviceRequest(name="Inbox"))
        expect(got.name == "Inbox" and got.user.email == email, f"renamed {got.name!r}")
        expect(own.authenticators_email_used_by_list(state["device"]) == [], "used by something")

    run("authenticators_email_list, _all_list, _email_partial_update, _email_used_by_list", own_devices)

    signin_slug = f"compat-{tag}-email-signin"
    validate = raw_ok(stages.stages_authenticator_validate_create, ak.AuthenticatorValidateStageRequest(
        name=f"compat-{tag}-validate-email", device_classes=[ak.DeviceClassesEnum.EMAIL],
        not_configured_action=ak.NotConfiguredActionEnum.DENY))
    sign_in_flow_with(flows, stages, signin_slug, validate["pk"])

    def sign_in_by_email():
        browser = sign_in_raw_until_validate(url, signin_slug, email, password)
        step = browser.raw_step(browser.flows.flows_executor_get, signin_slug, QUERY)
        challenge = challenge_of(json.dumps(step).encode())
        expect(isinstance(challenge, ak.AuthenticatorValidationChallenge), f"challenge {type(challenge).__name__}")
        offered = challenge.device_challenges
        expect([c.device_class for c in offered] == [ak.DeviceClassesEnum.EMAIL], f"device classes {[c.device_class for c in offered]}")
        selected = ak.DeviceChallengeRequest(device_class=ak.DeviceClassesEnum.EMAIL, device_uid=offered[0].device_uid, challenge={}, last_used=None)
        ask = ak.FlowChallengeResponseRequest(ak.AuthenticatorValidationChallengeResponseRequest(
            component="ak-stage-authenticator-validate", selected_challenge=selected))
        sent_before = len(sink.messages)
        browser.raw_step(browser.flows.flows_executor_solve, signin_slug, QUERY, ask)
        expect(len(sink.messages) == sent_before + 1, "no code was mailed for the selected device")
        answer = ak.FlowChallengeResponseRequest(ak.AuthenticatorValidationChallengeResponseRequest(
            component="ak-stage-authenticator-validate", code=sink.last_code()))
        done = browser.raw_step(browser.flows.flows_executor_solve, signin_slug, QUERY, answer)
        expect(done.get("component") == "xak-flow-redirect", f"after the code: {done.get('component')} {done.get('response_errors')}")
        expect("gatehouse_session" in browser.cookies, "no session after the code")

    if "device" in state:
        run("flows_executor (AuthenticatorValidationChallenge, a code by e-mail)", sign_in_by_email)

    def admin_devices():
        listed = authenticators.authenticators_admin_email_list(ordering="name")
        expect(state["device"] in [d.pk for d in listed.results], f"admin list {[d.pk for d in listed.results]}")
        got = authenticators.authenticators_admin_email_update(state["device"], ak.EmailDeviceRequest(name="Helpdesk renamed"))
        expect(got.name == "Helpdesk renamed", f"name {got.name!r}")
        expect(authenticators.authenticators_admin_email_retrieve(state["device"]).email == email, "address changed")
        expect_raises(BadRequestException, lambda: authenticators.authenticators_admin_email_create(ak.EmailDeviceRequest(name="x")))
        expect(authenticators.authenticators_admin_email_destroy(state["device"]) is None, "returned something")
        expect(own.authenticators_all_list() == [], "devices left")

    if "device" in state:
        run("authenticators_admin_email_list, _update, _retrieve, _create (BadRequestException), _destroy", admin_devices)
    for slug in [signin_slug, setup_slug]:
        raw(flows.flows_instances_destroy, slug)
    raw(stages.stages_all_destroy, validate["pk"])

    def email_stage_destroy():
        expect(stages.stages_authenticator_email_destroy(state["stage"]) is None, "returned something")
        expect(status_of(stages.stages_authenticator_email_retrieve, state["stage"]) == 404, "stage still retrievable")

    run("stages_authenticator_email_destroy", email_stage_destroy)
    sink.shutdown()


def sign_in_flow_with(flows: ak.FlowsApi, stages: ak.StagesApi, slug: str, validate_pk: str) -> None:
    """Makes the authentication flow `slug`: the default identification and password stages,
    the validation stage `validate_pk`, then the default login stage."""
    raw_ok(flows.flows_instances_create, ak.FlowRequest(
        name=slug, slug=slug, title="Sign in", designation=ak.FlowDesignationEnum.AUTHENTICATION))
    flow_pk = raw_ok(flows.flows_instances_retrieve, slug)["pk"]
    names = ["default-authentication-identification", "default-authentication-password"]
    for order, name in enumerate(names):
        stage_pk = raw_ok(stages.stages_all_list, name=name)["results"][0]["pk"]
        raw_ok(flows.flows_bindings_create, ak.FlowStageBindingRequest(target=flow_pk, stage=stage_pk, order=order))
    raw_ok(flows.flows_bindings_create, ak.FlowStageBindingRequest(target=flow_pk, stage=validate_pk, order=5))
    login_pk = raw_ok(stages.stages_all_list, name="default-authentication-login")["results"][0]["pk"]
    raw_ok(flows.flows_bindings_create, ak.FlowStageBindingRequest(target=flow_pk, stage=login_pk, order=10))


def sign_in_raw_until_validate(url: str, slug: str, uid: str, password: str) -> Browser:
    """Runs `slug` up to its validation stage: identification, then the password."""
    browser = Browser(url)
    browser.raw_step(browser.flows.flows_executor_get, slug, QUERY)
    browser.raw_step(browser.flows.flows_executor_solve, slug, QUERY, challenge_request("ak-stage-identification", uid_field=uid))
    step = browser.raw_step(browser.flows.flows_executor_solve, slug, QUERY, challenge_request("ak-stage-password", password=password))
    expect(step.get("component") == "ak-stage-authenticator-validate", f"setup: {step.get('component')}")
    return browser


def main() -> int:
    checks = Checks()
    try:
        run_checks(checks)
    except Exception as error:  # a setup step failed; report what ran so far
        checks.failed.append(("setup (the run stopped here)", describe(error)))
    return checks.report()


if __name__ == "__main__":
    sys.exit(main())
