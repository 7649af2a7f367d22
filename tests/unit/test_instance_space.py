"""The disk check before a physical backup's whole instance is restored: refused with the sizes
named before anything is written."""

import shutil

import pytest

from tenangdb.actions.instance import check_space
from tenangdb.errors import RestoreFailed


def test_too_little_free_disk_is_refused_naming_both_sizes(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(RestoreFailed, match=r"restoring X needs about .* of disk in .*, which has .* free; "
                                            r"nothing was changed"):
        check_space(tmp_path, free + (1 << 40), "restoring X")
    check_space(tmp_path, 1, "restoring X")
    assert list(tmp_path.iterdir()) == []
