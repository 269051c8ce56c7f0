"""``docs/configuration.md``, generated from the config models: ``python -m mmw.config_docs --write``.

The docstring of each setting in :mod:`mmw.config` is its documentation; ``tests/test_docs.py``
fails when the shipped page is not what this renders.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from pathlib import Path

from mmw.config import PROJECT_ROOT, Config, _type_name

DOC_PATH = PROJECT_ROOT / "docs" / "configuration.md"
_HEADER = """# Configuration: `config/config.yaml`

<!-- Generated from mmw/config.py by `python -m mmw.config_docs --write`. Do not edit. -->

`config/config.yaml` is the one place to change settings. Every key below may be set there; a key
that is not set keeps its default. Unknown keys and wrong types are errors that name the field, e.g.
`server.http_port: expected an integer, got str '8000'`. `launcher run` regenerates the model
repository's `config.pbtxt` files from these values before it starts Triton.
"""


def _default(f: dataclasses.Field) -> str:
    value = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default  # type: ignore[misc]
    return f"`{value!r}`" if not isinstance(value, str) or value else '`""`'


def _sections(cls: type, prefix: str = "") -> list[tuple[str, type]]:
    """Every section (a dataclass of settings) below ``cls``, depth first, with its dotted name."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out.append((prefix + f.name, hints[f.name]))
            out += _sections(hints[f.name], prefix + f.name + ".")
    return out


def render() -> str:
    """The whole page."""
    parts = [_HEADER]
    for name, section in _sections(Config):
        hints = typing.get_type_hints(section)
        settings = [f for f in dataclasses.fields(section) if not dataclasses.is_dataclass(hints[f.name])]
        if not settings:
            continue
        summary = " ".join((section.__doc__ or "").split("\n\n")[0].split())
        parts.append(f"\n## `{name}`\n\n{summary}\n\n| setting | type | default | |\n| --- | --- | --- | --- |")
        for f in settings:
            description = " ".join((section.__pydantic_fields__[f.name].description or "").split())
            parts.append(f"| `{name}.{f.name}` | {_type_name(hints[f.name])} | {_default(f)} | "
                         f"{description.replace('|', '/')} |")
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmw.config_docs", description=__doc__)
    parser.add_argument("--write", action="store_true", help=f"write {DOC_PATH.relative_to(PROJECT_ROOT)}")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        Path(DOC_PATH).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
