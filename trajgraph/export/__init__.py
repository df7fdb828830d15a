"""Exports: TRL datasets (SFT chats, DPO pairs, PRM stepwise) and OpenTelemetry spans.

- `datasets.py`: the dataset builders and `write_dataset` (JSONL or Parquet);
- `_read.py`: which runs an export reads (`RunFilter`), and their effective outcome;
- `_chat.py`: a trajectory rendered as chat messages;
- `_write.py`: atomic file writes;
- `otel.py`, `_otel_attrs.py`: runs and search trees as `gen_ai.*` spans.

`export_spans` loads the OpenTelemetry SDK only when called.
"""

from trajgraph.export.datasets import (
    DPO_COLUMNS,
    PRM_COLUMNS,
    SFT_COLUMNS,
    RunFilter,
    dpo_dataset,
    prm_dataset,
    sft_dataset,
    snapshot,
    write_dataset,
)
from trajgraph.export.otel import JsonFileSpanExporter, export_spans

__all__ = [
    "sft_dataset",
    "dpo_dataset",
    "prm_dataset",
    "write_dataset",
    "export_spans",
    "JsonFileSpanExporter",
    "snapshot",
    "RunFilter",
    "SFT_COLUMNS",
    "DPO_COLUMNS",
    "PRM_COLUMNS",
]
