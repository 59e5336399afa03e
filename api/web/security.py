"""Sessions, CSRF tokens, password hashing and the sign-in throttle.

The session is a signed cookie (itsdangerous): the username and a CSRF token, nothing
secret; roles are read from the Account aggregate on every request, so a changed role
takes effect at once. Every POST must carry the session's CSRF token (form field
``csrf`` or header ``X-CSRF-Token``). The signing secret comes from
$DATAENGINE_WEB_SECRET or a file in the data folder created on first start, so
sessions and the web client's identity survive restarts.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, URLSafeTimedSerializer

SECRET_ENV = "DATAENGINE_WEB_SECRET"
SECRET_FILE = "web_secret.key"
COOKIE = "de_session"
SESSION_SECONDS = 12 * 3600  # a session expires half a day after sign-in

_hasher = PasswordHasher()
# A hash to verify against when the account does not exist, so a wrong username takes
# as long as a wrong password and the timing does not tell which names exist.
_DUMMY = _hasher.hash("not a password of anyone")


def load_secret(folder: Path) -> bytes:
    raw = os.environ.get(SECRET_ENV)
    if raw:
        return raw.encode()
    path = folder / SECRET_FILE
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


def derived_key(secret: bytes, purpose: str) -> str:
    """A stable key for ``purpose`` (the web client's API key): never sent to a browser."""
    return hmac.new(secret, purpose.encode(), hashlib.sha256).hexdigest()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


class Sessions:
    def __init__(self, secret: bytes, max_age: int = SESSION_SECONDS):
        self.serializer = URLSafeTimedSerializer(secret, salt="dataengine-web-session")
        self.max_age = max_age
        self._mark_key = derived_key(secret, "session password mark").encode()

    def mark(self, password_hash: str) -> str:
        """What a session keeps of the password it was opened with: a keyed digest of the
        hash (the cookie is signed, not secret). A changed password ends other sessions."""
        return hmac.new(self._mark_key, password_hash.encode(), hashlib.sha256).hexdigest()[:24]

    def load(self, cookie: str | None) -> dict[str, Any] | None:
        if not cookie:
            return None
        try:
            data = self.serializer.loads(cookie, max_age=self.max_age)
        except BadSignature:  # expired, forged or from another secret
            return None
        return data if isinstance(data, dict) and isinstance(data.get("c"), str) else None

    def dump(self, session: dict[str, Any]) -> str:
        return self.serializer.dumps(session)

    @staticmethod
    def new(username: str | None = None) -> dict[str, Any]:
        return {"u": username, "c": secrets.token_urlsafe(24)}


def csrf_ok(session: dict[str, Any] | None, token: str | None) -> bool:
    if not session or not token:
        return False
    return secrets.compare_digest(str(session.get("c", "")).encode(), token.encode())


class SignInThrottle:
    """Failed sign-ins per username and per address in a sliding window; over the
    limit, sign-in is refused (429) before the password is checked."""

    def __init__(self, times: int = 5, seconds: float = 300.0):
        self.times, self.seconds = times, seconds
        self._fails: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._fails.setdefault(key, deque())
        while q and q[0] <= now - self.seconds:
            q.popleft()
        return q

    def retry_after(self, *keys: str) -> int:
        now = time.monotonic()
        with self._lock:
            waits = [
                int(q[0] + self.seconds - now) + 1
                for q in (self._recent(k, now) for k in keys)
                if len(q) >= self.times
            ]
        return max(waits, default=0)

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                self._recent(key, now).append(now)

    def succeeded(self, username_key: str) -> None:
        with self._lock:
            self._fails.pop(username_key, None)
