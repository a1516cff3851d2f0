"""What the actor runtime needs from the outside world, as small protocols.

The runtime (``actors/runtime.py``, ``actors/mail.py``, ``actors/reminders.py``, the
senders and the order's turn) is written against these; the adapters implement them
(PostgreSQL in ``adapters/postgres``, Redis in ``adapters/redis``) and ``daemon/`` passes
the concrete ones in. Each module holds one part's protocols with the records that cross
them.
"""
