"""The model and its exact simulators (MODEL.md §1–3).

- :mod:`~optctl.model.spectrum`: eigenvalues, initial errors, tail, mode grouping, and the
  per-step SGD recursion written once for numpy, jax and CasADi;
- :mod:`~optctl.model.replay`: the exact per-step replay, the ground truth every solve is
  checked against, and its adjoint gradient;
- :mod:`~optctl.model.momentum`: the EMA-momentum recursion and its replay;
- :mod:`~optctl.model.blocks`: the closed-form block propagator;
- :mod:`~optctl.model.montecarlo`: real minibatch SGD on sampled Gaussian features.

No module here imports CasADi; jax is loaded by the replay only for long horizons.
"""
