"""The documentation: every public name is on an API page, links resolve, no private references.

Fast checks only (no site build): ``mkdocs build --strict`` runs in the README test command
and in CI, and it is what checks that every docstring renders and every cross-reference
resolves. Here:

* every public name (the top-level re-exports of ``collapse_jax`` and the ``__all__`` of every
  public submodule) is rendered by a ``::: path`` directive of ``docs/api/*.md``, either
  directly or as a member of a documented module (its ``__all__``, or an explicit
  ``members:`` list);
* no file of the repository points at the project's private design notes or at numbered
  tracker entries: a user has none of them;
* every relative link of ``README.md`` and ``docs/**/*.md`` points to an existing file.
"""

import ast
import importlib
import pkgutil
import re
import subprocess
import types
from pathlib import Path

import pytest
import yaml

import collapse_jax

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
API = DOCS / "api"

# ---------------------------------------------------------------------------------------------
# (a) every public name is documented


def _top_level_names():
    """``{name: the module it is imported from}`` for the public names of ``collapse_jax``.

    Its explicit re-exports (``from .module import x as x``), and ``__all__`` if it has one.
    """
    tree = ast.parse((ROOT / "collapse_jax" / "__init__.py").read_text(encoding="utf-8"))
    names = {
        alias.asname: f"collapse_jax.{node.module}"
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.level == 1
        for alias in node.names
        if alias.asname == alias.name and not alias.name.startswith("_")
    }
    for name in getattr(collapse_jax, "__all__", []):
        names.setdefault(name, "collapse_jax")
    return names


def _public_modules():
    """Every submodule whose dotted path has no ``_``-prefixed part."""
    names = [
        info.name
        for info in pkgutil.walk_packages(collapse_jax.__path__, "collapse_jax.")
        if not any(part.startswith("_") for part in info.name.split("."))
    ]
    return {name: importlib.import_module(name) for name in sorted(names)}


def _module_public_names(module):
    """``__all__`` if defined, else the public objects defined in (or re-exported by) it."""
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and not isinstance(obj, types.ModuleType)
        and (getattr(obj, "__module__", "") or "").startswith("collapse_jax")
    ]


def _resolve(path):
    """The object at a dotted path (longest importable module prefix, then attributes)."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for part in parts[i:]:
            obj = getattr(obj, part)
        return obj
    raise ImportError(path)


DIRECTIVE = re.compile(r"^::: *(\S+) *\n((?:[ \t]+\S.*\n)*)", re.M)


def _directives():
    """``(page, path, options)`` for every ``::: path`` block of the API pages."""
    out = []
    for page in sorted(API.glob("*.md")):
        text = page.read_text(encoding="utf-8") + "\n"
        for m in DIRECTIVE.finditer(text):
            block = yaml.safe_load(_dedent(m.group(2))) if m.group(2).strip() else None
            out.append((page.name, m.group(1), (block or {}).get("options", {}) or {}))
    return out


def _dedent(text):
    lines = [line for line in text.splitlines() if line.strip()]
    indent = min(len(line) - len(line.lstrip()) for line in lines)
    return "\n".join(line[indent:] for line in lines)


def _documented():
    """``{dotted path: object}`` of everything the API pages render.

    A module directive renders the names of its ``members:`` option when given as a list,
    nothing with ``members: false``, else its ``__all__`` (mkdocstrings' public members; with
    ``show_if_no_docstring`` on, undocumented ones too), else the public objects defined in it.
    """
    documented = {}
    for _, path, options in _directives():
        obj = _resolve(path)
        documented[path] = obj
        if isinstance(obj, types.ModuleType):
            members = options.get("members")
            if members is False:
                continue
            names = members if isinstance(members, list) else _module_public_names(obj)
            for name in names:
                documented[f"{path}.{name}"] = getattr(obj, name)
    return documented


#: Objects compared by identity only when not a plain value (ints, strings... can coincide).
_VALUE_TYPES = (int, float, complex, str, bytes, bool, tuple, frozenset, type(None))


def _is_documented(path, obj, documented, source=None):
    """Rendered at ``path``, at ``source.name`` (where it is imported from), or the same object."""
    if path in documented or (source and f"{source}.{path.rsplit('.', 1)[1]}" in documented):
        return True
    if isinstance(obj, _VALUE_TYPES):
        return False
    return any(other is obj for other in documented.values())


def test_api_directives_resolve():
    directives = _directives()
    assert len(directives) >= 12
    for page, path, _ in directives:
        assert path.startswith("collapse_jax"), (page, path)
        _resolve(path)  # raises on a typo


def test_mkdocstrings_lists_members_without_docstrings():
    """Else a module directive would silently drop the undocumented names of its ``__all__``."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    plugins = {
        next(iter(p)) if isinstance(p, dict) else p: (
            p[next(iter(p))] if isinstance(p, dict) else {}
        )
        for p in config["plugins"]
    }
    options = plugins["mkdocstrings"]["handlers"]["python"]["options"]
    assert options["show_if_no_docstring"] is True
    assert config["strict"] is True


def test_every_top_level_name_is_documented():
    documented = _documented()
    names = _top_level_names()
    assert len(names) > 100
    missing = [
        n
        for n, source in names.items()
        if not _is_documented(f"collapse_jax.{n}", getattr(collapse_jax, n), documented, source)
    ]
    assert missing == [], f"add them to docs/api/*.md: {missing}"


@pytest.mark.parametrize("module", sorted(_public_modules()), ids=str)
def test_every_public_submodule_name_is_documented(module):
    documented = _documented()
    mod = _public_modules()[module]
    missing = [
        n
        for n in _module_public_names(mod)
        if not _is_documented(f"{module}.{n}", getattr(mod, n), documented)
    ]
    assert missing == [], f"add them to docs/api/*.md: {missing}"


def test_the_rule_catches_a_missing_name():
    """The check is not vacuous: a name nobody renders is reported."""
    documented = _documented()
    assert not _is_documented("collapse_jax.not_a_name", object(), documented)
    obj = collapse_jax.load_sweep
    assert _is_documented("collapse_jax.load_sweep", obj, documented, "collapse_jax._sweep")
    pruned = {k: v for k, v in documented.items() if v is not obj}
    assert not _is_documented("collapse_jax.load_sweep", obj, pruned, "collapse_jax._sweep")


# ---------------------------------------------------------------------------------------------
# (b) no references a user cannot follow

# Built by concatenation so that this file does not match its own patterns.
_FORBIDDEN = [
    re.compile(re.escape("MODEL" + ".md")),
    re.compile(re.escape("CLI" + ".md")),
    re.compile(r"(?<![\w.-])" + re.escape("shared" + "/")),
    re.compile(r"\b[Ii]ssues?" + r"\s+#?\d+"),
    re.compile(r"\([Ii]ssue" + r"\s*#?\d+\)"),
]


def _repository_text_files():
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    for name in listed:
        path = ROOT / name
        if not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data:
            continue
        try:
            yield name, data.decode("utf-8")
        except UnicodeDecodeError:
            continue


def test_no_file_mentions_private_notes_or_issue_numbers():
    hits = []
    for name, text in _repository_text_files():
        for lineno, line in enumerate(text.splitlines(), 1):
            for pattern in _FORBIDDEN:
                if pattern.search(line):
                    hits.append(f"{name}:{lineno}: {line.strip()[:100]}")
    assert hits == [], "\n".join(hits)


def test_forbidden_patterns_match_what_they_should():
    bad = [
        "see MODEL" + ".md",
        "CLI" + ".md §2",
        "in shared" + "/seeds",
        "(issue " + "9)",
        "issues " + "3",
    ]
    good = ["docs/theory.md §2", "docs/cli.md", "shared rows", "the issue is", "tiss" + "ue 5"]
    assert all(any(p.search(s) for p in _FORBIDDEN) for s in bad)
    assert not any(p.search(s) for p in _FORBIDDEN for s in good)


# ---------------------------------------------------------------------------------------------
# (c) relative links resolve

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
_CODE = re.compile(r"(`+).*?\1", re.S)
_MATH = re.compile(r"\$\$.*?\$\$|\$[^$\n]+\$", re.S)  # arithmatex: `K[W](t)` is no link
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFDEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*(\S+)", re.M)


def _markdown_files():
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def _link_targets(text):
    text = _MATH.sub("", _CODE.sub("", _FENCE.sub("", text)))
    for m in [*_LINK.finditer(text), *_REFDEF.finditer(text)]:
        target = m.group(1)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue  # http:, https:, mailto:, ... and anchors within the page
        yield target.split("#")[0].split("?")[0]


def _exists(source, target):
    path = (source.parent / target).resolve()
    if path.exists():
        return True
    # docs/_hooks.py publishes notebooks/*.ipynb at the site path notebooks/ (docs-relative)
    try:
        rel = path.relative_to(DOCS.resolve())
    except ValueError:
        return False
    return rel.parts[:1] == ("notebooks",) and (ROOT / rel).exists()


@pytest.mark.parametrize("page", _markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    if not page.exists():
        pytest.skip(f"{page.name} not written yet")
    broken = [t for t in _link_targets(page.read_text(encoding="utf-8")) if not _exists(page, t)]
    assert broken == []


def test_link_extraction():
    text = (
        "[a](x.md#s) ![i](img/p.png) [w](https://e.org) [s](#top) `[c](no.md)`\n"
        "$K[W](t)$ and $$\nG[W](s)\n$$\n[r]: ref.md\n"
    )
    assert list(_link_targets(text)) == ["x.md", "img/p.png", "ref.md"]
