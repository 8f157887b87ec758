"""alhelpers: small, tested helpers for active learning in materials machine learning.

The notebooks under ``notebooks/`` only import and call these functions.
"""

from __future__ import annotations

__version__ = "0.1.0"
