"""The public API re-exported by ``avatar``: every name resolves, and importing it stays light."""

import subprocess
import sys

import pytest

import avatar


@pytest.mark.parametrize("name", avatar.__all__)
def test_every_public_name_resolves(name):
    assert getattr(avatar, name) is not None


def test_unknown_names_are_attribute_errors():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        avatar.nope  # noqa: B018


def test_importing_avatar_and_its_settings_needs_no_torch():
    code = ("import sys, avatar; s = avatar.resolve_settings(options={'search': {'samples': 5}}); "
            "assert s.search.samples == 5 and s.preset == 'demo'; "
            "assert not {'torch', 'transformers'} & set(sys.modules), sorted(m for m in sys.modules if m in ('torch', 'transformers'))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
