"""Which layer each input goes to, and the order of the layers: decided from names alone.

The plan is pure: it looks at package and project names, never at files, so the pipeline can
work out every stage's cache key before anything is unpacked.
"""

from __future__ import annotations

import hashlib

from packaging.utils import canonicalize_name

from hardflow.spec import ImageSpec

WHEEL_LAYERS = 8  # third-party wheels are spread over this many layers (see wheel_layer)
# the paths the hardflow layer writes (accounts, os-release): removed from the Debian layers
# when a package ships them, so that no path is in two layers
HARDFLOW_WRITES = ("etc/passwd", "etc/group", "etc/shadow", "etc/nsswitch.conf",
                   "etc/os-release", "usr/lib/os-release")  # fmt: skip
PYTHON_PACKAGES_PREFIXES = ("python3", "libpython3")
# the spec's DAG and plugin folders (``[image] dags`` / ``plugins``): the image's top layer, so
# that editing a DAG changes that layer alone (see hardflow.build.baked)
BAKED_LAYER = "baked"


def deb_layer(name: str) -> str:
    return "python-runtime" if name.startswith(PYTHON_PACKAGES_PREFIXES) else "debian-base"


def wheel_layer(name: str, buckets: int = WHEEL_LAYERS) -> str:
    """The layer a wheel goes to: ``airflow`` for Airflow's own distributions, else one of
    ``buckets`` layers ``wheels-<i>`` chosen by a hash of the project name.

    The rule is stable: a package keeps its layer across versions, and adding or removing one
    package changes only its own layer. A version change therefore rebuilds one small layer
    instead of every third-party wheel.
    """
    canonical = canonicalize_name(name)
    if canonical.startswith("apache-airflow"):
        return "airflow"
    if buckets <= 1:
        return "wheels"
    digest = hashlib.sha256(canonical.encode()).digest()
    return f"wheels-{int.from_bytes(digest[:4], 'big') % buckets}"


def layer_order(buckets: int = WHEEL_LAYERS) -> tuple[str, ...]:
    """Every possible layer name, stable (Debian) to volatile (the spec's own files, then the
    baked DAG and plugin folders)."""
    wheels = ("wheels",) if buckets <= 1 else tuple(f"wheels-{i}" for i in range(buckets))
    return ("debian-base", "python-runtime", *wheels, "airflow", "hardflow", BAKED_LAYER)


def debian_release(spec: ImageSpec) -> tuple[str, str]:
    """(codename, VERSION_ID) of the spec's Debian release ("" when unknown)."""
    codename = next((s for s in spec.debian.suites if "-" not in s), spec.debian.suites[0])
    return codename, {"bookworm": "12", "trixie": "13", "forky": "14"}.get(codename, "")
