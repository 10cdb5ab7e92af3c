"""Manifests: every function's parses, and a bad one says what is wrong."""

from __future__ import annotations

import pytest

from runner import manifest
from runner.function import Function
from runner.manifest import ManifestError
from tests.support import FUNCTIONS

GOOD = """
name = "demo"
[trigger]
type = "http"
public_prefix = "/srvd"
[limits]
timeout = 2.5
[scaling]
min = 0
max = 3
"""


@pytest.mark.parametrize("name", ["i", "s", "b", "w", "p", "w1", "w2"])
def test_every_function_of_the_pack_loads(name):
    function = Function.load(FUNCTIONS / name)
    assert function.name == name
    assert callable(function.import_handler().routes)


def test_public_functions_are_exactly_the_page_s_four():
    public = {Function.load(FUNCTIONS / n).manifest.trigger.public_prefix for n in ["i", "s", "b", "w", "p", "w1", "w2"]}
    assert public == {"/srvi", "/srvs", "/srvb", "/srvp", None}


def test_defaults_fill_what_is_missing():
    parsed = manifest.loads(GOOD)
    assert parsed.limits.timeout == 2.5 and parsed.limits.concurrency == 100
    assert (parsed.scaling.min, parsed.scaling.max) == (0, 3)
    assert parsed.to_dict()["trigger"]["public_prefix"] == "/srvd"


@pytest.mark.parametrize(
    "text, message",
    [
        ("name = ", "not valid TOML"),
        ('name = "Bad Name"\n[trigger]\ntype = "http"', "name must match"),
        ('name = "x"\n[trigger]\ntype = "cron"', "trigger.type"),
        ('name = "x"\n[trigger]\ntype = "queue"', "needs queue and path"),
        ('name = "x"\n[trigger]\ntype = "http"\npublic_prefix = "/../etc"', "public_prefix must match"),
        ('name = "x"\n[trigger]\ntype = "http"\n[limits]\ntimeout = "5"', "timeout must be a number"),
        ('name = "x"\n[trigger]\ntype = "http"\n[limits]\nmemory_mb = 1', "memory_mb must lie between"),
        ('name = "x"\n[trigger]\ntype = "http"\n[scaling]\nmin = 5\nmax = 2', "min must not exceed"),
        ('name = "x"\n[trigger]\ntype = "http"\n[settings]\nreads = ["PATH"]', "TOMBOLA_"),
        ('name = "x"\ntrigger = 3', "[trigger] must be a table"),
    ],
)
def test_bad_manifests_say_why(text, message):
    with pytest.raises(ManifestError, match=message.replace("[", r"\[").replace("]", r"\]")):
        manifest.loads(text)


def test_folder_without_handler_is_refused(tmp_path):
    (tmp_path / "manifest.toml").write_text(GOOD)
    with pytest.raises(ManifestError, match="no handler.py"):
        Function.load(tmp_path)
