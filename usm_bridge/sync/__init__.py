"""Sync: the engine (one cycle of one connector instance), the router (the chain between units),
the outbox, and the daemon that schedules cycles."""
