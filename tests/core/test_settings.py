"""config.toml: profiles, secrets, errors that say what to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.engine.executors import LocalExecutor, profile_from_dict
from core.settings import SettingsError, load_settings, resolve_home, resolve_secret_env


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_missing_file_gives_a_local_default(tmp_path: Path) -> None:
    settings = load_settings(tmp_path / "absent.toml")
    profile = settings.profile()
    assert isinstance(profile, LocalExecutor) and profile.profile_name == "local"


def test_profiles_are_typed_and_unknown_fields_suggested(tmp_path: Path) -> None:
    settings = load_settings(
        write(
            tmp_path,
            '[executors.gpu]\nbackend = "local"\ncancel_grace_seconds = 1.5\n'
            'env_vars = { A = "1" }\n[executors.typo]\nbackend = "local"\ncancel_grace = 2\n',
        )
    )
    gpu = settings.profile("gpu")
    assert isinstance(gpu, LocalExecutor)
    assert (gpu.cancel_grace_seconds, gpu.env_vars, gpu.profile_name) == (1.5, {"A": "1"}, "gpu")
    with pytest.raises(SettingsError, match="did you mean `cancel_grace_seconds`"):
        settings.profile("typo")
    with pytest.raises(SettingsError, match="no executor profile `gpux`.*did you mean `gpu`"):
        settings.profile("gpux")


def test_unknown_backend_and_broken_toml_are_one_line_errors(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, '[executors.x]\nbackend = "nosuch"\n'))
    with pytest.raises(SettingsError, match="unknown backend 'nosuch'"):
        settings.profile("x")
    with pytest.raises(SettingsError, match="config.toml"):
        load_settings(write(tmp_path, "this is = = not toml"))


def test_secret_env_from_environment_is_never_in_the_stored_profile(tmp_path: Path) -> None:
    settings = load_settings(
        write(tmp_path, '[executors.s]\nbackend = "local"\nsecret_env = ["TOKEN"]\n')
    )
    profile = settings.profile("s")
    assert resolve_secret_env(profile, {"TOKEN": "abc"}) == {"TOKEN": "abc"}
    stored = profile.to_dict()
    assert stored["secret_env"] == ["TOKEN"] and "abc" not in repr(stored)
    assert profile.redacted_env() == {"TOKEN": "***"}
    with pytest.raises(SettingsError, match="TOKEN"):
        resolve_secret_env(profile, {})
    rebuilt = profile_from_dict(stored)
    assert rebuilt.secret_env == {"TOKEN": None}


def test_home_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NEMORUN_TUI_HOME", str(tmp_path / "env"))
    assert resolve_home(tmp_path / "flag") == tmp_path / "flag"
    assert resolve_home() == tmp_path / "env"
    monkeypatch.delenv("NEMORUN_TUI_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert resolve_home() == tmp_path / "xdg" / "nemorun-tui"


def test_ui_settings_are_typed_and_checked(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "[ui]\nlog_redraws_per_second = 2.5\nbell = false\n"))
    assert settings.ui.log_redraws_per_second == 2.5 and settings.ui.bell is False
    with pytest.raises(SettingsError, match="log_redraws_per_second must be a positive number"):
        load_settings(write(tmp_path, "[ui]\nlog_redraws_per_second = 0\n"))
    with pytest.raises(SettingsError, match=r"\[ui\] has no setting fps"):
        load_settings(write(tmp_path, "[ui]\nfps = 3\n"))
