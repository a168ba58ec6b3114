"""The pieces of the OIDC end-to-end test (``test_deploy_e2e_oidc.py``): the OpenID Connect
provider process, the Airflow API server container, and the browser login.

The provider is panva's ``oidc-provider`` from the npm registry (``oidc_provider/``: the script,
its package.json and the package-lock.json that pins it with integrity hashes). Why this one:
it is an OpenID Foundation certified implementation, actively maintained, installs through an
ordinary client (``npm ci``) from a registry this machine reaches, and runs as one Node.js
process on loopback with nothing else (no database, no web server, no image to build), while
letting the test control users, groups, the issuer it advertises and the clock it stamps tokens
with. The alternatives looked at: Debian packages no Keycloak, and its LemonLDAP::NG needs a web
server, FastCGI and a configuration backend; the PyPI servers (idpyoidc, django-oidc-provider)
are libraries around which an application would have to be written. It runs hardened: as
``nobody`` with no capabilities and no-new-privileges (``setpriv``) when the test runs as root,
its files copied to a private directory, listening on 127.0.0.1 on a port the kernel chooses.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

PROVIDER_SOURCE = Path(__file__).parent / "oidc_provider"
PROVIDER_FILES = ("package.json", "package-lock.json")  # what npm ci installs from
PROVIDER_SCRIPT = "provider.mjs"  # copied afresh into each run's private copy
NOBODY = 65534
MIN_NODE = (20, 19)


def node_version() -> tuple[int, int] | None:
    node = shutil.which("node")
    if not node:
        return None
    done = subprocess.run([node, "--version"], capture_output=True, text=True, check=False)
    major, _, rest = done.stdout.strip().lstrip("v").partition(".")
    try:
        return int(major), int(rest.partition(".")[0])
    except ValueError:
        return None


def require_node() -> None:
    """Skip when Node.js or npm is absent (the skip reason says so); fail, not skip, when
    Node.js is too old for the pinned provider: the CI machine has a recent one."""
    missing = [name for name in ("node", "npm") if not shutil.which(name)]
    if missing:
        pytest.skip(
            f"{' and '.join(missing)} not installed: the OIDC login test runs panva's "
            f"oidc-provider (npm ci) and needs Node.js >= {MIN_NODE[0]}.{MIN_NODE[1]} and npm"
        )
    version = node_version()
    if version is None or version < MIN_NODE:
        pytest.fail(
            f"Node.js {version and '.'.join(map(str, version))} at {shutil.which('node')}: "
            f"the pinned oidc-provider needs Node.js >= {MIN_NODE[0]}.{MIN_NODE[1]} (its "
            "package.json engines); install a newer nodejs on this machine",
            pytrace=False,
        )


def hardflow_cache() -> Path:
    """``~/.cache/hardflow`` (``$XDG_CACHE_HOME/hardflow``): the provider's install lives there."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    cache = Path(base) / "hardflow"
    cache.mkdir(parents=True, exist_ok=True)
    return cache


def install_provider(cache: Path) -> Path:
    """``npm ci`` of the pinned provider (package-lock.json, integrity checked) into ``cache``,
    once per lock; npm's own download cache is kept there too. Its directory."""
    digest = hashlib.sha256()
    for name in PROVIDER_FILES:
        digest.update((PROVIDER_SOURCE / name).read_bytes())
    target = cache / f"oidc-provider-{digest.hexdigest()[:16]}"
    if (target / "node_modules" / "oidc-provider" / "package.json").is_file():
        return target
    work = Path(tempfile.mkdtemp(prefix="oidc-install-", dir=cache))
    for name in PROVIDER_FILES:
        shutil.copy2(PROVIDER_SOURCE / name, work / name)
    cmd = ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error",
           "--prefer-offline", f"--cache={cache / 'npm'}"]  # fmt: skip
    try:
        done = subprocess.run(cmd, cwd=work, timeout=600, capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        shutil.rmtree(work, ignore_errors=True)
        pytest.fail(f"{' '.join(cmd)} in {work}: no answer within 600 s", pytrace=False)
    if done.returncode != 0:
        shutil.rmtree(work, ignore_errors=True)
        pytest.fail(
            f"{' '.join(cmd)} failed ({done.returncode}) for {PROVIDER_SOURCE}/package-lock.json:"
            f"\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}",
            pytrace=False,
        )
    if target.exists():
        shutil.rmtree(work)
    else:
        work.rename(target)
    return target


@dataclass
class Provider:
    """One provider process at a time, restarted in another mode on the same port."""

    home: Path  # private copy of the installed provider, readable by its user
    settings: dict[str, Any]
    process: subprocess.Popen[str] | None = None
    port: int = 0

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, mode: str = "normal") -> None:
        self.stop()
        self.settings.update(mode=mode, port=self.port)
        settings_file = self.home / "settings.json"
        settings_file.write_text(json.dumps(self.settings))
        settings_file.chmod(0o644)
        cmd = [shutil.which("node") or "node", str(self.home / "provider.mjs"), str(settings_file)]
        if os.geteuid() == 0 and shutil.which("setpriv"):
            cmd = [
                "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", *cmd,
            ]  # fmt: skip
        self.process = subprocess.Popen(
            cmd, cwd=self.home, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NODE_ENV": "production"},
        )  # fmt: skip
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            err = self.process.stderr.read() if self.process.stderr else ""
            raise RuntimeError(f"the OIDC provider did not start: {err[-2000:]}")
        self.port = int(json.loads(line)["port"])
        wait_http(f"{self.issuer}/.well-known/openid-configuration", 60)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def set_users(self, users: dict[str, dict[str, Any]]) -> None:
        """Rewrite the directory: read by the provider at every login and token."""
        path = Path(self.settings["users_file"])
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(users))
        tmp.chmod(0o644)
        tmp.replace(path)


def private_home(installed: Path) -> Path:
    """A copy of the provider its unprivileged user can read (the cache may be in /root)."""
    home = Path(tempfile.mkdtemp(prefix="oidc-provider-"))
    home.chmod(0o755)
    shutil.copytree(installed, home / "app", symlinks=True)
    shutil.copy2(PROVIDER_SOURCE / PROVIDER_SCRIPT, home / "app" / PROVIDER_SCRIPT)
    for path in (home / "app", *(home / "app").rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return home / "app"


def wait_http(
    url: str, timeout: float, expect: int = 200, alive: Callable[[], bool] | None = None
) -> None:
    """Wait for ``url`` to answer ``expect``; give up early once ``alive()`` says the server
    is gone."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise TimeoutError(f"{url}: the server stopped ({last})")
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                if resp.status == expect:
                    return
                last = f"HTTP {resp.status}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(2)
    raise TimeoutError(f"{url} did not answer {expect} within {timeout:.0f}s: {last}")


def api(method: str, url: str, token: str | None, body: Any = None) -> tuple[int, Any]:
    """One Airflow REST call: (status, parsed JSON or text)."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            status, text = resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-quic", "--window-size=1280,900",
)  # fmt: skip


def browser(profile: Path) -> Any:
    """Headless Chromium (Debian's chromium + chromium-driver) driven through selenium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    service = Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(180)
    return driver


@dataclass(frozen=True)
class Login:
    token: str | None  # Airflow's JWT (the UI's _token cookie); None when refused
    url: str  # where the browser ended
    page: str  # the page text there


def browser_login(driver: Any, airflow_url: str, user: str, password: str) -> Login:
    """Log in through the provider from a clean browser state; Airflow's token if it worked."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{airflow_url}/auth/login/")
    driver.delete_all_cookies()  # 127.0.0.1: Airflow's and the provider's cookies alike
    driver.get(f"{airflow_url}/auth/login/oidc")
    wait = WebDriverWait(driver, 120)
    wait.until(ec.presence_of_element_located((By.ID, "login")))
    driver.find_element(By.ID, "login").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "submit").click()
    wait.until(
        lambda d: (
            (d.current_url.startswith(airflow_url) and "/oauth-authorized/" not in d.current_url)
            or d.find_elements(By.ID, "error")
        )
    )
    time.sleep(1)  # the redirect chain settles (index -> UI with the token cookie)
    cookie = driver.get_cookie("_token")
    return Login(cookie["value"] if cookie else None, driver.current_url, page_text(driver))


def page_text(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    try:
        return str(driver.find_element(By.TAG_NAME, "body").text)
    except Exception:  # a page in the middle of a navigation
        return ""


# The UI's toasts (en locale). The trigger dialog's own (components.json triggerDag.toaster):
TRIGGERED = "Dag Run Triggered"
TRIGGER_FAILED = "Failed to Trigger Dag"  # any error but 403
# On a 403 the dialog shows nothing of its own: the UI's mutation cache shows common.json's
# errors.forbidden toast instead (the UI's MV() skips 403, its QueryClient's onError shows it).
ACCESS_DENIED = "Access Denied"
NO_PERMISSION = "You do not have permission to perform this action."
TOASTS = (TRIGGERED, TRIGGER_FAILED, ACCESS_DENIED)

# Records which of the words (arguments[0]) the page shows, at every change of the page: a toast
# lives a few seconds and the UI navigates to the new run on success, so polling may miss it.
_WATCH = """
const words = arguments[0];
window.hfSeen = [];
const look = () => {
  const text = document.body ? document.body.textContent : '';
  for (const w of words) if (text.includes(w) && !window.hfSeen.includes(w)) window.hfSeen.push(w);
};
new MutationObserver(look).observe(document, {childList: true, subtree: true, characterData: true});
"""


def ui_trigger(driver: Any, airflow_url: str, dag_id: str) -> str:
    """Trigger ``dag_id`` through the UI's own dialog (the Dag page's Trigger button, then its
    submit button). What it showed: the toasts' words seen (:data:`TOASTS`, :data:`NO_PERMISSION`)
    one a line, then the page's text (after 60 s without a toast: the page's text alone)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, 120)
    driver.get(f"{airflow_url}/dags/{dag_id}")
    button = (By.CSS_SELECTOR, "[data-testid='trigger-dag-button']")
    wait.until(ec.element_to_be_clickable(button)).click()
    submit = (By.CSS_SELECTOR, "[data-testid='trigger-dag-submit']")
    driver.execute_script(_WATCH, [*TOASTS, NO_PERMISSION])
    wait.until(ec.element_to_be_clickable(submit)).click()
    seen: list[str] = []
    with contextlib.suppress(TimeoutException):  # then the page's own words are the answer
        WebDriverWait(driver, 60, poll_frequency=0.2).until(
            lambda d: any(t in d.execute_script("return window.hfSeen || []") for t in TOASTS)
        )
        time.sleep(1)  # the toast's description renders with or just after its title
        seen = list(driver.execute_script("return window.hfSeen || []"))
    return "\n".join([*seen, page_text(driver)])
