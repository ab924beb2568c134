"""pytest set-up shared by the unit tests and nbval.

The notebook kernels that nbval starts inherit this process's environment, so setting
LRLIB_QUIET here switches lrlib's progress bars off in every notebook under test: their
text changes from run to run and would make output comparisons flaky.
"""

import os

os.environ.setdefault("LRLIB_QUIET", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
