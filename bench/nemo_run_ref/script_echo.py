"""NeMo Run reference: launch ``echo hi`` on the local executor and wait for it.

What a NeMo Run user writes for a one-off shell command (``run.run`` records an
experiment, launches it on the executor and waits, tailing its log). Run with NeMo Run's
own interpreter; ``NEMORUN_HOME`` should point at a scratch directory.
"""

import nemo_run as run

if __name__ == "__main__":
    run.run(run.Script(inline="echo hi"), executor=run.LocalExecutor(), name="echo")
