"""The headless runner behind ``python -m alhelpers.run``: it only orchestrates notebooks.

``tasks`` (a notebook execution, its identity and status, local and Dask executors, the results
lock), ``study`` (Track A's grid, notebooks 01–06) and ``potentials`` (Track B's grid, notebooks
07–08). Every number is computed in the notebooks and the ``alhelpers`` functions they call.
"""
