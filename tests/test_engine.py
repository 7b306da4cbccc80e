import os

from geosid.config import Settings
from geosid.lake.engine import LOCAL_JVM_ENV, spark_session


def test_sail_session_runs_sql_in_utc():
    with spark_session(Settings(engine="sail")) as spark:
        row = spark.sql("SELECT CAST(TIMESTAMP'2012-04-03 23:30:00' AS DATE) AS d, current_timezone() AS tz").collect()[0]
    assert str(row.d) == "2012-04-03" and row.tz in ("UTC", "Etc/UTC", "+00:00")


def test_a_jvm_auth_token_in_the_environment_does_not_reach_sail(monkeypatch):
    # what a `local[*]` JVM session leaves behind in os.environ
    monkeypatch.setenv("SPARK_LOCAL_REMOTE", "1")
    monkeypatch.setenv("SPARK_CONNECT_AUTHENTICATE_TOKEN", "token-of-another-server")
    with spark_session(Settings(engine="sail")) as spark:
        assert spark.range(3).count() == 3
    assert all(name in os.environ for name in LOCAL_JVM_ENV)
