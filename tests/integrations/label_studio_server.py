"""A real Label Studio for the connector tests: PyPI ``label-studio`` from its own virtualenv
(``scripts/setup_label_studio.sh``), on 127.0.0.1 and a free port, its SQLite database in a temporary folder, an
admin with a token made at start-up, and nothing that reaches the network (no version check, no analytics, no
Sentry). Annotators join the way a person does: the sign-up form, then their token from the API."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.integrations.services import REPO, free_port

LS_VENV = Path(os.environ.get("LS_VENV", REPO / ".venv-ls"))
ADMIN_EMAIL, ADMIN_PASSWORD = "admin@example.com", "admin-password-123"
ADMIN_TOKEN = "raydq0test0admin0token0000000000000000000"  # a legacy token (40 characters, as Label Studio makes)
OFFLINE_ENV = {
    "LATEST_VERSION_CHECK": "false",  # no PyPI version check
    "COLLECT_ANALYTICS": "false",
    "SENTRY_DSN": "",
    "FRONTEND_SENTRY_DSN": "",
    "SSRF_PROTECTION_ENABLED": "false",  # webhooks go to the connector on 127.0.0.1
    "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "false",
    "DJANGO_DB": "sqlite",
    # A stable key, as every real deployment needs: personal access tokens are signed with it, and without it each
    # start may make a new one, which invalidates every token handed out before (measured: the connector's 401s).
    "SECRET_KEY": "raydq-test-label-studio-secret-key-0123456789",
    # SQLite in WAL mode (Label Studio's switch for it): with the default rollback journal, concurrent requests on a
    # loaded machine hit "database is locked" after Django's 5 s and answer 500.
    "AZURE_MOUNT_FIX": "true",
}


def ls_request(method: str, url: str, *, tries: int = 6, **kw) -> httpx.Response:
    """One Label Studio request as a person makes it: a 5xx (SQLite busy under load) is tried again, a few times."""
    for attempt in range(tries):
        r = httpx.request(method, url, timeout=kw.pop("timeout", 60), **kw)
        if r.status_code < 500 or attempt == tries - 1:
            r.raise_for_status()
            return r
        time.sleep(1.0 + attempt)
    raise AssertionError("unreachable")


def label_studio_binary() -> Path:
    """The label-studio executable, or a skip (a fail under CI, where scripts/setup.sh must have installed it)."""
    binary = LS_VENV / "bin" / "label-studio"
    if not binary.exists():
        message = f"Label Studio is not installed in {LS_VENV}: run scripts/setup_label_studio.sh"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return binary


class LabelStudioServer:
    """One Label Studio process; ``restart`` keeps its data folder (database) and port."""

    def __init__(self, data_dir: Path, log: Path) -> None:
        self.binary = label_studio_binary()
        self.data_dir, self.log, self.port = data_dir, log, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 300.0) -> LabelStudioServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        database, migrated = self.data_dir / "label_studio.sqlite3", LS_VENV / "empty-db" / "label_studio.sqlite3"
        if not database.exists() and migrated.exists():  # skip minutes of first-start migrations (setup made it)
            shutil.copyfile(migrated, database)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HTTP_PROXY", "HTTPS_PROXY"))}
        env.update(OFFLINE_ENV, LABEL_STUDIO_BASE_DATA_DIR=str(self.data_dir), HOME=str(self.data_dir))
        env.pop("PYTHONPATH", None)
        cmd = [str(self.binary), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(self.port),
               "--data-dir", str(self.data_dir), "--username", ADMIN_EMAIL, "--password", ADMIN_PASSWORD,
               "--user-token", ADMIN_TOKEN, "--enable-legacy-api-token", "--log-level", "WARNING"]  # fmt: skip
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         cwd=self.data_dir, start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"label-studio exited with {self.proc.returncode}; see {self.log}")
            try:
                r = httpx.get(self.url + "/api/current-user/whoami", headers=self.admin_headers, timeout=5)
                if r.status_code == 200 and r.json().get("email") == ADMIN_EMAIL:  # ours, not a squatter on the port
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(1.0)
        raise TimeoutError(f"label-studio did not answer within {timeout} s; see {self.log}")

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {ADMIN_TOKEN}"}

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the process group we started (runserver has no children today, but may)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        self.proc = None

    def restart(self, sig: int = signal.SIGKILL) -> None:
        self.stop(sig)
        self.start()

    def personal_access_token(self) -> str:
        """A personal access token of the admin (what a team hands the connector; a JWT refresh token)."""
        r = httpx.post(self.url + "/api/token/", headers=self.admin_headers, timeout=30)
        r.raise_for_status()
        return r.json()["token"]

    def sign_up(self, email: str, password: str) -> str:
        """An annotator signs up through the web form, then reads their API token; returns it."""
        with httpx.Client(base_url=self.url, timeout=60) as web:
            page = web.get("/user/signup/")
            csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
            assert csrf, "no CSRF token on the sign-up page"
            r = web.post("/user/signup/", data={"csrfmiddlewaretoken": csrf.group(1), "email": email,
                                                "password": password, "allow_newsletters": "false"},
                         headers={"Referer": self.url + "/user/signup/"})  # fmt: skip
            assert r.status_code in (200, 302), r.text[:300]
            for attempt in range(6):  # the first request after sign-up may meet a busy SQLite (500): reload
                token = web.get("/api/current-user/token")
                if token.status_code < 500:
                    break
                time.sleep(1.0 + attempt)
            token.raise_for_status()
            return token.json()["token"]

