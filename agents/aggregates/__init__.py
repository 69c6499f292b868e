"""The aggregates flow: lifecycle events in, windowed rate and risk out.

In: ``chat.events`` (key = user id), written by the chat flow. ``agent`` folds each event into
per-user event-time windows (``windows``) held in a Faust table, through ``aggregation``;
``content_flags`` scans prompts and answers for PII, injection markers and refusals and ``risk``
turns a closed window into a score against the user's baseline. Out: points for InfluxDB
(``points``, written by ``influx_sink``) and risk alerts on ``chat.alerts``, which the edge's
throttle reads. ``replay`` runs the same fold over the topic from the start, for auditors.
What keeps it bounded: ``expiry`` deletes idle users' state, ``series`` caps the InfluxDB tags,
``content_flags`` scans at most a budget of each text, in linear time; ``keys`` names the state.
"""
