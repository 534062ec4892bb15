"""matplotlib as every figure of convlens draws it: no display, and no mathtext.

Labels carry strings users choose (job names, class names, parameter values): with mathtext on, `$x^{$` in a run's
name raises while the figure is drawn and takes the whole page down for every reader. Off, a `$` is a dollar sign.
"""

import matplotlib

matplotlib.use("Agg")
matplotlib.rcParams["text.parse_math"] = False
matplotlib.rcParams["text.usetex"] = False

import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["plt"]
