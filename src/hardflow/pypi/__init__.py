"""Python packages: lock with uv (``resolve``), check the result and explain a missing wheel
(``checks``), locate locked wheels (``index``), install them into the image tree for the target
interpreter (``install``)."""

from __future__ import annotations

from hardflow.pypi.index import IndexConfig, default_index_url, index_config_from_host, wheel_url
from hardflow.pypi.install import InstalledWheel, install_wheel
from hardflow.pypi.resolve import resolve, select_wheel, target_tags

__all__ = [
    "IndexConfig",
    "InstalledWheel",
    "default_index_url",
    "index_config_from_host",
    "install_wheel",
    "resolve",
    "select_wheel",
    "target_tags",
    "wheel_url",
]
