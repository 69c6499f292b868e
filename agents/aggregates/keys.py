"""The keys of the aggregates state, in one place (their values: ``aggregation``'s docstring).

Every key a partition writes names that partition, so a sweep of one partition's idle entries
only deletes keys whose changelog records live on that partition: Faust writes a table change,
a delete too, to the changelog partition of the event being processed.

Keys written before the partition was part of them (``b|<size>|<user>``, ``o|<user>``) are
still read, and deleted when the user's entry is next written.
"""

from __future__ import annotations


def window_key(partition: int, size_s: int, start: int, user_id: str) -> str:
    return f"w|{partition}|{size_s}|{start}|{user_id}"


def window_prefix(partition: int, size_s: int, start: int) -> str:
    return f"w|{partition}|{size_s}|{start}|"


def baseline_key(partition: int, size_s: int, user_id: str) -> str:
    return f"b|{partition}|{size_s}|{user_id}"


def legacy_baseline_key(size_s: int, user_id: str) -> str:
    return f"b|{size_s}|{user_id}"


def open_key(partition: int, user_id: str) -> str:
    return f"o|{partition}|{user_id}"


def legacy_open_key(user_id: str) -> str:
    return f"o|{user_id}"


def clock_key(partition: int) -> str:
    return f"c|{partition}"


def partition_of_window_key(key: str) -> int:
    return int(key.split("|", 2)[1])


def baseline_size(key: str) -> int:
    """The window size of a ``b|<partition>|<size>|<user>`` key."""
    return int(key.split("|", 3)[2])
