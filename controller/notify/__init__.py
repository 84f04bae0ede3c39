"""Notifications: events into a durable outbox in status (pure), rendered per sink (pure), sent by adapters."""
