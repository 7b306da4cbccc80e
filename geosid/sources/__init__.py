"""Raw sources: the registry of what each source is, landing of raw lines, the parsers,
and the synthetic world generator (`synthetic_world`, engine-free)."""

from geosid.sources.registry import SOURCES, BehaviorConfig, CorpusShape, Feed, Source, get_source, source_names

__all__ = ["SOURCES", "BehaviorConfig", "CorpusShape", "Feed", "Source", "get_source", "source_names"]
