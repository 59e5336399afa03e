"""Training datasets cut from ready_for_export trees at a pinned log position.

rows: the rows of each kind (TRL conversational formats) from one tree.
replay: trees replayed from the stored events with only the facts rows read.
writer: JSONL, parquet and HF datasets folders, all from the same JSON lines.
build: replays the log up to the position (or takes the projection's rows) and writes.
live: the training projection, which keeps every ready tree's rows current.
precut: reads the projection's tables (fast builds, `datasets status`).
"""
