"""NeMo Run reference: a one-task ``run.Partial`` of a trivial function, local, waited on.

The same task as ``bench/bench_workspace.py``'s ``noop`` recipe. NeMo Run needs the
function importable by the job process, so it lives in this file (``__main__`` is
packaged with the experiment by NeMo Run itself).
"""

import nemo_run as run


def noop(message: str = "done") -> None:
    print(message)


if __name__ == "__main__":
    run.run(
        run.Partial(noop, message="hello from a Partial"),
        executor=run.LocalExecutor(),
        name="noop",
    )
