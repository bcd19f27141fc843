"""A griffe extension for the API reference: trajlab's docstrings are reST-flavoured prose
(``code``, :func:`name`, ``::`` before a literal block), rendered here as Markdown.

- ``:func:`name``` (and :class:, :mod:, :data:, :attr:, :meth:, :exc:, :obj:) becomes an optional
  cross-reference: a link when the object is documented on the site, plain code otherwise (so an
  undocumented target is never a warning). ``~a.b.c`` shows ``c``; a bare name is resolved in the
  docstring's scope; a name re-exported by ``trajlab`` points to where it is defined.
- ``text::`` before an indented block becomes ``text:`` (the block is a Markdown code block).
- A list that follows a paragraph line gets the blank line Markdown needs before it.
- ``<``, ``>``, ``[`` and ``]`` outside code are escaped, so ``<leaf>``-style placeholders are not
  eaten as HTML and ``T[i][j]`` is not a Markdown reference link.

Loaded by mkdocs.yml (``extensions: [docs/griffe_rst.py]``); it changes nothing in the package.
"""

from __future__ import annotations

import re
from typing import Any, Callable

import griffe  # mkdocstrings[python] brings it

ROLE = re.compile(r":(?:py:)?(?:func|class|mod|data|attr|meth|exc|obj|const):`(?P<tilde>~?)(?P<target>[^`<>]+)`")
CODE = re.compile(r"(``[\s\S]+?``|`[^`]+`)")
LIST_ITEM = re.compile(r"^(\s*)([-*+]|\d+\.)\s")


def _lazy_exports() -> dict[str, str]:
    """trajlab's lazily exported names (``trajlab._LAZY``): name -> defining path."""
    try:
        import trajlab

        return {f"trajlab.{name}": f"{module}.{attribute}" for name, (module, attribute) in trajlab._LAZY.items()}
    except Exception:  # noqa: BLE001 - without the package installed, links stay plain code
        return {}


class RestRoles(griffe.Extension):
    """Turn reST roles and blocks of trajlab's docstrings into Markdown (module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self._lazy = _lazy_exports()

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if pkg.name != "trajlab":
            return
        self._loader = loader
        seen: set[int] = set()
        self._walk(pkg, seen)

    # --- traversal ---------------------------------------------------------------------------

    def _walk(self, obj: griffe.Object, seen: set[int]) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if obj.docstring is not None:
            obj.docstring.value = self.convert(obj.docstring.value, obj)
        for member in obj.members.values():
            if not member.is_alias:
                self._walk(member, seen)

    # --- names -------------------------------------------------------------------------------

    def _canonical(self, path: str) -> str:
        if path in self._lazy:
            return self._lazy[path]
        try:
            found = self._loader.modules_collection.get_member(path)
        except Exception:  # noqa: BLE001
            return path
        try:
            return found.final_target.path if found.is_alias else found.path
        except Exception:  # noqa: BLE001 - an alias to something outside the package
            return path

    def _identifier(self, target: str, scope: griffe.Object) -> str:
        target = target.strip().lstrip(".")
        if "." not in target or not target.startswith("trajlab"):
            try:
                target = scope.resolve(target.split(".")[0]) + target[len(target.split(".")[0]):]
            except Exception:  # noqa: BLE001 - not a name in scope: keep it as written
                try:
                    target = (scope.parent or scope).resolve(target.split(".")[0]) + target[len(target.split(".")[0]):]
                except Exception:  # noqa: BLE001
                    return target
        return self._canonical(target)

    def _role(self, match: re.Match, scope: griffe.Object) -> str:
        target = match["target"].strip()
        title = target.rsplit(".", 1)[-1] if match["tilde"] else target
        identifier = self._identifier(target, scope)
        return f'<autoref identifier="{identifier}" optional><code>{title}</code></autoref>'

    # --- text --------------------------------------------------------------------------------

    def convert(self, text: str, scope: griffe.Object) -> str:
        return to_markdown(text, lambda match: self._role(match, scope))


def code_role(match: re.Match) -> str:
    """A role as plain code (no link): ``~a.b`` shows ``b``."""
    target = match["target"].strip()
    return f"<code>{target.rsplit('.', 1)[-1] if match['tilde'] else target}</code>"


def _inline(text: str, role: Callable[[re.Match], str]) -> str:
    """Escape <, >, [ and ] outside code spans, and render the roles with ``role``."""
    roles: list[str] = []

    def keep_role(match: re.Match) -> str:
        roles.append(role(match))
        return f"\x00{len(roles) - 1}\x00"

    text = ROLE.sub(keep_role, text)
    parts = CODE.split(text)
    for i in range(0, len(parts), 2):  # even parts are outside code spans
        parts[i] = parts[i].replace("<", "&lt;").replace(">", "&gt;").replace("[", "\\[").replace("]", "\\]")
    return re.sub(r"\x00(\d+)\x00", lambda m: roles[int(m[1])], "".join(parts))


def to_markdown(text: str, role: Callable[[re.Match], str] = code_role) -> str:
    """A reST-flavoured docstring as Markdown: blocks first (literal blocks, lists), then the prose
    of each run of non-code lines at once (a code span may cross a line break)."""
    out: list[str] = []
    prose: list[str] = []
    in_code = in_list = False
    previous = ""

    def flush() -> None:
        if prose:
            out.extend(_inline("\n".join(prose), role).split("\n"))
            prose.clear()

    for line in text.split("\n"):
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if in_code and stripped and indent < 4:
            in_code = False
        if not in_code and stripped and indent >= 4 and not previous.strip():
            in_code = True
        if in_code:
            flush()
            out.append(line)
            previous = line
            continue
        if not stripped:
            in_list = False
        elif LIST_ITEM.match(line) and indent == 0:
            if previous.strip() and not in_list:
                prose.append("")
            in_list = True
        if stripped.endswith("::"):
            line = line.rstrip()[:-1]
        prose.append(line)
        previous = line
    flush()
    return "\n".join(out)
