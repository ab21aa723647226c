"""The faust worker: the app, its agents and tables, and worker processes (``vidrec up``).

The agents only adapt ``workers.adapter.EngineAdapter`` to faust streams and tables.
"""
