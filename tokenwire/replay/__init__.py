"""Audit replay: transcripts and integrity checks rebuilt from the topics, with no consumer group.

``log_reader`` reads topics by time range; ``audit_log`` decodes them with the contracts;
``session_logs`` reads sessions' events in either session layout; ``transcript`` and ``verify``
(+ ``checks``) build on them; ``cli`` is ``tokenwire replay``.
"""
