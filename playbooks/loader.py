"""Load and validate the bundled playbooks (``playbooks/*.yaml``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import ValidationError

from playbooks.schema import Playbook

HERE = Path(__file__).resolve().parent


class PlaybookError(Exception):
    pass


def load_playbook(path: Path) -> Playbook:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise PlaybookError(f"{path}: not valid YAML: {e}") from None
    try:
        return Playbook.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        raise PlaybookError(f"{path}: {loc}: {err['msg']}") from None


@lru_cache(maxsize=4)
def load_playbooks(folder: Path = HERE) -> dict[str, Playbook]:
    books = {}
    for p in sorted(folder.glob("*.yaml")):
        pb = load_playbook(p)
        if pb.name != p.stem:
            raise PlaybookError(f"{p}: name {pb.name!r} must match the file name")
        books[pb.name] = pb
    return books
