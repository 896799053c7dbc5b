"""Fill-up calibration: pumped litres between full tanks against the agent's own estimate for the same distance.

``ledger`` stores fill-ups and finished trips durably (SQLite beside the spool); ``fit`` turns them into
intervals between full fill-ups and a correction factor per fuel source with its confidence; ``recorder``
keeps a running pipeline calibrated and its ledger fed; ``points`` are what InfluxDB gets (``fillup``,
``calibration``); ``commands`` are the ``fillup`` and ``calibration`` commands.
"""
