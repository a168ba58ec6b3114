"""Assemble the image's file tree from verified packages: the ``assemble`` stage, in one place.

Input: the spec, the verified ``.deb`` and wheel files. Output: one
:class:`~hardflow.build.staging.Stage` per group of layers — a staging directory plus, for every
path, its owner and the layer it belongs to. The hardening passes of the image contract
(DESIGN.md §3) happen in the stages: no docs/man/locales, merged-/usr, no setuid/setgid bits,
nothing world-writable but ``/tmp``, accounts without writing at run time, a generated CA
bundle, dpkg ``status.d`` records and Python ``dist-info`` for scanners, and ``.pyc`` files
compiled by the image's own interpreter in unchecked-hash mode.

The work is split by what it knows:

* :mod:`~hardflow.build.plan` — which layer each input goes to, and the layer order;
* :mod:`~hardflow.build.staging` — the staging tree (every write confined below its root);
* :mod:`~hardflow.build.debian_stage` — the Debian layers from the ``.deb`` files;
* :mod:`~hardflow.build.wheel_stage` — one wheel layer from its wheels;
* :mod:`~hardflow.build.hardflow_stage` — accounts, identity, the spec's files;
* :mod:`~hardflow.build.bytecode` — ``.pyc`` compiled by the target interpreter.

This module names the stage's public interface, so the pipeline imports it from one place.
"""

from __future__ import annotations

from hardflow.build.bytecode import (
    CompileJob,
    Compiler,
    bytecode_sources,
    chroot_compiler,
    compile_stages,
)
from hardflow.build.debian_stage import (
    DROP_PREFIXES,
    MERGED_USR,
    DebInput,
    assemble_debian,
    keep_member,
    normalise,
    status_record,
)
from hardflow.build.hardflow_stage import assemble_hardflow
from hardflow.build.plan import (
    HARDFLOW_WRITES,
    WHEEL_LAYERS,
    deb_layer,
    debian_release,
    layer_order,
    wheel_layer,
)
from hardflow.build.staging import STAGE_DIR, ProgressFn, Stage, StageTree, finish
from hardflow.build.wheel_stage import WheelInput, assemble_wheels

__all__ = [
    "DROP_PREFIXES",
    "HARDFLOW_WRITES",
    "MERGED_USR",
    "STAGE_DIR",
    "WHEEL_LAYERS",
    "CompileJob",
    "Compiler",
    "DebInput",
    "ProgressFn",
    "Stage",
    "StageTree",
    "WheelInput",
    "assemble_debian",
    "assemble_hardflow",
    "assemble_wheels",
    "bytecode_sources",
    "chroot_compiler",
    "compile_stages",
    "deb_layer",
    "debian_release",
    "finish",
    "keep_member",
    "layer_order",
    "normalise",
    "status_record",
    "wheel_layer",
]
