"""Track A: formation-energy regression from composition descriptors with a deep ensemble.

``features`` (descriptors), ``models`` (the ensemble), ``config`` (the run configs of notebooks
01–03), ``loop`` (the round body of the AL loop) and ``crossdb`` (cross-database transfer).
"""
