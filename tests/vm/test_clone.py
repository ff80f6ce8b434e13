"""A clone made through the admin API is mountable at once by its aname."""

from __future__ import annotations

import pytest

from ninep_server.commands.backend import RemoteBackend
from tests.vm import harness

pytestmark = [pytest.mark.vm, pytest.mark.slow]

GUEST = r"""
set -eu
. /job/config
M=$NINEP_AUTOMOUNT
[ "$(cat $M/project/readme)" = "before the snapshot" ] || { echo "FAIL: clone content"; exit 1; }
[ ! -e $M/project/after ] || { echo "FAIL: clone holds a file written after the snapshot"; exit 1; }
echo "written in the clone" > $M/project/clone-only
sync
echo "clone ok"
"""


def test_clone_is_mountable_by_aname(vm_images, tmp_path):
    server = harness.start_server("ninep", tmp_path / "srv")
    try:
        view = server.view
        view._call(lambda c: c.makedirs(b"project"))
        view._call(lambda c: c.write_file(b"project/readme", b"before the snapshot"))
        admin = RemoteBackend(f"unix:{server.store}/admin.sock")
        try:
            admin.create_snapshot("main", "base")
            view._call(lambda c: c.write_file(b"project/after", b"later"))
            admin.clone("main", "base", "sandbox")
            assert {d["name"] for d in admin.list_datasets()} == {"main", "sandbox"}
        finally:
            admin.close()
        lines: list[str] = []
        guest = harness.runner.run_guest(
            GUEST, server=server.tcp, transport="tcp", mount_opts=harness.PRIMARY.mount_opts,
            aname="sandbox", images=vm_images, timeout=300, output=lines.append,
        )
        assert guest.rc == 0, "".join(lines)[-3000:]
        clone = harness.NinepView(server.tcp, aname=b"sandbox")
        try:
            assert clone.read("project/clone-only") == b"written in the clone\n"
        finally:
            clone.close()
        assert not view.exists("project/clone-only"), "a write to the clone reached its origin"
        assert view.read("project/after") == b"later"
    finally:
        server.stop()
