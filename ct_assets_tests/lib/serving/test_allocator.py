"""The slot's allocator: chosen by CT_SLOT_ALLOCATOR, preloaded into real processes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ct_assets.lib.serving import allocator
from ct_assets.lib.serving.allocator import AllocatorError, allocator_env, find_tcmalloc

needs_tcmalloc = pytest.mark.skipif(find_tcmalloc() is None, reason="libtcmalloc-minimal4 is not installed")


def _mapped_libraries(env: dict[str, str]) -> str:
    """The shared objects a fresh Python process started with `env` has mapped."""
    code = "print(open('/proc/self/maps').read())"
    return subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True, check=True
    ).stdout


@needs_tcmalloc
def test_auto_preloads_tcmalloc_into_the_process() -> None:
    env = allocator_env({})
    assert env["CT_SLOT_ALLOCATOR"] == "tcmalloc"
    assert "libtcmalloc_minimal" in _mapped_libraries(env)


@needs_tcmalloc
def test_a_preload_already_set_is_kept() -> None:
    env = allocator_env({"LD_PRELOAD": "/opt/other.so"})
    assert env["LD_PRELOAD"].split() == [find_tcmalloc(), "/opt/other.so"]


def test_glibc_leaves_the_process_alone() -> None:
    env = allocator_env({"CT_SLOT_ALLOCATOR": "glibc"})
    assert env == {"CT_SLOT_ALLOCATOR": "glibc"}
    assert "tcmalloc" not in _mapped_libraries({**env, "LD_PRELOAD": ""})


def test_an_unknown_choice_is_refused_with_the_choices() -> None:
    with pytest.raises(AllocatorError, match=r"CT_SLOT_ALLOCATOR='jemalloc'.*auto, tcmalloc, glibc"):
        allocator_env({"CT_SLOT_ALLOCATOR": "jemalloc"})


def test_without_tcmalloc_auto_falls_back_and_a_demand_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator, "find_tcmalloc", lambda: None)  # as on a machine without the package
    assert allocator_env({}) == {"CT_SLOT_ALLOCATOR": "glibc"}
    with pytest.raises(AllocatorError, match="apt-get install libtcmalloc-minimal4"):
        allocator_env({"CT_SLOT_ALLOCATOR": "tcmalloc"})
