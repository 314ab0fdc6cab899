from __future__ import annotations

from pathlib import Path

import pytest

from extractor.core.settings import SettingsError, StructuredMode, load_settings


def test_file_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "extractor.toml").write_text(
        'model = "from-file"\nclaims_dir = "domains"\nstructured_mode = "prompt"\nprompts_dir = "my-prompts"\n'
        '[agents]\nhealth = "doc"\n'
    )
    settings = load_settings(tmp_path)
    assert (settings.model, settings.claims_dir, settings.structured_mode) == (
        "from-file",
        "domains",
        StructuredMode.PROMPT,
    )
    assert settings.agent_for("health") == "doc"
    assert settings.agent_for("unknown-domain") == "leo"
    assert settings.prompts_dir == tmp_path / "my-prompts"
    monkeypatch.setenv("EXTRACTOR_MODEL", "from-env")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    settings = load_settings(tmp_path)
    assert settings.model == "from-env"
    assert settings.base_url == "http://127.0.0.1:9/v1"
    assert "sk-secret" not in repr(settings)


def test_default_routing_table() -> None:
    settings = load_settings()
    table = {
        d: settings.agent_for(d)
        for d in (
            "internet-finance",
            "entertainment",
            "ai-alignment",
            "health",
            "space-development",
            "mechanisms",
            None,
        )
    }
    assert table == {
        "internet-finance": "rio",
        "entertainment": "clay",
        "ai-alignment": "theseus",
        "health": "vida",
        "space-development": "astra",
        "mechanisms": "leo",
        None: "leo",
    }


@pytest.mark.parametrize(
    ("text", "problem"),
    [("model = [", "invalid TOML"), ('structured_mode = "xml"', "structured_mode"), ("bogus = 1", "bogus")],
)
def test_bad_settings_name_the_file_and_problem(tmp_path: Path, text: str, problem: str) -> None:
    (tmp_path / "extractor.toml").write_text(text)
    with pytest.raises(SettingsError, match=problem) as caught:
        load_settings(tmp_path)
    assert str(tmp_path / "extractor.toml") in str(caught.value)
