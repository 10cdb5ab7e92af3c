"""Settings come from the environment, with defaults that need no server."""

from __future__ import annotations

import pytest

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
