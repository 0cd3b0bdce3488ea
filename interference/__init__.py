"""interference: why SFT makes a small language model forget (see README.md).

Importing the package first sets the OpenMP wait policy (``interference.threads``), which only
takes effect if it happens before torch loads."""
from interference import threads as _threads  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads)
