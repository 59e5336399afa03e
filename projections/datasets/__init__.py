"""Training datasets cut from ready_for_export trees at a pinned log position.

rows: the rows of each kind (TRL conversational formats) from one tree.
writer: JSONL, parquet and (when installed) HF datasets folders, plus the manifest.
build: replays the log up to the position and drives the two.
"""
