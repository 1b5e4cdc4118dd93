"""The intents this process created most recently, by key: so that one
delivered again while its tenant's limits refuse new submissions is
answered as the duplicate it is, not refused.

A refusal at admission says "not created". A client whose first answer was
lost (a timeout) and whose retry meets a full quota must not be told that
about an intent that exists and runs. A key found here is looked up before
the limits are asked (and so never counted as a refusal); asking the store
for every submission would cost a flood a read per request, this memo a
lookup. What it does not cover: it is this process's, empty after a
restart and not shared with another owner of the tenant; past `limit`
keys the oldest are let go; a delivery that comes while the first one's
create is still under way is not found yet. Such a retry is answered as a
new submission would be (refused when the limits refuse), though the
intent runs: `get` finds it.
"""

from __future__ import annotations

__all__ = ["RecentKeys"]


class RecentKeys:
    """A bounded set of keys, oldest let go first."""

    __slots__ = ("_keys", "limit")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be positive, got {limit!r}")
        self.limit = limit
        self._keys: dict[str, None] = {}  # insertion order: oldest first

    def add(self, key: str) -> None:
        self._keys[key] = None
        if len(self._keys) > self.limit:
            del self._keys[next(iter(self._keys))]

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)
