"""Competition workflow around the experiments: ``python -m kagglekit <command>``.

- :mod:`kagglekit.workflow.commands`: download / folds / status / validate / submit / ledger.
- :mod:`kagglekit.workflow.ledger`: scan ``output/`` for experiments and keep ``output/ledger.csv``.
- :mod:`kagglekit.workflow.bundle`: offline bundle (written separately; loaded lazily).
"""
