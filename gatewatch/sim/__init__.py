"""The traffic simulator behind ``gatewatch simulate`` (see ``gatewatch.simulate``).

``world`` (teams, keys, models, machines) → ``traffic`` (arrivals into ``rows``, columns of
requests) → ``incidents`` and ``benign`` events edit the rows over a window → ``finalize``
(downtimes, cache latency, costs, Langfuse delays, team spend, budgets) → ``render_*`` turn rows
into lines of each format → ``output`` gzips them, one process per file.
"""
