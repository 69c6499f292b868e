"""Faust agents: the chat agent (requests → LLM → session topics) and its helpers."""
