"""Adapters from HTTP servers to stages: func-python (what ``kn func`` deploys) and
functions-framework (the portable one). They translate; they decide nothing."""
