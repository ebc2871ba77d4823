"""What a run produced: metrics, artifacts and checkpoints, comparisons, and failure causes.

No UI here (the app and the CLI both use it) and no backend code: a backend says where a
job's outputs are through the optional ``job_outputs`` capability (:mod:`.locate`), and every
file is read through a transport, so a run on a cluster is read over the shared SSH
connection exactly as a local one is read from disk.

* :mod:`.watch`     incremental metrics (tfevents, ``metrics.jsonl``, CSV, stdout regex)
* :mod:`.artifacts` listing with sizes, times, hashes; checkpoints marked; stored per job
* :mod:`.fetch`     resumable, verified copy of one artifact
* :mod:`.triage`    why a job failed, with the log lines that say so
* :mod:`.compare`   what differs between runs
* :mod:`.jobs`      the above for a stored job (what front ends call)
"""
