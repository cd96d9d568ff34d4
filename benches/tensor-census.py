"""What the tensor census (python/memwarden/_tensors.py) costs at a trial end, in a process
with PyTorch and Optuna imported and LIVE tensors alive (default 10,000): a census that finds
nothing new, and one that walks NEW new storages (default 4) up to the module list holding
them. Median of ROUNDS (default 9), milliseconds.

    python benches/tensor-census.py [LIVE] [NEW] [ROUNDS]
"""

import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import optuna  # noqa: E402,F401  (its objects are on the heap users have)
import torch  # noqa: E402
from memwarden._tensors import Census  # noqa: E402

LIVE = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
NEW = int(sys.argv[2]) if len(sys.argv) > 2 else 4
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 9
KEPT = []
ALIVE = [torch.zeros(16) for _ in range(LIVE)]

census = Census(os.path.dirname(os.path.abspath(sys.modules[Census.__module__].__file__)) + os.sep, 1e9)
census.take("setup", None)
quiet, walking = [], []
for i in range(ROUNDS):
    begun = time.perf_counter()
    census.take("quiet-%d" % i, None)
    quiet.append((time.perf_counter() - begun) * 1e3)
    KEPT.extend(torch.ones(64 * 1024) for _ in range(NEW))
    begun = time.perf_counter()
    record = census.take("walk-%d" % i, None)
    walking.append((time.perf_counter() - begun) * 1e3)
    assert record["walked"] == NEW, record
import gc  # noqa: E402

print(
    "tensor census, %d live tensors, %d heap objects: nothing new %.1f ms, %d new storages walked %.1f ms (median of %d)"
    % (LIVE, len(gc.get_objects()), statistics.median(quiet), NEW, statistics.median(walking), ROUNDS)
)
