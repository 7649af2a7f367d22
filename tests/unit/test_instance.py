"""A physical backup's instance started as a server of ours: the disk check before it is restored
(refused with the sizes named before anything is written) and the account we give ourselves."""

import shutil

import pytest

from tenangdb.actions.instance import check_space
from tenangdb.errors import RestoreFailed
from tenangdb.mysql.sandbox import own_account


def test_too_little_free_disk_is_refused_naming_both_sizes(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    with pytest.raises(RestoreFailed, match=r"restoring X needs about .* of disk in .*, which has .* free; "
                                            r"nothing was changed"):
        check_space(tmp_path, free + (1 << 40), "restoring X")
    check_space(tmp_path, 1, "restoring X")
    assert list(tmp_path.iterdir()) == []


def test_our_account_on_a_restored_instance_takes_only_plain_tokens():
    sql = own_account("tenangdb_restore", "Ab-9_x")
    assert sql.startswith(b"CREATE OR REPLACE USER 'tenangdb_restore'@'localhost' IDENTIFIED BY 'Ab-9_x';")
    for user, password in (("u", "it's"), ("u'@'%", "p"), ("u", "")):
        with pytest.raises(ValueError):
            own_account(user, password)
