"""Benchmarks: ``vidrec bench`` (engine, streaming, freshness, memory, encoder, index)
and ``vidrec soak``. They print figures; no test times anything.
"""
