import pytest
from pydantic import ValidationError

from geosid.config import Settings


def test_unknown_keys_are_rejected():
    with pytest.raises(ValidationError, match="engin"):
        Settings(engin="sail")


def test_settings_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("GEOSID_ENGINE", "remote")
    monkeypatch.setenv("GEOSID_SPARK_REMOTE", "sc://spark.example:15002")
    monkeypatch.setenv("GEOSID_LAKE", str(tmp_path))
    settings = Settings.from_env()
    assert settings.engine == "remote"
    assert settings.spark_remote == "sc://spark.example:15002"
    assert settings.lake_root == tmp_path
    assert settings.committer() == "spark"
    # an explicit argument wins over the environment
    assert Settings.from_env(engine="sail").committer() == "delta-rs"


def test_remote_engine_needs_a_connect_url(monkeypatch):
    monkeypatch.delenv("GEOSID_SPARK_REMOTE", raising=False)
    with pytest.raises(ValueError, match="GEOSID_SPARK_REMOTE"):
        Settings.from_env(engine="remote")
    with pytest.raises(ValidationError, match="sc://"):
        Settings(engine="remote", spark_remote="http://host:15002")
