"""The ``hardflow`` stage: accounts, OS identity, the spec's own files and ``AIRFLOW_HOME``.

The accounts are written here rather than taken from a package, so the image works for any
UID in GID 0 without anything written at run time (DESIGN.md §3).
"""

from __future__ import annotations

from pathlib import Path

from hardflow.build.plan import debian_release
from hardflow.build.staging import StageTree
from hardflow.errors import BuildError
from hardflow.fsutil import ConfinementError
from hardflow.spec import ImageSpec, image_dest, read_extra_file


def assemble_hardflow(spec: ImageSpec, staging: Path) -> StageTree:
    """The ``hardflow`` layer: accounts, identity, the spec's files and AIRFLOW_HOME."""
    tree = StageTree.fresh(staging)
    _accounts_and_identity(tree, spec)
    _spec_files(tree, spec)
    _airflow_home(tree, spec)
    return tree


def _accounts_and_identity(tree: StageTree, spec: ImageSpec) -> None:
    u, home = spec.user, spec.home
    passwd = (
        "root:x:0:0:root:/root:/usr/sbin/nologin\n"
        f"{u}:x:{spec.uid}:{spec.gid}:{u}:{home}:/usr/sbin/nologin\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    )
    group = "root:x:0:\n" + (f"{u}:x:{spec.gid}:\n" if spec.gid else "") + "nogroup:x:65534:\n"
    shadow = f"root:*:0:0:99999:7:::\n{u}:*:0:0:99999:7:::\nnobody:*:0:0:99999:7:::\n"
    tree.file("etc/passwd", passwd.encode(), 0o644, "hardflow")
    tree.file("etc/group", group.encode(), 0o644, "hardflow")
    tree.file("etc/shadow", shadow.encode(), 0o640, "hardflow")
    tree.file(
        "etc/nsswitch.conf",
        b"passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\n"
        b"protocols: files\nservices: files\n",
        0o644,
        "hardflow",
    )
    codename, version_id = debian_release(spec)
    os_release = (
        f'PRETTY_NAME="hardflow {spec.name}:{spec.tag} (Debian GNU/Linux {version_id} '
        f'({codename}) packages)"\n'
        'NAME="Debian GNU/Linux"\n'
        f'VERSION_ID="{version_id}"\n'
        f'VERSION="{version_id} ({codename})"\n'
        f"VERSION_CODENAME={codename}\n"
        "ID=debian\n"
        "VARIANT=hardflow\n"
        "VARIANT_ID=hardflow\n"
    )
    tree.file("usr/lib/os-release", os_release.encode(), 0o644, "hardflow")
    tree.symlink("etc/os-release", "../usr/lib/os-release", "hardflow")


def _spec_files(tree: StageTree, spec: ImageSpec) -> None:
    for f in spec.files:
        rel = image_dest(f.dest).lstrip("/")  # /bin/sh lands at usr/bin/sh (merged /usr)
        try:
            if f.link:
                tree.symlink(rel, f.link, "hardflow")
            else:
                tree.file(rel, read_extra_file(spec, f), f.mode, "hardflow")
        except ConfinementError as exc:
            raise BuildError(
                f"{spec.source}: files entry {f.dest!r} cannot be written: {exc.reason}",
                hint="give each file a plain absolute path that no other entry uses as a "
                "file or a symlink",
            ) from None
        if rel.startswith(spec.home.lstrip("/") + "/"):
            tree.owners[rel] = (spec.uid, spec.gid)


def _airflow_home(tree: StageTree, spec: ImageSpec) -> None:
    owner = (spec.uid, spec.gid)
    home = spec.home.lstrip("/")
    for rel in (home, f"{home}/dags", f"{home}/logs", f"{home}/plugins"):
        # group rights equal user rights, so an arbitrary UID in GID 0 can write (OpenShift)
        tree.directory(rel, 0o775, "hardflow", owner)
        tree.layer_of[rel] = "hardflow"
