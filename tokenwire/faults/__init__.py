"""Faults across many processes: 2 workers, 2 edges and a 3-broker cluster, all real processes.

``tokenwire faults`` (``make faults``) runs each scenario of ``scenarios`` against a fresh stack
(``stack``) while at least 20 chats stream (``chats``: SSE clients that reconnect to the other
edge with ``Last-Event-ID``, as EventSource behind a load balancer does), then checks what the
clients assembled against the simulator's answers, runs ``replay verify`` over the run's topics,
and reports the longest gap between two tokens and how long the worker group took to be stable
again (``observe``, ``report``). The tests in ``tests/faults`` run a shortened form.
"""
