"""A bytecode compiler for builds in tests: the host's interpreter instead of the image's."""

from __future__ import annotations

import py_compile
from collections.abc import Sequence
from pathlib import Path

from hardflow.spec import ImageSpec


def host_compiler(root: Path, sources: Sequence[tuple[str, str]], spec: ImageSpec) -> None:
    from importlib.util import cache_from_source

    for src, shown in sources:
        py_compile.compile(
            str(root / src),
            cfile=cache_from_source(str(root / src)),
            dfile=shown,
            doraise=True,
            invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
        )
