"""The per-layer build cache and zstd layers, on the fixture world of test_build_pipeline."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import zstandard
from test_build_pipeline import World, world  # noqa: F401 - world is a fixture

from hardflow.bench.builds import layers_changed, with_wheel
from hardflow.build.layercache import LayerCache
from hardflow.build.pipeline import BuildResult
from hardflow.build.plan import wheel_layer
from hardflow.lock.fetch import Artifact, Cache
from hardflow.lock.model import LockedWheel, read_lock, write_lock
from hardflow.oci.layer import Layer, open_layer
from hardflow.oci.writer import MEDIA_LAYER_GZIP, MEDIA_LAYER_ZSTD
from helpers.fixtures_wheels import build_wheel, sha256_file


def tar_bytes(layer: Layer) -> bytes:
    with open_layer(layer.path) as stream:
        return stream.read()


def manifest(result: BuildResult) -> dict[str, object]:
    blobs = result.image.layout_dir / "blobs" / "sha256"
    data = json.loads((blobs / result.image.manifest_digest.split(":")[1]).read_bytes())
    assert isinstance(data, dict)
    return data


def digests(result: BuildResult) -> dict[str, str]:
    return {layer.name: layer.digest for layer in result.image.layers}


def test_zstd_layers_hold_the_gzip_layers_tars(world: World) -> None:  # noqa: F811
    gz = world.build("gz", layer_cache=False)
    zs = world.build("zs", layer_cache=False, compression="zstd")
    zs2 = world.build("zs2", layer_cache=False, compression="zstd")
    assert zs.image.manifest_digest == zs2.image.manifest_digest  # deterministic
    assert zs.image.manifest_digest != gz.image.manifest_digest
    # same tars: same diff_ids, hence the same config (the engine's image ID)
    assert zs.image.config_digest == gz.image.config_digest
    for a, b in zip(gz.image.layers, zs.image.layers, strict=True):
        assert (a.name, a.diff_id) == (b.name, b.diff_id)
        assert b.compression == "zstd" and b.path.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"
        assert tar_bytes(a) == tar_bytes(b)
        assert zstandard.ZstdDecompressor().decompressobj().decompress(
            b.path.read_bytes()
        ) == tar_bytes(a)
    layers = manifest(zs)["layers"]
    assert isinstance(layers, list)
    assert {x["mediaType"] for x in layers} == {MEDIA_LAYER_ZSTD}
    assert {x["mediaType"] for x in manifest(gz)["layers"]} == {MEDIA_LAYER_GZIP}  # type: ignore[attr-defined]
    summary = json.loads((world.root / "zs/out/build.json").read_text())
    assert summary["compression"] == "zstd"
    # the docker-archive carries the gzip layers: byte for byte the gzip build's blobs
    assert zs.image.archive_path is not None
    with tarfile.open(zs.image.archive_path) as archive:
        f = archive.extractfile("manifest.json")
        assert f is not None
        docker = json.loads(f.read())
    assert docker[0]["Layers"] == [
        f"blobs/sha256/{x.digest.split(':')[1]}" for x in gz.image.layers
    ]
    assert any("gzip" in note for note in zs.notes)


def test_layer_cache_gives_the_uncached_digest_and_builds_nothing(world: World) -> None:  # noqa: F811
    cold = world.build("cold")
    names = [layer.name for layer in cold.image.layers]
    assert cold.layers_built == tuple(names) and cold.layers_cached == ()
    warm = world.build("warm")
    assert warm.layers_built == () and warm.layers_cached == tuple(names)
    fresh = world.build("fresh", layer_cache=False)
    assert fresh.layers_built == tuple(names)
    assert cold.image.manifest_digest == warm.image.manifest_digest == fresh.image.manifest_digest
    # the figures of the build survive the cache
    assert warm.setuid_cleared == cold.setuid_cleared == ("usr/bin/chsh",)
    assert warm.pyc_compiled == cold.pyc_compiled > 0
    assert warm.notes == cold.notes and warm.files == cold.files
    summary = json.loads((world.root / "warm/out/build.json").read_text())
    assert summary["layers_cached"] == names and summary["layers_built"] == []
    # the layout is complete although nothing was written by this build
    for layer in warm.image.layers:
        assert sha256_file(layer.path) == layer.digest.split(":")[1]


def test_one_wheel_version_change_rebuilds_only_its_layer(world: World) -> None:  # noqa: F811
    base = world.build("base")
    lock = read_lock(world.lock_path)
    whl = build_wheel(world.root / "new-wheels", "beta", "2.1",
                      files={"beta/__init__.py": b"VALUE = 21\n"})  # fmt: skip
    sha = sha256_file(whl)
    cache = Cache(world.root / "cache")
    cache.get(Artifact(whl.name, sha, whl.stat().st_size, lambda: [whl.as_uri()]))
    changed = with_wheel(lock, LockedWheel("beta", "2.1", whl.name, sha, whl.stat().st_size))
    changed_path = world.root / "changed.lock.json"
    write_lock(changed, changed_path)
    from test_build_pipeline import host_compiler

    from hardflow.build.pipeline import BuildOptions, build

    one = build(world.spec, changed, changed_path, BuildOptions(
        out_dir=world.root / "one/out", cache=cache, work_dir=world.root / "one/work",
        compiler=host_compiler,
    ))  # fmt: skip
    beta = wheel_layer("beta")
    assert beta != wheel_layer("alpha")  # the fixture's two wheels sit in two layers
    assert layers_changed(base.image.layers, one.image.layers) == (beta,)
    assert one.layers_built == (beta,)
    assert beta not in one.layers_cached and len(one.layers_cached) == len(base.layers_built) - 1
    before, after = digests(base), digests(one)
    assert {n for n in before if before[n] != after[n]} == {beta}


def test_a_corrupt_cache_entry_is_detected_and_rebuilt(world: World) -> None:  # noqa: F811
    first = world.build("first")
    layers = LayerCache(Cache(world.root / "cache"))
    victim = first.image.layers[1]  # python-runtime: its stage makes debian-base too
    blob = layers.blob_path(victim.digest)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.unlink()  # the out/ layout holds a hard link to the same file: leave it alone
    blob.write_bytes(bytes(data))
    second = world.build("second")
    assert second.image.manifest_digest == first.image.manifest_digest
    assert set(second.layers_built) == {"debian-base", "python-runtime"}
    assert any("layer cache" in n and victim.name in n for n in second.notes)
    assert sha256_file(layers.blob_path(victim.digest)) == victim.digest.split(":")[1]
    # an entry that is not JSON any more is a miss too
    entry = next(p for p in layers.root.rglob("*.json"))
    entry.write_text("{not json")
    third = world.build("third")
    assert third.image.manifest_digest == first.image.manifest_digest
    assert len(third.layers_built) >= 1
    assert any("unreadable layer cache entry" in n for n in third.notes)


def test_no_layer_cache_rebuilds_every_layer(world: World) -> None:  # noqa: F811
    world.build("a")
    again = world.build("b", layer_cache=False)
    assert again.layers_cached == ()
    assert again.layers_built == tuple(layer.name for layer in again.image.layers)


def test_blob_lookup_of_a_missing_entry_is_a_plain_miss(tmp_path: Path) -> None:
    found = LayerCache(Cache(tmp_path)).get("0" * 64)
    assert found.output is None and found.problem is None


def test_build_command_offers_compression_and_no_layer_cache() -> None:
    from click.testing import CliRunner

    from hardflow.cli import cli

    runner = CliRunner()
    text = runner.invoke(cli, ["build", "--help"]).output
    assert "--compression [gzip|zstd]" in text and "--no-layer-cache" in text
    bad = runner.invoke(cli, ["build", "--compression", "xz"])
    assert bad.exit_code == 2 and "xz" in bad.output


def test_a_changed_spec_file_rebuilds_only_the_hardflow_layer(world: World) -> None:  # noqa: F811
    first = world.build("first")
    world.spec_path.write_text(world.spec_path.read_text().replace("print('hello')",
                                                                   "print('bye')"))  # fmt: skip
    second = world.build("second")
    assert second.layers_built == ("hardflow",)
    assert layers_changed(first.image.layers, second.image.layers) == ("hardflow",)
