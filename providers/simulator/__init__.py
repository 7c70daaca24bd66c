"""Provider simulator: MusicBrainz, Spotify, Deezer, Last.fm and Discogs on one loopback port.

The real APIs' paths, parameters, bodies, error formats and rate limits, served from a seeded
generated catalog or a CSV, with configurable latency, errors, hangs, outages and malformed bodies.

Run it: ``trackflow simulate [--size N --seed S | --catalog FILE] [--config sim.toml]``; it prints
``export TRACKFLOW_...`` lines first. In tests::

    from trackflow.providers.simulator.server import start_simulator
    from trackflow.providers.simulator.config import SimConfig

    config = SimConfig().with_provider("deezer", rate_limit=5, rate_window_s=1.0)
    async with await start_simulator(config=config) as sim:   # or: async with simulator(...)
        sim.url        # "http://127.0.0.1:PORT"
        sim.env        # TRACKFLOW_* variables pointing trackflow at it
        sim.catalog    # the Catalog it serves (ground truth)
        await sim.set_outage("spotify", 503, duration_s=5)
        report = await sim.report()   # {"deezer": {"requests", "limit", "window_s",
                                      #   "max_in_window", "violations", ...}, ...}

Control over HTTP: ``GET /_sim/report``, ``POST /_sim/reset``, ``POST /_sim/outage``
``{"provider", "status", "duration_s"}``, ``GET /_sim/requests``, ``GET /_sim/health``.
"""
