"""The chat flow: ``chat.requests`` in, one ordered answer per request out.

In: request records on ``chat.requests`` (key = session id). Each is decoded
(``request_intake``; bad records go to ``chat.requests.dlq`` via ``dead_letter``), waits for its
session's turn and then a generation slot (``inflight``), and streams from the
OpenAI-compatible endpoint (``generation``, ``llm_stream``, ``retry_policy``, ``coalescing``).
Out: ``start``/``token``/``retry``/``done``/``error`` events on the session stream and lifecycle
records on ``chat.events`` (``session_writer``). A record is acked in offset order only after its
terminal event is on the broker (``ordered_acks``); a re-delivered one is recognised from its
session's history (``request_ledger``). Dead letters and terminal events Kafka refuses are
retried in the record's own task (``write_retry``), so no record holds up the ones behind it.
``runtime`` owns the clients and tasks, ``agent`` is the thin Faust agent, ``session_janitor``
deletes idle session topics, and ``faust_transport`` is Faust's Kafka transport with pauses that
reach aiokafka.
"""
