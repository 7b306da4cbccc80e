"""The operations core: what `ops.builds` records of a build, as types.

- `Stage`: every derived table the pipeline records, in the order a repair rebuilds a
  day (the order is the enum's); the embeddings of a text template come before the
  templates that reuse their text vectors.
- `Scope`: what else a rebuild of a table needs to know besides the day (the cell
  system, the representation, the codebook version, the corpus scope). `ops.builds`
  holds it as text; `scope_of` parses it and `str()` formats it, here and nowhere else.

The lake layer (`geosid.lake.lineage`) treats a scope as an opaque string: only the
pipeline knows what its parts mean.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from geosid.embedding.templates import TEXT_TEMPLATE
from geosid.schemas import corpus, index, silver

_SEP = "|"


@dataclass(frozen=True)
class CellScope:
    """silver.geo_cells, silver.item_geo, corpus.cell_context: the cell system's name."""

    cells: str

    def __str__(self) -> str:
        return self.cells


@dataclass(frozen=True)
class EmbedScope:
    """silver.item_embeddings: a template and the model id it was embedded with."""

    template: str
    model: str

    @classmethod
    def of(cls, representation) -> EmbedScope:
        """The scope of a `geosid.jobs.embed.Representation`."""
        return cls(representation.template_id, representation.model_id)

    @property
    def text_only(self) -> bool:
        """A template whose text vectors other templates reuse (it is embedded first)."""
        return TEXT_TEMPLATE.get(self.template) == self.template

    def __str__(self) -> str:
        return f"{self.template}{_SEP}{self.model}"


@dataclass(frozen=True)
class VersionScope:
    """index.sid_map, index.codebooks: a codebook version."""

    version: str

    def __str__(self) -> str:
        return self.version


@dataclass(frozen=True)
class CorpusScope:
    """corpus.training_sequences: a codebook version, a source and a split protocol."""

    version: str
    source: str
    protocol: str

    @classmethod
    def of(cls, version: str, config) -> CorpusScope:
        """The scope of a `geosid.jobs.corpus.CorpusConfig` under `version`."""
        return cls(version, config.source, config.split.protocol)

    @property
    def keeps_state(self) -> bool:
        """The time protocol continues a history state day by day (checkpoints); the
        per-user protocols are rebuilt as one range."""
        return self.protocol == "time"

    def __str__(self) -> str:
        return _SEP.join((self.version, self.source, self.protocol))


Scope = CellScope | EmbedScope | VersionScope | CorpusScope


class Stage(enum.IntEnum):
    """A derived table as the pipeline records and repairs it. A repair rebuilds a day's
    stages in this order, and every day's index stages before any corpus stage: a corpus
    day joins the SID map as it stands."""

    GEO_CELLS = 1
    ITEM_GEO = 2
    TEXT_EMBEDDINGS = 3
    EMBEDDINGS = 4
    SIDS = 5
    CELL_CONTEXT = 6
    SEQUENCES = 7
    CODEBOOKS = 8  # a codebook version is immutable: never rebuilt, only reported

    @property
    def table(self) -> str:
        return _TABLES[self]

    @property
    def is_geo(self) -> bool:
        return self in (Stage.GEO_CELLS, Stage.ITEM_GEO)

    @property
    def is_embeddings(self) -> bool:
        return self in (Stage.TEXT_EMBEDDINGS, Stage.EMBEDDINGS)

    @property
    def is_corpus(self) -> bool:
        """Built in the corpus pass of a repair, after every day's index stages."""
        return self in (Stage.CELL_CONTEXT, Stage.SEQUENCES)

    @property
    def rebuilt(self) -> bool:
        return self is not Stage.CODEBOOKS

    @classmethod
    def of(cls, table: str, scope: Scope) -> Stage:
        """The stage of a build record (`ValueError` for a table the pipeline does not record)."""
        if table == silver.ITEM_EMBEDDINGS.name:
            return cls.TEXT_EMBEDDINGS if scope.text_only else cls.EMBEDDINGS
        stage = _BY_TABLE.get(table)
        if stage is None:
            raise ValueError(f"no stage records builds of {table!r}")
        return stage


_TABLES = {
    Stage.GEO_CELLS: silver.GEO_CELLS.name,
    Stage.ITEM_GEO: silver.ITEM_GEO.name,
    Stage.TEXT_EMBEDDINGS: silver.ITEM_EMBEDDINGS.name,
    Stage.EMBEDDINGS: silver.ITEM_EMBEDDINGS.name,
    Stage.SIDS: index.SID_MAP.name,
    Stage.CELL_CONTEXT: corpus.CELL_CONTEXT.name,
    Stage.SEQUENCES: corpus.TRAINING_SEQUENCES.name,
    Stage.CODEBOOKS: index.CODEBOOKS.name,
}
_BY_TABLE = {table: stage for stage, table in _TABLES.items() if stage is not Stage.TEXT_EMBEDDINGS}
_SCOPES = {
    silver.GEO_CELLS.name: CellScope,
    silver.ITEM_GEO.name: CellScope,
    corpus.CELL_CONTEXT.name: CellScope,
    silver.ITEM_EMBEDDINGS.name: EmbedScope,
    index.SID_MAP.name: VersionScope,
    index.CODEBOOKS.name: VersionScope,
    corpus.TRAINING_SEQUENCES.name: CorpusScope,
}


def scope_of(table: str, text: str) -> Scope:
    """A recorded scope of `table`, parsed."""
    kind = _SCOPES.get(table)
    if kind is None:
        raise ValueError(f"no stage records builds of {table!r}")
    if kind in (CellScope, VersionScope):
        return kind(text)
    parts = text.split(_SEP, 1) if kind is EmbedScope else text.split(_SEP)
    if len(parts) != (2 if kind is EmbedScope else 3):
        raise ValueError(f"{table} scope {text!r} is not a {kind.__name__}")
    return kind(*parts)
