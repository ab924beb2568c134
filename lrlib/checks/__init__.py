"""One checker per exercise of the course.

Introduced in notebook ``00_welcome``. A checker calls the learner's function on small
cases whose answers are known exactly. When every case is right it prints one line,
``✓ Exercise N.k: <what was verified>``; otherwise it raises ``AssertionError`` saying
which input failed, what was expected, what came back, and a hint::

    Exercise 0.2: for in_features=784, out_features=1024, bias=True
      expected: 803840
      got:      802816
      hint: do not forget the bias: one per output feature

Checkers are named after the exercise they check (``exercise_0_1`` checks Exercise 0.1)
and live in one module per notebook (``nb00_welcome`` … ``nb07_capstone``); all are
re-exported here, so a notebook calls ``checks.exercise_3_1(rank_k_approximation)``.
A ``NotImplementedError`` from the learner's function (the stub of an exercise not yet
done) is passed through unchanged. What the checkers share is in ``lrlib.checks.core``.
"""

from .nb00_welcome import exercise_0_1, exercise_0_2
from .nb01_latency_vs_throughput import exercise_1_1, exercise_1_2, exercise_1_3
from .nb02_compression_vs_optimization import exercise_2_1, exercise_2_2, exercise_2_3, exercise_2_4
from .nb03_svd_low_rank import (exercise_3_1, exercise_3_2, exercise_3_3, exercise_3_4, exercise_3_5,
                                exercise_3_6, exercise_3_7)
from .nb04_tensor_decompositions import exercise_4_1, exercise_4_2, exercise_4_3, exercise_4_4
from .nb05_decomposing_convolutions import (exercise_5_1, exercise_5_2, exercise_5_3, exercise_5_4,
                                            exercise_5_5, exercise_5_6)
from .nb06_one_by_one_convolutions import exercise_6_1, exercise_6_2, exercise_6_3
from .nb07_capstone import exercise_7_1, exercise_7_2, exercise_7_3, exercise_7_4, exercise_7_5

__all__ = [
    "exercise_0_1",
    "exercise_0_2",
    "exercise_1_1",
    "exercise_1_2",
    "exercise_1_3",
    "exercise_2_1",
    "exercise_2_2",
    "exercise_2_3",
    "exercise_2_4",
    "exercise_3_1",
    "exercise_3_2",
    "exercise_3_3",
    "exercise_3_4",
    "exercise_3_5",
    "exercise_3_6",
    "exercise_3_7",
    "exercise_4_1",
    "exercise_4_2",
    "exercise_4_3",
    "exercise_4_4",
    "exercise_5_1",
    "exercise_5_2",
    "exercise_5_3",
    "exercise_5_4",
    "exercise_5_5",
    "exercise_5_6",
    "exercise_6_1",
    "exercise_6_2",
    "exercise_6_3",
    "exercise_7_1",
    "exercise_7_2",
    "exercise_7_3",
    "exercise_7_4",
    "exercise_7_5",
]
