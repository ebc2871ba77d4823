"""A minimal workspace for the end-to-end Partial benchmark, written as NeMo Run users do.

``import nemorun_tui as run`` resolves ``run.Partial`` when a recipe runs, so the job
process (which only imports this module to find ``noop``) never loads fiddle.
"""

import nemorun_tui as run


def noop(message: str = "done") -> None:
    print(message)


@run.recipe(name="noop", help="a Partial that prints one line")
def noop_recipe() -> "run.Partial":
    return run.Partial(noop, message="hello from a Partial")
