"""Settings come from the environment, with defaults that need no server."""

from __future__ import annotations

import pytest

from runner import environment
from runner.settings import Settings, SettingsError


def test_embedded_defaults_live_under_the_home(tmp_path):
    settings = Settings.from_environ({"TOMBOLA_HOME": str(tmp_path)})
    assert settings.database_url == f"sqlite:///{tmp_path / 'tombola.db'}"
    assert settings.broker_url == "filesystem://"
    assert settings.store == "local" and settings.store_path == tmp_path / "objects"
    assert settings.w_tempo == 5.0 and settings.mail_url == ""


@pytest.mark.parametrize(
    "name, value",
    [
        ("TOMBOLA_W_TEMPO", "-1"),
        ("TOMBOLA_W_TEMPO", "soon"),
        ("TOMBOLA_W_TEMPO", "inf"),
        ("TOMBOLA_MAX_ATTEMPTS", "3.5"),
        ("TOMBOLA_STORE", "ftp"),
        ("TOMBOLA_SHOP_TABLE_PREFIX", "ps_; DROP TABLE x"),
    ],
)
def test_bad_values_are_refused_with_the_variable_named(name, value):
    with pytest.raises(SettingsError, match=name):
        Settings.from_environ({name: value})


def test_typed_values_keep_their_bounds_and_defaults():
    env = {"N": " 2.5 ", "W": "7", "F": "Yes", "EMPTY": ""}
    assert environment.number(env, "N", 1.0, expected="x") == 2.5
    assert environment.number(env, "EMPTY", 1.0, expected="x") == 1.0
    assert environment.whole(env, "W", 1, low=1, high=7, expected="x") == 7
    assert environment.flag(env, "F", False) is True
    assert environment.flag(env, "MISSING", True) is True


@pytest.mark.parametrize(
    "read, value",
    [
        (lambda env: environment.number(env, "V", 1.0, above_low=True, expected="above zero"), "0"),
        (lambda env: environment.number(env, "V", 1.0, expected="a number"), "nan"),
        (lambda env: environment.whole(env, "V", 1, low=1, expected="1 or more"), "0"),
        (lambda env: environment.whole(env, "V", 1, high=9, expected="at most 9"), "10"),
        (lambda env: environment.flag(env, "V", True), "maybe"),
    ],
)
def test_typed_values_out_of_bounds_name_the_variable_and_the_value(read, value):
    with pytest.raises(SettingsError, match=rf"V must be .*, not '{value}'"):
        read({"V": value})
