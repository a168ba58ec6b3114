"""``hardflow deploy ... --oidc-issuer``: log in to Airflow through an OpenID Connect provider.

The FAB auth manager (``AIRFLOW__CORE__AUTH_MANAGER``) logs users in with Flask-AppBuilder's
OAuth support (Authlib, the ``oauth`` extra of ``apache-airflow-providers-fab`` in the default
image). :func:`render_webserver_config` writes FAB's ``webserver_config.py`` for one provider:

- the provider is found through its discovery document (``server_metadata_url``,
  ``ISSUER/.well-known/openid-configuration``); the authorization code flow with PKCE (S256);
- Authlib checks the ID token's signature (the provider's JWKS), expiry, nonce, ``iss`` against
  the discovery document and ``azp``; the rendered security manager also requires the discovery
  document's ``issuer`` and the token's ``iss`` to equal the configured issuer exactly (OpenID
  Connect Discovery 4.3: Authlib does not compare them), the token's ``aud`` to contain the
  client id, and ``azp`` when it names several audiences (OpenID Connect Core 3.1.3.7: Authlib
  checks ``aud`` only through ``azp``, so ``aud: [other], azp: client`` would pass it), and it
  refuses a login without a validated ID token;
- the user is keyed on the token's ``sub`` (``oidc_<sub>``, the only stable identifier OpenID
  Connect promises), never on a name the user may choose, so no IdP account can take over a
  local user such as the break-glass admin;
- the groups come from the ID token's groups claim (``--groups-claim``), else from the userinfo
  endpoint when its ``sub`` is the token's; ``AUTH_ROLES_MAPPING`` maps them to Airflow roles
  (``--role-map GROUP=ROLE``), re-applied at every login (``AUTH_ROLES_SYNC_AT_LOGIN``): moving
  a user between groups changes the role at the next login;
- a user in no mapped group gets no role and no default role: the login is refused.

The client secret never appears in a rendered file, in an environment listing or in a log: the
deployment delivers it as a secret file (compose secret / Kubernetes Secret) and the config reads
it at start from the path in :data:`SECRET_ENV`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from urllib.parse import urlsplit

from hardflow.contract import CONFIG_DIR
from hardflow.errors import HardflowError

FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
PROVIDER_NAME = "oidc"
CONFIG_NAME = "webserver_config.py"
CONFIG_PATH = f"{CONFIG_DIR}/{CONFIG_NAME}"
SECRET_NAME = "oidc_client_secret"
# Not AIRFLOW__*_FILE: the image's entrypoint would expand that into the environment.
SECRET_ENV = "HARDFLOW_OIDC_CLIENT_SECRET_FILE"
DEFAULT_GROUPS_CLAIM = "groups"
DEFAULT_SCOPES = ("openid", "email", "profile", "groups")
# The path FAB's OAuth callback has under the API server (register it at the provider).
CALLBACK_PATH = f"/auth/oauth-authorized/{PROVIDER_NAME}"
MAX_SECRET_BYTES = 4096

# Airflow's built-in FAB roles; a custom role must exist before it can be mapped to.
AIRFLOW_ROLES = ("Admin", "Op", "User", "Viewer", "Public")
_ROLE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}")
_CLAIM_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,127}")
_CLIENT_ID = re.compile(r"[\x21-\x7e]{1,255}")
_SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,64}")  # RFC 6749 scope-token


class OidcError(HardflowError):
    """An --oidc-* or --role-map option is invalid."""


@dataclass(frozen=True)
class OidcSettings:
    """The OpenID Connect login of a deployment (nothing secret: the secret stays a file)."""

    issuer: str
    client_id: str
    client_secret_file: Path  # on the host; read only to copy it into the deployment's secrets
    role_map: Mapping[str, tuple[str, ...]]  # group → roles
    groups_claim: str = DEFAULT_GROUPS_CLAIM
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    custom_roles: tuple[str, ...] = field(default=())  # mapped roles that are not built in

    def __post_init__(self) -> None:
        check_issuer(self.issuer)
        if not _CLIENT_ID.fullmatch(self.client_id):
            raise OidcError(
                f"--oidc-client-id {self.client_id!r}: expected 1 to 255 visible ASCII "
                "characters (no spaces)"
            )
        if not self.role_map:
            raise OidcError(
                "--oidc-issuer needs at least one --role-map GROUP=ROLE: without one, every "
                "login would be refused (a user in no mapped group gets no role)"
            )
        if not _CLAIM_NAME.fullmatch(self.groups_claim):
            raise OidcError(
                f"--groups-claim {self.groups_claim!r}: expected a claim name (letters, digits, "
                "'_', '.', ':', '/', '-'; at most 128 characters)"
            )
        if "openid" not in self.scopes:
            raise OidcError(f"--oidc-scope {' '.join(self.scopes)!r}: expected 'openid' among them")
        for scope in self.scopes:
            if not _SCOPE.fullmatch(scope):
                raise OidcError(f"--oidc-scope {scope!r}: expected a scope token (RFC 6749 3.3)")

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer.rstrip('/')}/.well-known/openid-configuration"


def check_issuer(url: str) -> None:
    """An issuer is an https URL without query, fragment or user info; plain http only on a
    loopback host (a provider on the same machine, as in the tests)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        raise OidcError(f"--oidc-issuer {url!r}: not a URL ({exc})") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise OidcError(f"--oidc-issuer {url!r}: expected https://HOST[/PATH]")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise OidcError(
            f"--oidc-issuer {url!r}: expected no query, fragment or user info (an issuer is "
            "https://HOST[:PORT][/PATH])"
        )
    if any(c.isspace() or c in "\"'\\<>`{}|^" or ord(c) < 0x20 for c in url):
        raise OidcError(
            f"--oidc-issuer {url!r}: expected a URL without spaces, quotes, backslashes or braces"
        )
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise OidcError(
            f"--oidc-issuer {url!r}: expected https; plain http is accepted only for a provider "
            "on a loopback address (127.0.0.1, ::1, localhost)"
        )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_role_map(items: Iterable[str]) -> tuple[dict[str, tuple[str, ...]], tuple[str, ...]]:
    """``GROUP=ROLE`` options → (group → roles, the custom roles among them).

    A group may be given several times (it then grants each role). Role names are case
    sensitive in Airflow: a built-in role in the wrong case ("admin") is an error naming the
    right spelling, since FAB would silently grant nothing.
    """
    mapping: dict[str, list[str]] = {}
    custom: list[str] = []
    for item in items:
        # the last '=': a role name has none, a group may (an LDAP DN: cn=admins,ou=groups)
        group, sep, role = item.rpartition("=")
        group, role = group.strip(), role.strip()
        if not sep:
            raise OidcError(f"--role-map {item!r}: expected GROUP=ROLE (e.g. airflow-admins=Admin)")
        if not group:
            raise OidcError(f"--role-map {item!r}: the group (before '=') is empty")
        if not role:
            raise OidcError(f"--role-map {item!r}: the role (after '=') is empty")
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in group) or len(group) > 256:
            raise OidcError(
                f"--role-map {item!r}: the group has control characters or is longer than 256"
            )
        if role not in AIRFLOW_ROLES:
            same = [r for r in AIRFLOW_ROLES if r.lower() == role.lower()]
            if same:
                raise OidcError(
                    f"--role-map {item!r}: role {role!r} does not exist; Airflow's role is "
                    f"{same[0]!r} (role names are case sensitive)"
                )
            if not _ROLE_NAME.fullmatch(role):
                raise OidcError(
                    f"--role-map {item!r}: role {role!r}: expected one of "
                    f"{', '.join(AIRFLOW_ROLES)} or a custom role name ([A-Za-z0-9 _.-])"
                )
            if role not in custom:
                custom.append(role)
        roles = mapping.setdefault(group, [])
        if role in roles:
            raise OidcError(f"--role-map {item!r}: given twice")
        roles.append(role)
    return {g: tuple(r) for g, r in mapping.items()}, tuple(custom)


def settings(
    issuer: str,
    client_id: str,
    client_secret_file: Path,
    role_map: Iterable[str],
    groups_claim: str = DEFAULT_GROUPS_CLAIM,
    scopes: Iterable[str] = DEFAULT_SCOPES,
) -> OidcSettings:
    """The settings the options give, checked (the secret file too: readable and plausible)."""
    mapping, custom = parse_role_map(role_map)
    result = OidcSettings(
        issuer=issuer,
        client_id=client_id,
        client_secret_file=client_secret_file,
        role_map=MappingProxyType(mapping),
        groups_claim=groups_claim,
        scopes=tuple(scopes),
        custom_roles=custom,
    )
    read_client_secret(client_secret_file)
    return result


def read_client_secret(path: Path) -> str:
    """The client secret in ``path`` (surrounding white space removed). Errors name the file,
    never the value."""
    opt = f"--oidc-client-secret-file {path}"
    try:
        if not path.is_file():
            raise OidcError(f"{opt}: expected a file, found none (or not a regular file)")
        with path.open("rb") as fh:
            raw = fh.read(MAX_SECRET_BYTES + 1)
    except OSError as exc:
        raise OidcError(f"{opt}: cannot read it ({exc.strerror})") from None
    if len(raw) > MAX_SECRET_BYTES:
        raise OidcError(
            f"{opt}: expected a client secret, found more than {MAX_SECRET_BYTES} bytes"
        )
    try:
        value = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise OidcError(f"{opt}: expected UTF-8 text, found binary data") from None
    if not value:
        raise OidcError(f"{opt}: the file is empty; expected the client secret")
    if any(c.isspace() or ord(c) < 0x20 for c in value):
        raise OidcError(
            f"{opt}: expected the secret on one line without spaces, found white space or "
            "control characters inside it"
        )
    return value


def airflow_env(config_path: str, secret_path: str | None) -> dict[str, str]:
    """What an Airflow component of an OIDC deployment gets: the FAB auth manager, the rendered
    config, and (API server only) the path of the client secret file."""
    env = {
        "AIRFLOW__CORE__AUTH_MANAGER": FAB_AUTH_MANAGER,
        "AIRFLOW__FAB__CONFIG_FILE": config_path,
    }
    if secret_path:
        env[SECRET_ENV] = secret_path
    return env


def callback_url(api_url: str) -> str:
    """The redirect URI to register for the client at the provider."""
    return f"{api_url.rstrip('/')}{CALLBACK_PATH}"


_TEMPLATE = '''\
"""FAB's web configuration, rendered by `hardflow deploy ... --oidc-issuer`: users log in through
OpenID Connect at {issuer}.

Nothing secret is in this file: the client secret is read at start from the file named by
${secret_env} (a compose secret or a Kubernetes Secret). Users are keyed on the ID token's `sub`;
their roles come from the groups claim {groups_claim!r} through AUTH_ROLES_MAPPING at every login;
a user in no mapped group is refused. See hardflow.deploy.oidc.
"""

from __future__ import annotations

import logging
import os

from airflow.providers.fab.auth_manager.security_manager.override import (
    FabAirflowSecurityManagerOverride,
)
from flask_appbuilder.const import AUTH_OAUTH

log = logging.getLogger(__name__)

OIDC_ISSUER = {issuer!r}
OIDC_PROVIDER = {provider!r}
OIDC_CLIENT_ID = {client_id!r}
OIDC_GROUPS_CLAIM = {groups_claim!r}
OIDC_SECRET_VARIABLE_NAME = {secret_env!r}


def _client_secret():
    """The client secret from the deployment's secret file; None in a process that has none
    (only the API server logs users in)."""
    path = os.environ.get(OIDC_SECRET_VARIABLE_NAME, "")
    if not path:
        log.info("%s is not set: this process cannot log users in through OpenID Connect",
                 OIDC_SECRET_VARIABLE_NAME)
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            value = fh.read().strip()
    except OSError as exc:
        raise RuntimeError(f"{{OIDC_SECRET_VARIABLE_NAME}}={{path}}: cannot read the OpenID "
                           f"Connect client secret ({{exc.strerror}})") from None
    if not value:
        raise RuntimeError(f"{{OIDC_SECRET_VARIABLE_NAME}}={{path}}: the file is empty; expected "
                           "the OpenID Connect client secret")
    return value


class OidcSecurityManager(FabAirflowSecurityManagerOverride):
    """FAB's security manager with the identity taken from the validated ID token."""

    def get_oauth_user_info(self, provider, resp):
        remote = self.oauth_remotes[provider]
        claims = resp.get("userinfo")  # Authlib's validated ID token claims
        if not claims or not claims.get("sub"):
            raise ValueError("the provider returned no validated ID token: login refused")
        metadata_issuer = remote.load_server_metadata().get("issuer")
        if metadata_issuer != OIDC_ISSUER or claims.get("iss") != OIDC_ISSUER:
            raise ValueError(f"issuer mismatch: configured {{OIDC_ISSUER!r}}, discovery "
                             f"document {{metadata_issuer!r}}, ID token {{claims.get('iss')!r}}")
        audience = claims.get("aud")
        audiences = [audience] if isinstance(audience, str) else list(audience or [])
        if OIDC_CLIENT_ID not in audiences or (
            len(audiences) > 1 and claims.get("azp") != OIDC_CLIENT_ID
        ):
            raise ValueError(f"audience mismatch: the ID token is for {{audiences!r}} (azp "
                             f"{{claims.get('azp')!r}}), expected {{OIDC_CLIENT_ID!r}}")
        claims = dict(claims)
        if OIDC_GROUPS_CLAIM not in claims and remote.server_metadata.get("userinfo_endpoint"):
            extra = remote.userinfo(token=resp)
            if extra.get("sub") != claims["sub"]:
                raise ValueError("the userinfo endpoint answered for another subject")
            for key, value in extra.items():
                claims.setdefault(key, value)
        groups = claims.get(OIDC_GROUPS_CLAIM) or []
        if isinstance(groups, str):
            groups = [groups]
        return {{
            "username": f"{{provider}}_{{claims['sub']}}",
            "email": claims.get("email", ""),
            "first_name": claims.get("given_name", "") or claims.get("preferred_username", ""),
            "last_name": claims.get("family_name", ""),
            "role_keys": [g for g in groups if isinstance(g, str)],
        }}

    def _oauth_calculate_user_roles(self, userinfo):
        # the mapped roles only: never AUTH_USER_REGISTRATION_ROLE's default role
        return list(self.get_roles_from_keys(userinfo.get("role_keys", [])))

    def auth_user_oauth(self, userinfo, rotate_session_id=True):
        if not self.get_roles_from_keys(userinfo.get("role_keys", [])):
            log.warning("OpenID Connect login of %s refused: in no mapped group (%s)",
                        userinfo.get("username"), ", ".join(sorted(AUTH_ROLES_MAPPING)))
            return None
        return super().auth_user_oauth(userinfo, rotate_session_id)


SECURITY_MANAGER_CLASS = OidcSecurityManager

WTF_CSRF_ENABLED = True
WTF_CSRF_TIME_LIMIT = None

AUTH_TYPE = AUTH_OAUTH
AUTH_USER_REGISTRATION = True
AUTH_USER_REGISTRATION_ROLE = None
AUTH_ROLES_SYNC_AT_LOGIN = True
AUTH_ROLES_MAPPING = {role_map!r}

OAUTH_PROVIDERS = [
    {{
        "name": OIDC_PROVIDER,
        "icon": "fa-openid",
        # the field of the provider's token response FAB keeps as the session's token
        "token_key": "access_token",
        "remote_app": {{
            "client_id": OIDC_CLIENT_ID,
            "client_secret": _client_secret(),
            "server_metadata_url": {discovery_url!r},
            "client_kwargs": {{"scope": {scope!r}, "code_challenge_method": "S256"}},
        }},
    }}
]
'''


def render_webserver_config(oidc: OidcSettings) -> str:
    """FAB's ``webserver_config.py`` for ``oidc``: every value a Python literal (``repr``), so
    no option can inject code; checked to compile."""
    text = _TEMPLATE.format(
        issuer=oidc.issuer,
        provider=PROVIDER_NAME,
        groups_claim=oidc.groups_claim,
        secret_env=SECRET_ENV,
        role_map={group: list(roles) for group, roles in oidc.role_map.items()},
        client_id=oidc.client_id,
        discovery_url=oidc.discovery_url,
        scope=" ".join(oidc.scopes),
    )
    compile(text, CONFIG_NAME, "exec")
    return text
