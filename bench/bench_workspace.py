"""A minimal workspace for the end-to-end Partial benchmark."""

from core.recipes import recipe

from core.config import Partial


def noop(message: str = "done") -> None:
    print(message)


@recipe(name="noop", help="a Partial that prints one line")
def noop_recipe() -> Partial:
    return Partial(noop, message="hello from a Partial")
