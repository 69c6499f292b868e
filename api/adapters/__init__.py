"""Protocol adapters: the same durable Kafka path, spoken in the formats clients already use.

- ``ui_chat``: the AI SDK's UI message stream (``useChat``), ``POST /v1/ui/chat`` and its resume;
- ``openai_chat``: OpenAI's ``/v1/chat/completions``, streaming or not, with re-attach.

Both read a request's events through ``request_events`` and publish through
``api.ingress.admit_chat``, so quotas, auth and exact resume are the session stream's own.
"""
