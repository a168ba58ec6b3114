"""Index configuration from the host and locating locked wheels on simple-API indexes."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from hardflow.errors import FetchError
from hardflow.pypi.index import (
    SIMPLE_JSON,
    IndexConfig,
    default_index_url,
    index_config_from_host,
    parse_project_page,
    urllib_download,
    wheel_url,
)
from helpers.fixtures_wheels import IndexServer, build_wheel, sha256_file, write_index

# ----------------------------------------------------------------------------- pip.conf mapping


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "xdg"), **extra}


def test_pip_conf_maps_index_and_skips_missing_local_extra(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    present = tmp_path / "present" / "simple"
    present.mkdir(parents=True)
    conf = tmp_path / "xdg" / "pip" / "pip.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text(
        "[global]\n"
        "index-url = http://proxy.test/simple\n"
        f"extra-index-url = {present.as_uri()}\n"
        f"    file://{tmp_path}/missing/simple\n"
        "    http://other.test/simple\n"
        f"find-links = {tmp_path}/nowheels\n"
    )
    caplog.set_level(logging.DEBUG, logger="hardflow.pypi.index")
    # by default only pip's primary index is mapped: extras often serve the host's Python
    plain = index_config_from_host(_env(tmp_path), pip_files=None)
    assert plain.index_url == "http://proxy.test/simple"
    assert plain.extra_index_urls == () and plain.index_strategy is None
    config = index_config_from_host(
        _env(tmp_path, HARDFLOW_PIP_EXTRA_INDEXES="1"), pip_files=None
    )
    assert config.index_url == "http://proxy.test/simple"
    assert config.extra_index_urls == (present.as_uri(), "http://other.test/simple")
    assert config.find_links == ()
    assert config.index_strategy == "unsafe-best-match"
    assert "missing/simple" in caplog.text
    args = config.uv_args()
    assert args[:2] == ["--index-url", "http://proxy.test/simple"]
    assert args.count("--extra-index-url") == 2


def test_pip_precedence_env_over_files(tmp_path: Path) -> None:
    system = tmp_path / "etc-pip.conf"
    system.write_text("[global]\nindex-url = http://system.test/simple\n")
    user = tmp_path / "home" / ".pip" / "pip.conf"
    user.parent.mkdir(parents=True)
    user.write_text("[global]\nindex-url = http://user.test/simple\n")
    explicit = tmp_path / "explicit.conf"
    explicit.write_text("[install]\nindex_url = http://explicit.test/simple\n")

    assert index_config_from_host(_env(tmp_path), pip_files=[system, user]).index_url == (
        "http://user.test/simple"
    )
    env = _env(tmp_path, PIP_CONFIG_FILE=str(explicit), HARDFLOW_PIP_EXTRA_INDEXES="1")
    from hardflow.pypi.index import pip_config_files

    files = pip_config_files(env)
    assert user not in files and files[-1] == explicit  # pip skips user files then
    assert index_config_from_host(env, pip_files=[system, explicit]).index_url == (
        "http://explicit.test/simple"
    )
    env["PIP_INDEX_URL"] = "http://env.test/simple"
    env["PIP_EXTRA_INDEX_URL"] = "http://a.test/simple http://b.test/simple"
    config = index_config_from_host(env, pip_files=[system, explicit])
    assert config.index_url == "http://env.test/simple"
    assert config.extra_index_urls == ("http://a.test/simple", "http://b.test/simple")


def test_no_pip_config_means_uv_defaults(tmp_path: Path) -> None:
    assert index_config_from_host(_env(tmp_path), pip_files=[]) == IndexConfig()


def test_uv_configuration_wins_over_pip(tmp_path: Path) -> None:
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nindex-url = http://pip.test/simple\n")
    env = _env(tmp_path, UV_DEFAULT_INDEX="http://uv.test/simple")
    assert index_config_from_host(env, pip_files=[conf]) == IndexConfig()
    uv_toml = tmp_path / "xdg" / "uv" / "uv.toml"
    uv_toml.parent.mkdir(parents=True)
    uv_toml.write_text('[[index]]\nurl = "http://uv.test/simple"\ndefault = true\n')
    assert index_config_from_host(_env(tmp_path), pip_files=[conf]) == IndexConfig()
    uv_toml.write_text("native-tls = true\n")
    assert index_config_from_host(_env(tmp_path), pip_files=[conf]).index_url == (
        "http://pip.test/simple"
    )


# ----------------------------------------------------------------------------- default index


def test_default_index_url_comes_from_uv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UV_NO_CONFIG", "1")
    for name in ("UV_DEFAULT_INDEX", "UV_INDEX_URL", "UV_INDEX", "UV_EXTRA_INDEX_URL"):
        monkeypatch.delenv(name, raising=False)
    builtin = default_index_url()
    assert builtin.startswith("https://") and builtin.rstrip("/").endswith("/simple")
    monkeypatch.setenv("UV_DEFAULT_INDEX", "http://127.0.0.1:9/mirror/simple")
    assert default_index_url() == "http://127.0.0.1:9/mirror/simple"


# ----------------------------------------------------------------------------- page parsing


def test_parse_json_page_resolves_relative_urls() -> None:
    body = json.dumps(
        {"meta": {"api-version": "1.1"}, "name": "a",
         "files": [{"filename": "a-1-py3-none-any.whl", "url": "../../f/a-1-py3-none-any.whl",
                    "hashes": {"sha256": "ab" * 32}}]}
    ).encode()  # fmt: skip
    (f,) = parse_project_page(body, "http://h.test/simple/a/")
    assert f.url == "http://h.test/f/a-1-py3-none-any.whl"
    assert f.sha256 == "ab" * 32


def test_parse_html_page_with_base_and_fragment() -> None:
    body = (
        b'<html><head><base href="http://cdn.test/x/"></head><body>'
        b'<a href="a-1-py3-none-any.whl#sha256=' + b"cd" * 32 + b'" data-requires-python="&gt;=3">'
        b"a-1-py3-none-any.whl</a><a href='../a-2%2Blocal-py3-none-any.whl'>a</a></body></html>"
    )
    files = parse_project_page(body, "http://h.test/simple/a/")
    assert [(f.filename, f.url, f.sha256) for f in files] == [
        ("a-1-py3-none-any.whl", "http://cdn.test/x/a-1-py3-none-any.whl", "cd" * 32),
        ("a-2+local-py3-none-any.whl", "http://cdn.test/a-2%2Blocal-py3-none-any.whl", None),
    ]


def test_parse_malformed_json_page() -> None:
    with pytest.raises(FetchError, match="malformed"):
        parse_project_page(b'{"files": 3}', "http://h.test/simple/a/")


# ----------------------------------------------------------------------------- wheel_url


@pytest.fixture
def index_root(tmp_path: Path) -> Path:
    wheels = [
        build_wheel(tmp_path / "build", "Alpha_Pkg", "1.0"),
        build_wheel(tmp_path / "build", "beta", "2.0"),
    ]
    return write_index(tmp_path / "index", wheels)


@pytest.fixture
def json_server(index_root: Path) -> Iterator[IndexServer]:
    with IndexServer(index_root, json=True) as server:
        yield server


@pytest.fixture
def html_server(index_root: Path) -> Iterator[IndexServer]:
    with IndexServer(index_root, json=False) as server:
        yield server


def _recording_download(log: list[tuple[str, Mapping[str, str]]]):  # type: ignore[no-untyped-def]
    def download(url: str, headers: Mapping[str, str]) -> bytes:
        log.append((url, headers))
        return urllib_download(url, headers)

    return download


def test_wheel_url_via_json_api(json_server: IndexServer, index_root: Path) -> None:
    calls: list[tuple[str, Mapping[str, str]]] = []
    filename = "Alpha_Pkg-1.0-py3-none-any.whl"
    sha = sha256_file(index_root / "files" / filename)
    url = wheel_url(
        IndexConfig(index_url=json_server.url), "Alpha_Pkg", filename,
        _recording_download(calls), sha256=sha,
    )  # fmt: skip
    assert url == f"{json_server.base}/files/{filename}"
    assert calls[0][0] == f"{json_server.url}/alpha-pkg/"  # PEP 503 normalised name
    assert SIMPLE_JSON in calls[0][1]["Accept"]
    assert json_server.requests[0][0] == "/simple/alpha-pkg/"
    assert urllib_download(url, {}) == (index_root / "files" / filename).read_bytes()


def test_wheel_url_via_html_fallback(html_server: IndexServer) -> None:
    url = wheel_url(
        IndexConfig(index_url=html_server.url), "beta", "beta-2.0-py3-none-any.whl",
        urllib_download,
    )  # fmt: skip
    assert url == f"{html_server.base}/files/beta-2.0-py3-none-any.whl"


def test_wheel_url_tries_extra_indexes(json_server: IndexServer, tmp_path: Path) -> None:
    empty = write_index(tmp_path / "empty", [build_wheel(tmp_path / "b2", "other", "1")])
    with IndexServer(empty) as first:
        config = IndexConfig(index_url=first.url, extra_index_urls=(json_server.url,))
        url = wheel_url(config, "beta", "beta-2.0-py3-none-any.whl", urllib_download)
    assert url.startswith(json_server.base)


def test_wheel_url_static_file_index(index_root: Path) -> None:
    simple = (index_root / "simple").as_uri()
    url = wheel_url(IndexConfig(index_url=simple), "beta", "beta-2.0-py3-none-any.whl",
                    urllib_download)  # fmt: skip
    assert url == (index_root / "files" / "beta-2.0-py3-none-any.whl").as_uri()


def test_wheel_url_find_links_directory(tmp_path: Path, html_server: IndexServer) -> None:
    links = tmp_path / "links"
    build_wheel(links, "gamma", "3.0")
    config = IndexConfig(index_url=html_server.url, find_links=(str(links),))
    url = wheel_url(config, "gamma", "gamma-3.0-py3-none-any.whl", urllib_download)
    assert url == (links / "gamma-3.0-py3-none-any.whl").resolve().as_uri()


def test_wheel_url_missing_names_wheel_indexes_and_hint(json_server: IndexServer) -> None:
    config = IndexConfig(index_url=json_server.url, extra_index_urls=("http://127.0.0.1:9/simple",))
    with pytest.raises(FetchError) as info:
        wheel_url(config, "beta", "beta-9.0-py3-none-any.whl", urllib_download)
    err = info.value
    assert "beta-9.0-py3-none-any.whl" in err.message
    assert json_server.url in err.message and "not listed" in err.message
    assert "127.0.0.1:9" in err.message
    assert err.hint is not None and "hardflow lock --update" in err.hint


def test_wheel_url_hash_mismatch_is_passed_over(json_server: IndexServer) -> None:
    with pytest.raises(FetchError, match="lists it with sha256"):
        wheel_url(
            IndexConfig(index_url=json_server.url), "beta", "beta-2.0-py3-none-any.whl",
            urllib_download, sha256="0" * 64,
        )  # fmt: skip
