"""Real deployment: SuperLink and SuperNodes with TLS and SuperNode authentication.

Thin, checked wrappers around Flower's own ``flower-superlink``, ``flower-supernode`` and
``flwr``: credentials (:mod:`.credentials`), reachability checks (:mod:`.probe`), processes
with private homes (:mod:`.processes`, :mod:`.nodes`), the ``flwr`` CLI (:mod:`.flwr_cli`),
byte accounting against the SuperLink's counters (:mod:`.wire`) and the ``fedsim deploy``
commands (:mod:`.commands`). See docs/deployment.md.
"""
