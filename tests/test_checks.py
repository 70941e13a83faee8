"""The shared validation helpers (pdefm.checks): numbers, names, contained paths, resources."""

from __future__ import annotations

import math
import re

import pytest

from pdefm.checks import (
    check_disk,
    check_float,
    check_int,
    check_memory,
    check_name,
    contained_path,
    read_json,
)
from pdefm.errors import PdefmError


@pytest.mark.parametrize("value", [True, 1.0, "1", None])
def test_a_count_must_be_an_int(value):
    with pytest.raises(PdefmError, match="--n must be a whole number"):
        check_int(value, "--n")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, False, "1e-3"])
def test_a_float_must_be_a_finite_number(value):
    with pytest.raises(PdefmError, match="--lr must be a"):
        check_float(value, "--lr")


def test_bounds_print_whole_numbers_in_full():
    with pytest.raises(PdefmError, match="must be <= 100000000, got 1000000000000"):
        check_int(10**12, "--n-train", maximum=10**8)
    with pytest.raises(PdefmError, match="must be > 0, got -0.001"):
        check_float(-0.001, "--lr", positive=True)


@pytest.mark.parametrize(
    "name",
    ["../x", "a/b", "a\\b", ".hidden", "", "x" * 129, "CON", "nul.txt", "Lpt1", "with space"],
)
def test_names_that_could_leave_or_break_a_folder_are_refused(name):
    with pytest.raises(PdefmError, match="dataset name"):
        check_name(name, "dataset name")


@pytest.mark.parametrize("name", ["poisson_1-5", "a.b", "run+2", "console", "COM"])
def test_plain_names_pass(name):
    assert check_name(name, "dataset name") == name


@pytest.mark.parametrize("rel", ["../x.h5", "/etc/passwd", "C:\\x.h5", "a/../../x", 42, ""])
def test_paths_must_stay_inside_their_folder(tmp_path, rel):
    with pytest.raises(PdefmError, match="files.train"):
        contained_path(tmp_path, rel, "files.train")


def test_a_link_out_of_the_folder_is_refused(tmp_path):
    (tmp_path / "inside").mkdir()
    (tmp_path / "inside" / "link.h5").symlink_to(tmp_path / "outside.h5")
    with pytest.raises(PdefmError, match="outside"):
        contained_path(tmp_path / "inside", "link.h5", "files.train")
    assert contained_path(tmp_path, "inside/link.h5", "files.train").name == "link.h5"


def test_impossible_resources_are_refused_with_the_estimate(tmp_path):
    with pytest.raises(PdefmError, match=r"needs about 1024.0 PiB of memory.*lower it"):
        check_memory(2.0**60, "this", "lower it")
    with pytest.raises(PdefmError, match=r"needs about 1024.0 PiB of disk"):
        check_disk(tmp_path / "not" / "yet", 2.0**60, "this", "lower it")
    check_memory(1024, "this", "lower it")
    check_disk(tmp_path, 1024, "this", "lower it")


def test_read_json_names_the_file_and_the_fix(tmp_path):
    fix = "delete it and rerun"
    (tmp_path / "ok.json").write_text('{"a": 1}')
    assert read_json(tmp_path / "ok.json", fix) == {"a": 1}
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x81")
    (tmp_path / "broken.json").write_text('{"a": ')
    (tmp_path / "folder.json").mkdir()
    for name, needle in [
        ("binary.json", "is not a text (UTF-8) file"),
        ("broken.json", "is not valid JSON (line 1"),
        ("folder.json", "cannot read"),
        ("missing.json", "cannot read"),
    ]:
        with pytest.raises(PdefmError, match=re.escape(needle)) as info:
            read_json(tmp_path / name, fix)
        message = str(info.value)
        assert name in message and message.endswith(fix) and "\n" not in message
