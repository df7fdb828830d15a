"""Dataset files: JSON Lines or Parquet, readable by `datasets.load_dataset`.

Kept apart from export.py, which decides *what* the rows are; this decides how
they land on disk (including Arrow's `arrow.json` type for ragged nested values).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trajgraph.errors import ConfigError
from trajgraph.store.text import utf8_data

_FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


def write_dataset(rows: Sequence[dict[str, Any]], path: str | Path, *, format: str | None = None,
                  columns: Sequence[str] = ()) -> Path:
    """Write rows as JSON Lines or Parquet (by suffix or `format`); returns the path.

    Parquet columns are plain Arrow types when that round-trips exactly; nested
    values whose keys differ between rows (tool calls of different tools) are
    stored with Arrow's canonical `arrow.json` type instead, so no `None` keys are
    invented. `columns` are written even when `rows` is empty.
    """
    path = Path(path)
    rows = utf8_data(list(rows))  # text as UTF-8 holds it (trajgraph.store.text)
    fmt = format or _FORMATS.get(path.suffix.lower())
    if fmt not in ("jsonl", "parquet"):
        raise ConfigError(f"{path}: unknown dataset format; use a .jsonl or .parquet file, or format='jsonl'|'parquet'")
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        with path.open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        return path
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError("Parquet export needs pyarrow: pip install 'trajgraph[export]'") from None
    names = list(dict.fromkeys([*columns, *(k for r in rows for k in r)]))
    table = pa.table({n: _arrow_column(pa, [r.get(n) for r in rows]) for n in names})
    pq.write_table(table, path)
    return path


def _arrow_column(pa: Any, values: list[Any]) -> Any:
    if not values:
        return pa.array([], pa.string())
    try:
        arr = pa.array(values)
        if arr.to_pylist() == values:
            return arr
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        pass
    json_type = pa.json_(pa.string())
    if all(v is None or isinstance(v, list) for v in values):
        items = [json.dumps(x, ensure_ascii=False) for v in values for x in (v or [])]
        offsets = [0]
        for v in values:
            offsets.append(offsets[-1] + len(v or []))
        inner = pa.ExtensionArray.from_storage(json_type, pa.array(items, pa.string()))
        mask = pa.array([v is None for v in values])
        return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), inner, mask=mask)
    storage = pa.array([None if v is None else json.dumps(v, ensure_ascii=False) for v in values], pa.string())
    return pa.ExtensionArray.from_storage(json_type, storage)



__all__ = ["write_dataset"]
