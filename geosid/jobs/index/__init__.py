"""The SID index stage: fit codebook versions, publish them, assign SIDs, measure collisions.

- registry: the spec, the version rows of `index.codebook_versions`, the version in force;
- inputs: the pinned training set of a version (silver embeddings and locations);
- fit: fit a candidate version (same inputs, same version id), backfill its SIDs;
- gates: publication behind the conflict / exclusive-rate and code-usage gates;
- assign: the SIDs of a day's new items (rows only ever added), roll-back for repairs;
- report: the quality rows, the comparison table and the SID report.

Every tokenizer is used through the contract of `geosid.quantization.base` only.
"""

from geosid.jobs.index.assign import AssignReport, assign_sids, rollback_sids, with_disambiguation
from geosid.jobs.index.fit import BackfillReport, FitReport, backfill, fit_candidate, version_id
from geosid.jobs.index.gates import Gates, PublishReport, gate_failures, publish
from geosid.jobs.index.inputs import TrainingSet, embeddings_as_of, item_locations, load_training_set
from geosid.jobs.index.registry import (
    DEFAULT_TEMPLATE,
    METHODS,
    CodebookSpec,
    codebook_versions,
    default_codes,
    level_sizes_of,
    load_tokenizer,
    parse_codes,
    published_version,
    version_metrics,
    version_row,
)
from geosid.jobs.index.report import collisions, quality_row, quality_table, sid_key, sid_report, write_quality

__all__ = [
    "AssignReport",
    "BackfillReport",
    "CodebookSpec",
    "DEFAULT_TEMPLATE",
    "FitReport",
    "Gates",
    "METHODS",
    "PublishReport",
    "TrainingSet",
    "assign_sids",
    "backfill",
    "codebook_versions",
    "collisions",
    "default_codes",
    "embeddings_as_of",
    "fit_candidate",
    "gate_failures",
    "item_locations",
    "level_sizes_of",
    "parse_codes",
    "load_training_set",
    "load_tokenizer",
    "publish",
    "published_version",
    "quality_row",
    "quality_table",
    "rollback_sids",
    "sid_key",
    "sid_report",
    "version_id",
    "version_metrics",
    "version_row",
    "with_disambiguation",
    "write_quality",
]
