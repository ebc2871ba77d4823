"""The rank programs the distributed tests run under a launcher (one copy for every backend).

``ALL_REDUCE``: every rank adds ``rank + 1`` over gloo and prints
``rank=<r> world=<n> sum=<s> env_rank=<RANK>``; with 2 ranks the sum is 3.
``SLEEPER``: prints its pid and rank, then sleeps (for cancel tests).
"""

ALL_REDUCE = """
import os, torch, torch.distributed as dist
dist.init_process_group("gloo")
rank = dist.get_rank()
t = torch.tensor([float(rank + 1)])
dist.all_reduce(t)
print(f"rank={rank} world={dist.get_world_size()} sum={t.item():g} env_rank={os.environ['RANK']}")
dist.destroy_process_group()
"""

SLEEPER = """
import os, time
print(f"pid={os.getpid()} rank={os.environ['RANK']}", flush=True)
time.sleep(120)
"""
