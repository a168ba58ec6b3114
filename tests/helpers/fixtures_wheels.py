"""Test helpers: tiny wheels and a tiny local simple-API index (PEP 503 HTML + PEP 691 JSON).

Everything is made by the tests themselves; nothing here talks to a real index.

    wheel = build_wheel(tmp_path, "alpha", "1.0", requires=["beta>=1"])
    root = write_index(tmp_path / "index", [wheel, ...])     # root/simple/<name>/, root/files/
    with IndexServer(root) as server:                         # http://127.0.0.1:PORT/simple
        ...
"""

from __future__ import annotations

import base64
import hashlib
import html
import http.server
import json
import threading
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

from packaging.utils import canonicalize_name, parse_wheel_filename

SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"
# A fixed zip timestamp, so the same arguments give the same bytes.
_ZIP_DATE = (2020, 1, 1, 0, 0, 0)


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode()


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_wheel(
    directory: Path,
    name: str,
    version: str,
    *,
    tag: str = "py3-none-any",
    requires: Sequence[str] = (),
    files: Mapping[str, bytes] | None = None,
    console_scripts: Mapping[str, str] | None = None,
    data: Mapping[str, bytes] | None = None,
    executables: Sequence[str] = (),
    extra_members: Mapping[str, bytes] | None = None,
    bad_hash_for: str | None = None,
    requires_python: str | None = None,
) -> Path:
    """Write a valid wheel ``<name>-<version>-<tag>.whl`` into ``directory``.

    ``files``: members relative to the wheel root (default: ``<pkg>/__init__.py``).
    ``data``: members under ``<dist>-<ver>.data/`` (e.g. ``scripts/tool``, ``data/share/x``).
    ``executables``: member names written with mode 0755.
    ``extra_members``: written as given *and* listed in RECORD with correct hashes (use it
    for hostile names like ``../evil.py``). ``bad_hash_for``: a member whose RECORD hash is
    made wrong on purpose.
    """
    dist = name.replace("-", "_")
    pkg = canonicalize_name(name).replace("-", "_")
    dist_info = f"{dist}-{version}.dist-info"
    data_dir = f"{dist}-{version}.data"
    members: dict[str, bytes] = {}
    contents = dict(files) if files is not None else {f"{pkg}/__init__.py": b"VALUE = 1\n"}
    members.update(contents)
    for rel, body in (data or {}).items():
        members[f"{data_dir}/{rel}"] = body
    members.update(extra_members or {})
    metadata = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    metadata += [f"Requires-Dist: {r}" for r in requires]
    if requires_python:
        metadata.append(f"Requires-Python: {requires_python}")
    members[f"{dist_info}/METADATA"] = ("\n".join(metadata) + "\n\n").encode()
    members[f"{dist_info}/WHEEL"] = (
        f"Wheel-Version: 1.0\nGenerator: hardflow-tests\nRoot-Is-Purelib: "
        f"{'true' if tag.endswith('-none-any') else 'false'}\nTag: {tag}\n\n"
    ).encode()
    if console_scripts:
        lines = ["[console_scripts]"] + [f"{k} = {v}" for k, v in console_scripts.items()]
        members[f"{dist_info}/entry_points.txt"] = ("\n".join(lines) + "\n").encode()
    record_lines = []
    for member, body in members.items():
        digest = _record_hash(body)
        if member == bad_hash_for:
            digest = _record_hash(body + b"tampered")
        record_lines.append(f"{member},{digest},{len(body)}")
    record_lines.append(f"{dist_info}/RECORD,,")
    members[f"{dist_info}/RECORD"] = ("\n".join(record_lines) + "\n").encode()

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{dist}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for member, body in members.items():
            info = zipfile.ZipInfo(member, date_time=_ZIP_DATE)
            mode = 0o755 if member in executables else 0o644
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, body)
    return path


def write_index(root: Path, wheels: Sequence[Path]) -> Path:
    """A static simple index at ``root``: ``simple/<project>/index.html`` + ``index.json``,
    ``simple/index.html`` and the files under ``files/``. Returns ``root``."""
    files_dir = root / "files"
    files_dir.mkdir(parents=True, exist_ok=True)
    projects: dict[str, list[Path]] = {}
    for wheel in wheels:
        target = files_dir / wheel.name
        target.write_bytes(wheel.read_bytes())
        project = canonicalize_name(parse_wheel_filename(wheel.name)[0])
        projects.setdefault(project, []).append(target)
    simple = root / "simple"
    simple.mkdir(exist_ok=True)
    for project, paths in sorted(projects.items()):
        page = simple / project
        page.mkdir(exist_ok=True)
        anchors, entries = [], []
        for p in sorted(paths):
            digest = sha256_file(p)
            href = f"../../files/{quote(p.name)}"
            anchors.append(f'<a href="{html.escape(href)}#sha256={digest}">{p.name}</a><br>')
            entries.append(
                {
                    "filename": p.name,
                    "url": href,
                    "hashes": {"sha256": digest},
                    "size": p.stat().st_size,
                }
            )
        (page / "index.html").write_text(
            "<!DOCTYPE html><html><body>\n" + "\n".join(anchors) + "\n</body></html>\n"
        )
        versions = sorted({str(parse_wheel_filename(p.name)[1]) for p in paths})
        (page / "index.json").write_text(
            json.dumps(
                {
                    "meta": {"api-version": "1.1"},
                    "name": project,
                    "versions": versions,
                    "files": entries,
                }
            )
        )
    (simple / "index.html").write_text(
        "<!DOCTYPE html><html><body>\n"
        + "\n".join(f'<a href="{p}/">{p}</a>' for p in sorted(projects))
        + "\n</body></html>\n"
    )
    return root


@dataclass
class IndexServer:
    """Serve a :func:`write_index` tree on 127.0.0.1 in a thread.

    ``json=True``: answer PEP 691 JSON to clients that accept it, HTML otherwise.
    ``json=False``: always HTML (an old PEP 503-only index). ``requests`` logs the paths asked.
    """

    root: Path
    json: bool = True
    requests: list[tuple[str, str]] = field(default_factory=list)  # (path, Accept)

    def __enter__(self) -> IndexServer:
        server_ref = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args: object, **kwargs: object) -> None:
                super().__init__(*args, directory=str(server_ref.root), **kwargs)  # type: ignore[arg-type]

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                accept = self.headers.get("Accept", "")
                server_ref.requests.append((self.path, accept))
                path = self.path.split("?", 1)[0]
                if path.startswith("/simple/") and path.endswith("/"):
                    page = server_ref.root / path.lstrip("/")
                    if server_ref.json and SIMPLE_JSON in accept and (page / "index.json").exists():
                        self._send(page / "index.json", SIMPLE_JSON)
                        return
                    if (page / "index.html").exists():
                        self._send(page / "index.html", "text/html")
                        return
                super().do_GET()

            def _send(self, path: Path, content_type: str) -> None:
                body = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def url(self) -> str:
        """The simple index URL."""
        return f"{self.base}/simple"

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
