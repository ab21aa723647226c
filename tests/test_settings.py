"""Typed settings read their VIDREC_... variables, and secrets never print."""

from workers.settings import EngineSettings, IndexSettings


def test_index_url_from_argument_or_environment(monkeypatch):
    assert IndexSettings(url="http://q:6333").url == "http://q:6333"
    monkeypatch.setenv("QDRANT_URL", "http://server:6333")
    assert IndexSettings().url == "http://server:6333"


def test_engine_settings_from_environment(monkeypatch):
    monkeypatch.setenv("VIDREC_ENGINE_K", "7")
    monkeypatch.setenv("VIDREC_ENGINE_WEIGHT_LIKE", "5.5")
    s = EngineSettings()
    assert s.k == 7 and s.weight_like == 5.5


def test_api_key_is_secret(monkeypatch):
    monkeypatch.setenv("VIDREC_QDRANT_API_KEY", "hunter2")
    s = IndexSettings()
    assert s.api_key.get_secret_value() == "hunter2"
    assert "hunter2" not in repr(s) and "hunter2" not in str(s.model_dump())
