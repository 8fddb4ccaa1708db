"""No import circle anywhere in the packages.

The graph has one node per module of ``reference``, ``simulator`` and ``conformance`` and one
edge per import statement, wherever it sits: imports under ``if TYPE_CHECKING:`` and inside
functions count too, because a circle a type checker or a late import hides is still a
circle for a reader. An import of a package points at its ``__init__`` module; the implicit
import of a module's parent package does not count (Python's package machinery, not ours).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("reference", "simulator", "conformance")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[_module_name(path)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules its source imports."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name.split(".") if is_package else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules
                           else base for alias in node.names]
            for target in targets:
                if target in modules and target != name:
                    graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a list of modules (first == last), or None."""
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(graph, white)
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = grey
        stack.append(node)
        for nxt in sorted(graph[node]):
            if colour[nxt] == grey:
                return [*stack[stack.index(nxt):], nxt]
            if colour[nxt] == white and (found := visit(nxt)):
                return found
        stack.pop()
        colour[node] = black
        return None

    for node in sorted(graph):
        if colour[node] == white and (found := visit(node)):
            return found
    return None


def test_the_graph_sees_the_packages() -> None:
    graph = import_graph()
    assert "reference.sip.message" in graph["reference.sip.dialog"]
    assert "reference.agent" in graph["reference"]


def test_the_cycle_finder_finds_a_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle_in_the_packages() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


# The picture in docs/architecture.md ("Which module may import which"), as rules.
LEAVES = ("reference.config", "reference.subscription", "reference.timers",
          "reference.xmlsafe", "reference.multipart", "reference.sip.errors",
          "reference.sip.limits")
# Body parsers: they import only the hardened XML layer, multipart and each other.
BODIES = ("reference.pidf", "reference.reginfo", "reference.rlmi", "reference.xmlsafe",
          "reference.multipart")
ADAPTERS = ("reference.udp", "reference.tcp", "reference.control", "reference.cli",
            "reference.loops",
            "reference.__main__")


def _violations(graph: dict[str, set[str]]) -> list[str]:
    out: list[str] = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            edge = f"{module} -> {target}"
            if module in LEAVES:
                out.append(f"{edge}: a leaf imports nothing of the project")
            if module in BODIES and target not in BODIES:
                out.append(f"{edge}: a body parser imports only body parsers")
            if module.startswith("reference.sip.") and not target.startswith("reference.sip"):
                out.append(f"{edge}: the SIP layer imports only itself")
            if module.startswith("reference") and module not in ADAPTERS and target in ADAPTERS:
                out.append(f"{edge}: the core never imports its adapters")
            if module.startswith("reference") and not target.startswith("reference"):
                out.append(f"{edge}: reference imports neither simulator nor conformance")
            if module.startswith("simulator") and target.startswith("conformance"):
                out.append(f"{edge}: simulator never imports conformance")
    return out


def test_imports_follow_the_layer_picture() -> None:
    assert _violations(import_graph()) == []


def test_the_layer_rules_catch_a_wrong_edge() -> None:
    assert _violations({"reference.sip.uri": {"reference.agent"},
                        "reference.agent": {"reference.udp"},
                        "reference.timers": {"reference.sip.errors"}}) == [
        "reference.agent -> reference.udp: the core never imports its adapters",
        "reference.sip.uri -> reference.agent: the SIP layer imports only itself",
        "reference.timers -> reference.sip.errors: a leaf imports nothing of the project",
    ]


def test_the_ua_layer_knows_nothing_of_presence() -> None:
    presence = {"reference.agent", "reference.subscription", "reference.policy",
                "reference.pidf", "reference.qsa", "reference.config"}
    assert not import_graph()["reference.ua"] & presence


# The core's rooms (docs/architecture.md): which project modules each may import, besides
# the SIP layer (`reference.sip*`). A module below another never imports it: the
# classifier knows no state it could change (no core, no actions), the actions no facade,
# the UA layer no presence.
CORE_EDGES: dict[str, set[str]] = {
    "reference.pump": {"reference.agent", "reference.effects", "reference.qsa"},
    "reference.agent": {"reference.actions", "reference.classify", "reference.config",
                        "reference.core", "reference.credentials", "reference.effects",
                        "reference.ids", "reference.packages", "reference.policy",
                        "reference.queries", "reference.shared_dialogs",
                        "reference.sharing", "reference.subscribe_input",
                        "reference.subscription", "reference.timers", "reference.ua"},
    "reference.shared_dialogs": {"reference.core", "reference.effects", "reference.sharing"},
    "reference.queries": {"reference.core"},
    "reference.actions": {"reference.classify", "reference.core", "reference.digest",
                          "reference.policy", "reference.qsa", "reference.reginfo",
                          "reference.rlmi", "reference.subscription"},
    "reference.core": {"reference.classify", "reference.config", "reference.credentials",
                       "reference.digest", "reference.effects", "reference.ids",
                       "reference.packages", "reference.pidf", "reference.policy",
                       "reference.qsa", "reference.reginfo", "reference.rlmi",
                       "reference.sharing", "reference.subscription", "reference.timers",
                       "reference.ua"},
    "reference.classify": {"reference.digest", "reference.effects", "reference.packages",
                           "reference.pidf", "reference.policy", "reference.reginfo",
                           "reference.resend", "reference.rlmi", "reference.subscription"},
    "reference.ua": {"reference.effects", "reference.timers"},
    "reference.policy": {"reference.config"},
    # issue 18: digest knows identifiers only; resend decides from digest; sharing from qsa.
    "reference.digest": {"reference.ids"},
    "reference.resend": {"reference.digest"},
    "reference.sharing": {"reference.qsa"},
    "reference.credentials": {"reference.digest"},
}


def test_the_core_rooms_import_only_their_allowed_edges() -> None:
    graph = import_graph()
    for module, allowed in CORE_EDGES.items():
        extra = {t for t in graph[module] if not t.startswith("reference.sip")} - allowed
        assert not extra, f"{module} imports {sorted(extra)}: not an edge of the picture"
