"""Request metrics of the deployments, from TF Serving's Prometheus counters.

arithmetic (pure: parse, deltas, percentiles) -> collect (scrape into 10 s points) ->
retention (1-minute points, expiry) -> series (charts, dashboard). tasks: the beat tasks.
"""
