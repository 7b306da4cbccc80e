"""The engine is a setting, never code: every job gets a Spark Connect session from here.

- sail:        pysail's Spark Connect server, started in-process on a free loopback port
               (no JVM, starts in well under a second, native Delta).
- spark-local: pyspark's own JVM Spark through `remote("local[*]")` (conformance runs;
               it has no Delta jars here, so it runs transforms, not lake writes).
- remote:      any Spark Connect URL, e.g. a Spark 4 cluster with delta-spark, or Sail.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from geosid.config import Settings

log = logging.getLogger(__name__)

# Every engine computes in UTC: event times are UTC and day partitions are UTC dates.
SESSION_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.ansi.enabled": "true",
    # Parquet timestamps as int64 microseconds (UTC), the lake's type: JVM Spark's default
    # INT96 would keep its staged files from being committed as they are.
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
}

# Variables pyspark's Connect client sets process-wide once a remote session exists;
# they make a later JVM launch believe it is itself a Connect client.
_CONNECT_ENV = ("SPARK_CONNECT_MODE_ENABLED", "SPARK_REMOTE")
# Variables a `local[*]` JVM session sets process-wide (and child processes inherit):
# its auth token would be presented to any other Connect endpoint, which then refuses.
LOCAL_JVM_ENV = ("SPARK_LOCAL_REMOTE", "SPARK_CONNECT_AUTHENTICATE_TOKEN")


@contextmanager
def _without_env(names: tuple[str, ...]) -> Iterator[None]:
    saved = {name: os.environ.pop(name) for name in names if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def _builder(url: str):
    from pyspark.sql import SparkSession  # lazy: the engine's client: loaded when a session is opened (or inside the UDF)

    builder = SparkSession.builder.remote(url)
    for key, value in SESSION_CONF.items():
        builder = builder.config(key, value)
    return builder


@contextmanager
def spark_session(settings: Settings | None = None) -> Iterator:
    """Yield a Spark Connect session for `settings.engine` and shut everything down after."""
    settings = settings or Settings.from_env()
    if settings.engine == "sail":
        with _sail_session() as spark:
            yield spark
    elif settings.engine == "spark-local":
        with _jvm_session(settings.spark_local_master, settings.spark_local_driver_memory) as spark:
            yield spark
    elif settings.engine == "remote":
        with _without_env(LOCAL_JVM_ENV):
            spark = _builder(settings.spark_remote).create()
        try:
            yield spark
        finally:
            _stop(spark)
    else:  # pragma: no cover - Settings validates the literal
        raise ValueError(f"unknown engine {settings.engine!r}")


def _stop(spark) -> None:
    # pyspark's stop() of *any* Connect session shuts down the in-process JVM server when
    # SPARK_LOCAL_REMOTE is set; a JVM session living beside this one must survive it.
    with _without_env(LOCAL_JVM_ENV):
        spark.stop()


@contextmanager
def _sail_session() -> Iterator:
    from pysail.spark import SparkConnectServer  # lazy: the engine: started only when a session is opened

    # Sail ends a session idle for its timeout (minutes by default); the embedded session
    # lives as long as this process, whose training steps leave it idle for longer.
    os.environ.setdefault("SAIL_SPARK__SESSION_TIMEOUT_SECS", str(7 * 24 * 3600))
    server = SparkConnectServer(ip="127.0.0.1", port=0)
    server.start(background=True)
    host, port = server.listening_address
    log.info("sail Spark Connect server on %s:%s", host, port)
    spark = None
    try:
        with _without_env(LOCAL_JVM_ENV):
            spark = _builder(f"sc://{host}:{port}").create()
        yield spark
    finally:
        if spark is not None:
            _stop(spark)
        server.stop()


# pyspark's local mode serves Spark Connect on this fixed port and connects to it.
LOCAL_CONNECT_PORT = 15002


def _wait_for_free_port(port: int, timeout_s: float = 60.0) -> None:
    """A JVM from a run moments ago may still hold the port; a new one would die at start."""

    deadline = time.monotonic() + timeout_s
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"port {port} is still in use: is another local Spark Connect server running?")
        time.sleep(0.5)


@contextmanager
def _jvm_session(master: str, driver_memory: str) -> Iterator:
    before = {name: os.environ.get(name) for name in (*LOCAL_JVM_ENV, "PYSPARK_PYTHON")}
    spark = None
    _wait_for_free_port(LOCAL_CONNECT_PORT)
    # The JVM's Python workers (mapInPandas) run this interpreter, so they import geosid
    # and its pinned dependencies from the same environment.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    try:
        with _without_env(_CONNECT_ENV):
            # `local[...]` connection strings start a JVM Spark Connect server in-process.
            # An explicit heap: the JVM's default (a quarter of the machine) can fail to be
            # reserved when other work holds the memory.
            # lazy: the engine's client: loaded when a session is opened (or inside the UDF)
            from pyspark.sql.connect.session import SparkSession as ConnectSession

            previous = ConnectSession.getActiveSession() or ConnectSession._get_default_session()
            started = _builder(master).config("spark.driver.memory", driver_memory).getOrCreate()
            if previous is None:
                spark = started
            else:
                # pyspark starts the JVM server, then getOrCreate() hands back the session
                # already open in this process (e.g. Sail's): connect to the JVM explicitly,
                # and leave the other session the default it was.
                spark = _builder(f"sc://localhost:{LOCAL_CONNECT_PORT}").create()
                ConnectSession._set_default_and_active_session(previous)
        assert previous is None or spark is not previous, "the JVM session is the already open session"
        yield spark
    finally:
        if spark is not None:
            spark.stop()
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
