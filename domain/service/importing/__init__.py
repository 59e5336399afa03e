"""Bring your own data: prompts, chat messages, preference pairs and completions from
JSONL, JSON, CSV, parquet and HF datasets folders, recorded as conversation trees."""
