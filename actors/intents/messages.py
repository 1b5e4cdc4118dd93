"""What the intents side tells the actors above it (tenants)."""

from __future__ import annotations

from exoarmur.runtime import TimeoutCategory, message

__all__ = ["Activate"]


@message("exoarmur.intent.activate", timeout=TimeoutCategory.EXECUTION_INTENT)
class Activate:
    """To the tenants actor: have an intent actor for this intent running
    (started if there is none; an existing one is left alone). Answers True
    if this call started it. `take_over`: the intent's owner is another
    process whose lease has lapsed; the actor makes it this process's (and
    drops that owner's index entry once the record is no longer its)."""

    tenant: str
    intent_id: str
    take_over: bool = False
    entry_owner: str = ""  # whose index entry led here ("": none)
