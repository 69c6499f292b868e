"""The worker's two flows, ``agents.chat`` and ``agents.aggregates``, and what they share.

Shared here: the Faust ``app``, the ``worker`` entry point that registers both flows, the
worker's Prometheus ``metrics`` and its HTTP face (``web``).
"""
