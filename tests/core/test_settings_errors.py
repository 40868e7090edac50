"""A mistake in gridshare.toml or a GRIDSHARE_ variable is one line naming the setting, exit status 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from gridshare.cli import main
from gridshare.core.settings import NOT_SETTINGS, Settings, SettingsError, load_settings


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No GRIDSHARE_ settings from the caller's shell; the current folder is an empty temp one."""
    import os

    for name in list(os.environ):
        if name.upper().startswith("GRIDSHARE_") and name.upper() not in NOT_SETTINGS:
            monkeypatch.delenv(name)
    monkeypatch.delenv("GRIDSHARE_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def _one_line_error(code: int, output: str) -> str:
    assert code == 2, output
    assert "Traceback" not in output
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    return lines[0]


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("prot = 9000\n", "unknown setting 'prot' in gridshare.toml line 1; did you mean 'port'?"),
        (
            "[gridshare]\nhost = '::1'\ndatabse_url = 'x'\n",
            "unknown setting 'databse_url' in gridshare.toml line 3; did you mean 'database_url'?",
        ),
        (
            'port = 9000\nhost = "127.0.0.1\n',
            "gridshare.toml: not valid TOML: Illegal character '\\n' (at line 2, column 18)",
        ),
        (
            "port = 99999\n",
            "setting 'port' (gridshare.toml line 1): Input should be less than or equal to 65535",
        ),
        (
            "port = 9000\n[gridshare]\nhost = '::1'\n",
            "setting 'port' in gridshare.toml line 1 is outside the [gridshare] table",
        ),
        (
            "[poll_rates_s]\ndcap = 0\n",
            "setting 'poll_rates_s' (gridshare.toml line 1): poll rates must be whole seconds >= 1: dcap",
        ),
        (
            "timezone = 'Mars/Olympus'\n",
            "setting 'timezone' (gridshare.toml line 1): unknown time zone 'Mars/Olympus'",
        ),
    ],
)
def test_a_bad_file_is_one_line_naming_the_setting_and_line(tmp_path: Path, toml: str, expected: str) -> None:
    (tmp_path / "gridshare.toml").write_text(toml)
    line = _one_line_error(*_cli("admin", "token", "list"))
    assert expected in line, line
    assert not (tmp_path / "gridshare-data").exists()  # nothing was created on the way out


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"GRIDSHARE_PROT": "9000"},
            "unknown setting GRIDSHARE_PROT in the environment; did you mean GRIDSHARE_PORT?",
        ),
        ({"GRIDSHARE_DATA_DRI": "/x"}, "did you mean GRIDSHARE_DATA_DIR?"),
        ({"GRIDSHARE_CONFIG": "missing.toml"}, "GRIDSHARE_CONFIG names 'missing.toml', which does not exist"),
        (
            {"GRIDSHARE_TRUSTED_PROXIES": '["10.0.0.1"'},
            "setting 'trusted_proxies' (environment variable GRIDSHARE_TRUSTED_PROXIES): Expecting",
        ),
        (
            {"GRIDSHARE_ROLES": "serve,publisher"},
            "setting 'roles.1' (environment variable GRIDSHARE_ROLES): Input should be 'serve'",
        ),
        ({"GRIDSHARE_POLL_RATES_S": "{dcap: 600}"}, "GRIDSHARE_POLL_RATES_S: not valid JSON"),
        (
            {"GRIDSHARE_PORT": "eighty"},
            "setting 'port' (environment variable GRIDSHARE_PORT): Input should be a valid integer",
        ),
        ({"GRIDSHARE_BEHIND_PROXY": "true"}, "settings: behind_proxy needs trusted_proxies"),
    ],
)
def test_a_bad_environment_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for command in (["admin", "token", "list"], ["serve"]):
        line = _one_line_error(*_cli(*command))
        assert expected in line, line


def test_an_option_value_is_named_as_such() -> None:
    line = _one_line_error(*_cli("serve", "--port", "70000"))
    assert line == "Error: setting 'port' (command-line option): Input should be less than or equal to 65535"


def test_variables_other_tools_read_are_not_settings_and_not_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test suite, the conformance scripts and the cactus plugin read GRIDSHARE_ names of their own."""
    for name in NOT_SETTINGS - {"GRIDSHARE_CONFIG"}:
        monkeypatch.setenv(name, "1")
    monkeypatch.setenv("GRIDSHARE_SOMETHING_ELSE_ENTIRELY", "1")  # not like any setting: not ours to judge
    monkeypatch.setenv("GRIDSHARE_PORT", "9443")
    assert load_settings().port == 9443


def test_valid_list_and_table_variables_still_work(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GRIDSHARE_TRUSTED_PROXIES", "10.0.0.2, 10.1.0.0/24")
    monkeypatch.setenv("GRIDSHARE_POLL_RATES_S", '{"dcap": 600}')
    (tmp_path / "other.toml").write_text("[gridshare]\nport = 9443\n[gridshare.poll_rates_s]\nderp = 30\n")
    monkeypatch.setenv("GRIDSHARE_CONFIG", str(tmp_path / "other.toml"))
    settings = load_settings()
    assert settings.trusted_proxies == ["10.0.0.2", "10.1.0.0/24"]
    assert settings.poll_rates_s["dcap"] == 600  # the environment wins over the file
    assert settings.port == 9443


def test_settings_error_is_raised_outside_the_cli_too(tmp_path: Path) -> None:
    (tmp_path / "gridshare.toml").write_text("prot = 1\n")
    with pytest.raises(SettingsError, match="did you mean 'port'"):
        Settings()
