"""The corpus stage: bronze events + SIDs + geo -> corpus.training_sequences, its history
state, and corpus.cell_context.

- config: the split and corpus settings (built once at the edge);
- protocols: the time / LibCity / trajectory split protocols as transforms;
- build: `build_range` (from scratch) and `build_day` (incremental from yesterday's state),
  one kernel (`geosid.jobs.sequences_kernel`), the same rows either way;
- state: the history state, its checkpoint calendar and compaction, and the roll-back a
  repair continues from (after a late or corrected input day the state goes back to the
  nearest checkpoint before it and the days after are rebuilt one by one);
- context: corpus.cell_context.
"""

from geosid.jobs.corpus.build import build_day, build_range, corpus_scan, kernel_events, sequence_rows
from geosid.jobs.corpus.config import CorpusConfig, LibCityConfig, SplitConfig, TrajectoryConfig
from geosid.jobs.corpus.context import CellContextReport, build_cell_context, cell_context_rows
from geosid.jobs.corpus.protocols import (
    label_splits,
    libcity_sessions,
    trajectory_bounds,
    trajectory_filter,
    trajectory_targets,
)
from geosid.jobs.corpus.report import CorpusReport
from geosid.jobs.corpus.state import (
    checkpoint_days,
    compacted_states,
    latest_states,
    rollback_state,
    state_events,
    state_rows,
)

__all__ = [
    "CellContextReport",
    "CorpusConfig",
    "CorpusReport",
    "LibCityConfig",
    "SplitConfig",
    "TrajectoryConfig",
    "build_cell_context",
    "build_day",
    "build_range",
    "cell_context_rows",
    "checkpoint_days",
    "compacted_states",
    "corpus_scan",
    "kernel_events",
    "label_splits",
    "latest_states",
    "libcity_sessions",
    "rollback_state",
    "sequence_rows",
    "state_events",
    "state_rows",
    "trajectory_bounds",
    "trajectory_filter",
    "trajectory_targets",
]
