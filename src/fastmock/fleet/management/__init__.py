"""The fleet's management, above its port workers: the HTTP API and dashboard (api.py), chaos schedules
(chaos.py), the event log of every change (events.py) and ``--detach`` (detach.py).

It changes ports only through the Supervisor's calls and reads the shared state; nothing below imports it.
"""
