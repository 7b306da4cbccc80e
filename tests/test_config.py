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


def test_an_unknown_source_is_refused_with_the_known_ones():
    from geosid.errors import UnknownNameError
    from geosid.jobs.corpus import CorpusConfig
    from geosid.sources.registry import get_source

    with pytest.raises(UnknownNameError, match="known sources: tsmc2014, synthetic"):
        get_source("foursquare")
    with pytest.raises(UnknownNameError, match="unknown source 'foursquare'"):
        CorpusConfig.for_source("foursquare")
    assert get_source("synthetic").corpus.location == "request" and get_source("tsmc2014").has_gmv is False


def test_cell_settings_are_declared_once(monkeypatch):
    monkeypatch.setenv("GEOSID_CELL_SYSTEM", "h3")
    monkeypatch.setenv("GEOSID_H3_RESOLUTION", "7")
    settings = Settings.from_env()
    assert settings.cells.name == "h3r7"
    assert Settings.from_env(cells={"system": "geohash"}).cells.name == "geohash6"
