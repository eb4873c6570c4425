"""fedsim's ClientApp with its SGD steps taken out, to time the engine alone.

    python benchmarks/engine.py --no-sgd        # runs this for (b), (b1), (bf), (b1f)

Imported as ``no_sgd_client`` (by the Ray actors: ``benchmarks/`` is on their path), it makes
``sgd_steps`` a no-op and exposes the ClientApp: every message, batch, seed, reply, check, fold
and measurement happens as in a real run, only the optimiser's work is gone. Run as a script, it
is ``fedsim`` with the fedsim Ray engine's ClientApp swapped for that one.
"""

from __future__ import annotations

import sys

import strategies.local_sgd as local_sgd

local_sgd.sgd_steps = lambda *args, **kwargs: 0.0

from clients.client_app import app  # noqa: E402,F401  the ClientApp, its SGD now a no-op

if __name__ == "__main__":
    import fedsim.engine.ray_engine as ray_engine
    from fedsim.cli import main

    ray_engine.CLIENT_APP = "no_sgd_client:app"
    sys.exit(main(sys.argv[1:]))
