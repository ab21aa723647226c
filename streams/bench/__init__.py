"""Benchmarks: the sections of ``vidrec bench`` (one module each) and ``vidrec soak``.

Sections: ``encoder``, ``sample``, ``engine``, ``memory``, ``streaming``, ``freshness``; they share
``synthetic`` (data), ``report`` (rows, table, plot) and ``kafka_io`` (the broker side). ``index``
compares the embedded index backends (``python -m streams.bench.index``). The commands live in
``streams.cli.bench`` and ``streams.cli.soak``. They print figures; no test times anything.
"""
