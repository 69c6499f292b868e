"""Audit replay: transcripts and integrity checks rebuilt from the topics, with no consumer group.

``log_reader`` reads topics by time range; ``audit_log`` decodes them with the contracts;
``transcript`` and ``verify`` (+ ``checks``) build on both; ``cli`` is ``tokenwire replay``.
"""
