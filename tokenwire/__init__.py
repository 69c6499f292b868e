"""tokenwire: LLM chat through Kafka, token by token, to browsers."""

__version__ = "0.1.0"
