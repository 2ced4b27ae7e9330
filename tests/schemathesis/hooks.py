"""Schemathesis hooks for tests/schemathesis/run (loaded through SCHEMATHESIS_HOOKS).

1. Keep the caller alive. Every request of a pass is sent with one API key; a few requests
   aimed at the caller's *own* key or *own* user end that key, and every later request of the
   pass then answers 401 (these were each reproduced by hand against a fresh server):

     DELETE /api/v3/core/tokens/{own identifier}/          key deleted
     POST   /api/v3/core/tokens/{own identifier}/rotate/   key replaced
     POST   /api/v3/core/tokens/{own identifier}/set_key/  key replaced (with a valid new key)
     PATCH  /api/v3/core/tokens/{own identifier}/          {"is_active": false}, or "expires"
     PUT    /api/v3/core/tokens/{own identifier}/          a few seconds ahead
     PATCH  /api/v3/core/users/{own pk}/                   {"is_active": false}; for a
     PUT    /api/v3/core/users/{own pk}/                   non-superuser also {"is_staff": false}
     DELETE /api/v3/core/users/{own pk}/                   user deleted

   Renaming the caller's own key (PATCH {"identifier": ...}) does not end it, but it would
   move the key out of the protection above, so it is covered by the same rule.

   Only those cases are dropped: the same operations are still tested on every other
   identifier and pk (the ones the run creates, the ones it makes up, and those of other
   users). Requests that looked dangerous but are not (POST /api/v3/auth/sign_out/ and
   POST /api/v3/core/authenticated_sessions/revoke_others/ with an API key, and
   POST /api/v3/core/users/{own pk}/set_password/) are not dropped.

   CALLER_TOKEN_IDENTIFIER and CALLER_USER_PK name the caller.

2. Count what was sent. After every request the hook tallies the response status (and the
   phase that generated the request); at exit the tally is written as JSON to
   REQUEST_TALLY_FILE, which the run script reads for its closing lines.
"""

from __future__ import annotations

import atexit
import collections
import json
import os
import re

import schemathesis

CALLER_TOKEN_IDENTIFIER = os.environ.get("CALLER_TOKEN_IDENTIFIER", "")
CALLER_USER_PK = os.environ.get("CALLER_USER_PK", "")
REQUEST_TALLY_FILE = os.environ.get("REQUEST_TALLY_FILE", "")

# Path templates (and methods) under which a request on the caller's own key or user can end
# the caller's access.
_OWN_TOKEN = re.compile(r"/api/v3/core/tokens/\{identifier\}/(rotate/|set_key/)?$")
_OWN_USER = re.compile(r"/api/v3/core/users/\{id\}/$")
_WRITES = {"POST", "PUT", "PATCH", "DELETE"}


def _same(value: object, own: str) -> bool:
    return own != "" and str(value) == own


def _ends_caller(case) -> bool:
    method = case.method.upper()
    if method not in _WRITES:
        return False
    params = case.path_parameters or {}
    if _OWN_TOKEN.search(case.path) and _same(params.get("identifier"), CALLER_TOKEN_IDENTIFIER):
        return True
    if method != "POST" and _OWN_USER.search(case.path) and _same(params.get("id"), CALLER_USER_PK):
        return True
    return False


@schemathesis.hook
def filter_case(context, case) -> bool:
    return not _ends_caller(case)


_statuses: collections.Counter[str] = collections.Counter()
_phases: collections.Counter[str] = collections.Counter()
_slipped: list[str] = []


@schemathesis.hook
def before_call(context, case, kwargs) -> None:
    # Cases built from stateful links go through filter_case too; this only records any that
    # would still get through, so that the run script can say why the caller's key stopped
    # working.
    if _ends_caller(case):
        _slipped.append(f"{case.method.upper()} {case.formatted_path}")


@schemathesis.hook
def after_call(context, case, response) -> None:
    _statuses[str(response.status_code)] += 1
    phase = "unknown"
    meta = getattr(case, "_meta", None)
    if meta is not None:
        name = getattr(getattr(meta, "phase", None), "name", None)
        phase = str(getattr(name, "value", name))
    _phases[phase] += 1


@atexit.register
def _write_tally() -> None:
    if not REQUEST_TALLY_FILE:
        return
    with open(REQUEST_TALLY_FILE, "w", encoding="utf-8") as out:
        json.dump(
            {
                "requests": sum(_statuses.values()),
                "by_status": dict(sorted(_statuses.items())),
                "by_phase": dict(sorted(_phases.items())),
                "caller_requests_not_filtered": _slipped,
            },
            out,
            indent=2,
        )
