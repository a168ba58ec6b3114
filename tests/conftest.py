"""Fixtures every test folder may use: the podman engine and the embedded specs' images.

They are session-scoped so that an image is built once however many test modules ask for it.
Building needs the network and minutes: only tests marked ``slow`` (and ``podman`` where they
load the image) use the image fixtures.
"""

from __future__ import annotations

import pytest

from hardflow.build.pipeline import BuildOptions, BuildResult, build
from hardflow.build.platforms import build_image
from hardflow.lock.fetch import Cache
from hardflow.lock.model import read_lock
from hardflow.run.engine import Engine
from hardflow.spec import resolve_spec_arg
from helpers.loaded_images import LoadedImage, ensure_loaded
from helpers.podman import podman_or_skip


@pytest.fixture(scope="session")
def podman() -> Engine:
    """The podman engine; skips the test when podman is not usable here."""
    return podman_or_skip()


@pytest.fixture(scope="session")
def default_build(tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    """The embedded default spec built from the real archives (with the user's download
    cache), once per session: its layout and archive, not loaded into any engine."""
    spec, lock_path = resolve_spec_arg(None)
    out = tmp_path_factory.mktemp("build-default") / "out"
    result = build(spec, read_lock(lock_path), lock_path, BuildOptions(out_dir=out, cache=Cache()))
    assert result.image.archive_path is not None
    return result


@pytest.fixture(scope="session")
def multiplatform_build(tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    """The embedded ``airflow-multiplatform`` spec (linux/amd64 + linux/arm64) built from the
    real archives once per session: an OCI image index, no docker-archive. Every layer is made
    anew (no layer cache), so its digests prove what a fresh machine's build gives."""
    spec, lock_path = resolve_spec_arg("airflow-multiplatform")
    out = tmp_path_factory.mktemp("build-multi") / "out"
    options = BuildOptions(out_dir=out, cache=Cache(), docker_archive=False, layer_cache=False)
    return build_image(spec, read_lock(lock_path), lock_path, options)


@pytest.fixture(scope="session")
def loaded_image(podman: Engine, tmp_path_factory: pytest.TempPathFactory) -> LoadedImage:
    """``loaded_image(spec_name)``: the reference of that embedded spec's image in podman,
    built and loaded unless podman already holds a build of the current spec."""
    refs: dict[str, str] = {}

    def load(spec_name: str) -> str:
        if spec_name not in refs:
            work = tmp_path_factory.mktemp(f"build-{spec_name}")
            refs[spec_name] = ensure_loaded(podman, spec_name, work)
        return refs[spec_name]

    return load

