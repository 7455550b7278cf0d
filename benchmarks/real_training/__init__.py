"""The real-training benchmark: does an optctl schedule help a real training job?

Run it with ``python benchmarks/bench_real_training.py``; the tasks are in
:mod:`real_training.tasks`, one training run in :mod:`real_training.training`, the
methods compared in :mod:`real_training.methods` and :mod:`real_training.peers`.
"""
