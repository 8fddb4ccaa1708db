"""Mutation score of the conformance library against the reference's policy and state table.

Generates mutants of `reference/policy.py` (set membership, comparisons, arithmetic, numeric
constants, min/max, negated conditions, the terminated-reason table) and
`reference/subscription.py` (each table row: next state changed, one action dropped; shared
action tuples: one action dropped), runs the conformance library on the `sim` target against
each mutant and reports killed / survived, the score and the survivors (file:line + what).

The working tree is never modified: each mutant is written into a temporary copy of
`reference/` that is put first on the import path of a child process (its working
directory), so `conformance` and the scenarios come from the repository and `reference` from
the copy. A mutant is killed when a run that passes on the unmutated copy (the baseline)
fails or errors, or the child crashes or times out.

    python scripts/mutation.py                 # every mutant, parallel, summary + survivors
    python scripts/mutation.py --list          # the mutants only
    python scripts/mutation.py --limit 3 --json out.json -k REFRESH_TERMINATING
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_FILES = ("reference/policy.py", "reference/subscription.py")
LIBRARY = REPO / "scenarios" / "conformance"
RUN_TIMEOUT = 120.0
BAD = ("fail", "error")

# A row's next state is replaced by a plausible confusion (one mutant per row).
NEXT_STATE_SWAP = {
    "UNCONFIRMED": "WAITING", "UNCONFIRMED_DESTROY": "UNCONFIRMED",
    "CONFIRMED": "RESUBSCRIPTION", "WAITING": "UNCONFIRMED",
    "RESUBSCRIPTION": "CONFIRMED", "RESUBSCRIPTION_DESTROY": "PREDESTROYED",
    "WAITING_FOR_TERMINATION": "DESTROYED", "PREDESTROYED": "WAITING_FOR_TERMINATION",
    "DESTROYED": "WAITING", "TERMINATED": "WAITING",
}
COMPARE_FLIP: dict[type[ast.cmpop], ast.cmpop] = {
    ast.GtE: ast.Gt(), ast.Gt: ast.GtE(), ast.LtE: ast.Lt(), ast.Lt: ast.LtE(),
    ast.Eq: ast.NotEq(), ast.NotEq: ast.Eq(), ast.In: ast.NotIn(), ast.NotIn: ast.In(),
    ast.Is: ast.IsNot(), ast.IsNot: ast.Is(),
}
BINOP_SWAP: dict[type[ast.operator], ast.operator] = {
    ast.Sub: ast.Add(), ast.Add: ast.Sub(), ast.Mult: ast.Div(), ast.Div: ast.Mult(),
    ast.Pow: ast.Mult(), ast.FloorDiv: ast.Div(),
}
REASON_KINDS = ("now", "retry_after_or_backoff", "retry_after_or_now", "never")
# Sets whose every member is mutated (dropped); KNOWN_CODES only for the codes that some other
# rule singles out: dropping any other code maps it onto its x00, which behaves the same.
MEMBERSHIP_SETS = ("REFRESH_TERMINATING", "PERMANENT")
# (agent.py compares effective codes with 408, 423 and 481 and the two sets above.)
SPECIAL_CODES = frozenset({403, 404, 405, 408, 410, 416, 423, 480, 481, 482, 483, 484, 485, 489,
                           501, 603, 604, 606})
# The `destroyed` rows are documentation: the agent forgets the subscription on FREE, so no
# input ever reaches them (subscription.py says so). Mutating them is equivalent by design.
UNREACHABLE_STATES = frozenset({"DESTROYED"})
# Mutants that cannot change behaviour, found by reading the code (description -> why).
KNOWN_EQUIVALENT = {
    "effective_code(): `status // 100` -> `status / 100`":
        "an unknown code then stands for itself: it is in no code set and keeps its class",
    "backoff_delay(): constant 62 -> 63":
        "the exponent cap only avoids huge ints; max_retry_time bounds the delay either way",
    "ser_is_terminating(): constant 1 -> 2": "split(';', n)[0] is the same for any n >= 1",
    "rfc_status(): order ('active', 'pending', 'terminated') -> rotated":
        "membership in a tuple does not depend on its order",
    "rfc6665: drop A.STOP from shared actions `ended`":
        "each use re-arms the timer (SEND_INITIAL arms FAILOVER; START_RESUBSCRIBE_WAIT) or "
        "ends in `terminated`, where a TICK does nothing",
    "rfc6665 row (state, (E.NOTIFY_TERMINATED_FINAL,)): next S.TERMINATED -> S.WAITING":
        "`ended` stops the timer, and `waiting` differs from `terminated` only on TICK",
    "rfc6665 row (state, (E.TIMER_N, E.EXPIRED)): next state -> S.WAITING":
        "for `waiting` no change; `terminated` has no timer, and `waiting` differs from it "
        "only on TICK",
    "ser row (S.PREDESTROYED, (E.NOTIFY,)): drop A.UPDATE_FROM_NOTIFY":
        "ser checks no NOTIFY CSeq (SER-041) and sends nothing in the dialog after the "
        "unsubscribe, so nothing reads what the NOTIFY would update",
    "ser row (S.PREDESTROYED, (E.NOTIFY_TERMINATED,)): drop A.UPDATE_FROM_NOTIFY":
        "the subscription ends in the same row: nothing reads the update",
}
# Actions whose only effect is a counter or a log line: invisible on the wire and northbound,
# so no black-box scenario can tell a row without them (equivalent for this suite).
LOG_ONLY_ACTIONS = frozenset({"A.LOG_STALE", "A.LOG_NO_TERM_NOTIFY"})


@dataclass(frozen=True)
class Mutant:
    id: int
    file: str
    line: int
    description: str
    # Byte span in the file (line/col of start and end, 1-based lines) and its replacement.
    start: tuple[int, int]
    end: tuple[int, int]
    replacement: str
    # Why no scenario can kill it (empty: it should be killed). Decided from the agent's code
    # by `_equivalence`; such mutants are reported but left out of the score.
    equivalent: str = ""

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class Outcome:
    mutant: Mutant
    status: str  # killed / survived / timeout / crashed
    killed_by: list[str]
    seconds: float


# ------------------------------------------------------------------ generating mutants


class _Collector:
    def __init__(self, file: str) -> None:
        self.file = file
        self.items: list[tuple[int, str, tuple[int, int], tuple[int, int], str, str]] = []

    def add(self, node: ast.AST, replacement: str, description: str,
            equivalent: str = "") -> None:
        start = (node.lineno, node.col_offset)  # type: ignore[attr-defined]
        end = (node.end_lineno, node.end_col_offset)  # type: ignore[attr-defined]
        self.items.append((node.lineno, description, start, end,  # type: ignore[attr-defined]
                           replacement, equivalent))


def _name(node: ast.AST) -> str:
    return ast.unparse(node)


def _without(node: ast.Tuple, index: int) -> str:
    rest = [e for i, e in enumerate(node.elts) if i != index]
    return ast.unparse(ast.Tuple(elts=rest, ctx=ast.Load()))


def _equivalence(dropped: str, actions: Sequence[str]) -> str:
    """Why dropping `dropped` from a row (or shared tuple) with these actions cannot change
    what the agent does, from the agent's code; "" when it can."""
    if dropped in LOG_ONLY_ACTIONS:
        return "log/counter only"
    has_free = "A.FREE" in actions
    starts = any(a.startswith("A.START_") for a in actions)
    if dropped == "A.STOP" and (has_free or starts):
        return "FREE stops the timer / arming a timer replaces the live timer of the same key"
    if dropped == "A.STOP" and any(a.startswith("A.SEND_") for a in actions):
        return "every SUBSCRIBE sent arms the FAILOVER timer, replacing the live one"
    if dropped == "A.DROP_DIALOG" and ("A.SEND_INITIAL" in actions
                                       or "A.SEND_REDIRECT" in actions):
        return "a new dialog's SUBSCRIBE (`_new_dialog_request`) drops the old dialog first"
    if dropped in ("A.DROP_DIALOG", "A.ABANDON_TX") and has_free:
        return "FREE drops the dialog and abandons the transaction"
    return ""


AWAITING_RESPONSE = frozenset({"UNCONFIRMED", "UNCONFIRMED_DESTROY", "RESUBSCRIPTION",
                               "RESUBSCRIPTION_DESTROY", "PREDESTROYED"})
RESPONSE_EVENTS = frozenset({"R1XX", "R2XX", "R3XX", "R3XX_NO_CONTACT", "R4XX", "R423", "R481",
                             "R_TERMINATING", "R_FAIL", "R_TIMEOUT_DIALOG_UP"})
NOTIFY_EVENTS = frozenset({"NOTIFY", "NOTIFY_TERMINATED", "NOTIFY_TERMINATED_NOW",
                           "NOTIFY_TERMINATED_LATER", "NOTIFY_TERMINATED_FINAL"})
NO_DIALOG_STATES = frozenset({"WAITING", "TERMINATED"})


def _unreachable(states: Sequence[str], events: Sequence[str]) -> str:
    """Why no input reaches this row, from the dispatch (agent.py, actions.py); "" if some
    input can."""
    if all(s not in AWAITING_RESPONSE for s in states) and \
            all(e in RESPONSE_EVENTS for e in events):
        return ("unreachable: a response reaches the table only while the SUBSCRIBE is "
                "outstanding (`actions.run`, rule 4, abandons the transaction in every other "
                "state)")
    if all(s in NO_DIALOG_STATES for s in states) and all(e in NOTIFY_EVENTS for e in events):
        return "unreachable: no dialog in this state, so the agent answers 481 first"
    if list(states) == ["TERMINATED"] and list(events) == ["TICK"]:
        return "unreachable: `terminated` is entered only by rows that stop the timer"
    return ""


class _Symbols:
    """Tuple names of subscription.py (module level and per function), expanded."""

    def __init__(self, tree: ast.Module) -> None:
        self.tuples: dict[str, ast.Tuple] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and \
                    isinstance(node.targets[0], ast.Name) and isinstance(node.value, ast.Tuple):
                self.tuples.setdefault(node.targets[0].id, node.value)

    def expand(self, node: ast.expr) -> list[str]:
        """`(E.A, *name)` or `name` as member names without their prefix (`A`, ...)."""
        if isinstance(node, ast.Name) and node.id in self.tuples:
            return self.expand(self.tuples[node.id])
        if isinstance(node, ast.Starred):
            return self.expand(node.value)
        if isinstance(node, ast.Tuple):
            return [name for element in node.elts for name in self.expand(element)]
        return [_name(node).split(".")[-1]]


def _row_states(state: ast.expr, loops: dict[str, list[str]]) -> list[str]:
    if isinstance(state, ast.Name):
        return loops.get(state.id, [])
    return [_name(state).removeprefix("S.")]


def _table_mutants(tree: ast.Module, out: _Collector) -> None:
    """subscription.py: `_rows(t, state, events, actions, next)` calls and action tuples."""
    symbols = _Symbols(tree)
    for func in tree.body:
        if not isinstance(func, ast.FunctionDef) or func.name not in ("_ser_table",
                                                                         "_rfc_table"):
            continue
        profile = "ser" if func.name == "_ser_table" else "rfc6665"
        # What the name `state` stands for: the in_service(...) arguments, the for-loop tuple.
        loops: dict[str, list[str]] = {}
        call_states: dict[int, list[str]] = {}  # id(_rows call) -> states of its `state`
        helper_states = [_name(c.args[0]).removeprefix("S.") for c in ast.walk(func)
                         if isinstance(c, ast.Call) and _name(c.func) == "in_service"]
        for node in ast.walk(func):
            if isinstance(node, ast.For) and isinstance(node.target, ast.Name):
                loops_for = [_name(e).removeprefix("S.") for e in getattr(node.iter, "elts", [])]
                for call in ast.walk(node):
                    if isinstance(call, ast.Call) and _name(call.func) == "_rows":
                        call_states[id(call)] = loops_for
            if isinstance(node, ast.FunctionDef) and node.name == "in_service":
                for call in ast.walk(node):
                    if isinstance(call, ast.Call) and _name(call.func) == "_rows":
                        call_states[id(call)] = helper_states
        for node in ast.walk(func):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Tuple) and \
                    len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) and \
                    all(_name(e).startswith(("A.", "*")) for e in node.value.elts) and \
                    any(_name(e).startswith("A.") for e in node.value.elts):
                shared = node.targets[0].id
                names = [_name(e) for e in node.value.elts]
                for i, element in enumerate(node.value.elts):
                    out.add(node.value, _without(node.value, i),
                            f"{profile}: drop {_name(element)} from shared actions `{shared}`",
                            _equivalence(_name(element), names))
            if not (isinstance(node, ast.Call) and _name(node.func) == "_rows"
                    and len(node.args) == 5):
                continue
            _, state, events, actions, next_state = node.args
            states = call_states.get(id(node)) or _row_states(state, loops)
            if states and all(s in UNREACHABLE_STATES for s in states):
                continue
            unreachable = _unreachable(states, symbols.expand(events))
            action_names = ["A." + a for a in symbols.expand(actions)]
            row = f"{profile} row ({_name(state)}, {_name(events)})"
            current = _name(next_state).removeprefix("S.")
            swapped = NEXT_STATE_SWAP.get(current, "WAITING")
            unused = ("FREE forgets the subscription: the next state is never used"
                      if "A.FREE" in action_names else "")
            out.add(next_state, f"S.{swapped}", f"{row}: next {_name(next_state)} -> "
                    f"S.{swapped}", unreachable or unused)
            if isinstance(actions, ast.Tuple):
                names = [_name(e) for e in actions.elts]
                for i, element in enumerate(actions.elts):
                    out.add(actions, _without(actions, i), f"{row}: drop {_name(element)}",
                            unreachable or _equivalence(_name(element), action_names))


def _policy_mutants(tree: ast.Module, out: _Collector) -> None:
    for node in tree.body:
        # Set constants: drop one member.
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and \
                isinstance(node.targets[0], ast.Name) and isinstance(node.value, ast.Call) \
                and _name(node.value.func) == "frozenset" and node.value.args and \
                isinstance(node.value.args[0], ast.Set):
            name = node.targets[0].id
            members = node.value.args[0]
            for i, element in enumerate(members.elts):
                value = element.value if isinstance(element, ast.Constant) else None
                if name in MEMBERSHIP_SETS or (name == "KNOWN_CODES" and value in SPECIAL_CODES):
                    rest = [e for j, e in enumerate(members.elts) if j != i]
                    out.add(members, ast.unparse(ast.Set(elts=rest)),
                            f"{name}: drop {_name(element)}")
        # The terminated-reason table: change what each reason does.
        if isinstance(node, ast.AnnAssign | ast.Assign):
            for call in ast.walk(node):
                if isinstance(call, ast.Call) and _name(call.func) == "ReasonReaction":
                    _reason_mutants(call, out)
        if isinstance(node, ast.FunctionDef):
            _function_mutants(node, out)


def _reason_mutants(call: ast.Call, out: _Collector) -> None:
    reason = _name(call.args[0]) if call.args else "?"
    if len(call.args) >= 2 and isinstance(call.args[1], ast.Constant):
        kind = str(call.args[1].value)
        other = REASON_KINDS[(REASON_KINDS.index(kind) + 1) % len(REASON_KINDS)]
        out.add(call.args[1], repr(other), f"reason {reason}: resubscribe {kind} -> {other}")
    for keyword in call.keywords:
        if keyword.arg == "status" and isinstance(keyword.value, ast.Constant):
            out.add(keyword.value, repr("terminated"),
                    f"reason {reason}: status {keyword.value.value!s} -> terminated")


def _negation_is_flip(test: ast.expr) -> bool:
    """`not (a == b)` is the flipped comparison `a != b`, already a mutant: skip it."""
    return isinstance(test, ast.Compare) and len(test.ops) == 1 and \
        isinstance(test.ops[0], ast.Eq | ast.NotEq | ast.In | ast.NotIn | ast.Is | ast.IsNot)


def _function_mutants(func: ast.FunctionDef, out: _Collector) -> None:
    body = func.body[1:] if ast.get_docstring(func) else func.body
    for statement in body:
        for node in ast.walk(statement):
            where = f"{func.name}()"
            if isinstance(node, ast.Compare) and len(node.ops) == 1:
                flipped = COMPARE_FLIP.get(type(node.ops[0]))
                if flipped is not None:
                    mutated = ast.Compare(node.left, [flipped], node.comparators)
                    out.add(node, ast.unparse(mutated),
                            f"{where}: `{_name(node)}` -> `{ast.unparse(mutated)}`")
            elif isinstance(node, ast.BinOp):
                swapped = BINOP_SWAP.get(type(node.op))
                if swapped is not None:
                    mutated_op = ast.BinOp(node.left, swapped, node.right)
                    out.add(node, f"({ast.unparse(mutated_op)})",
                            f"{where}: `{_name(node)}` -> `{ast.unparse(mutated_op)}`")
            elif isinstance(node, ast.Call) and _name(node.func) in ("min", "max"):
                other = "max" if _name(node.func) == "min" else "min"
                out.add(node.func, other, f"{where}: {_name(node.func)}(...) -> {other}(...)")
            elif isinstance(node, ast.If | ast.IfExp) and not _negation_is_flip(node.test):
                out.add(node.test, f"(not ({_name(node.test)}))",
                        f"{where}: negate `{_name(node.test)}`")
            elif isinstance(node, ast.Constant) and type(node.value) in (int, float):
                value = node.value
                assert isinstance(value, int | float)
                bumped = value + 1 if isinstance(value, int) else round(value + 0.1, 6)
                out.add(node, repr(bumped), f"{where}: constant {value!r} -> {bumped!r}")
            elif isinstance(node, ast.Tuple) and len(node.elts) >= 2 and \
                    all(isinstance(e, ast.Constant) and isinstance(e.value, str)
                        for e in node.elts):
                rotated = [*node.elts[1:], node.elts[0]]
                out.add(node, ast.unparse(ast.Tuple(elts=rotated, ctx=ast.Load())),
                        f"{where}: order {_name(node)} -> rotated")


def generate(repo: Path = REPO) -> list[Mutant]:
    """Every mutant, in a stable order (file, then position)."""
    mutants: list[Mutant] = []
    for file in TARGET_FILES:
        tree = ast.parse((repo / file).read_text(encoding="utf-8"))
        out = _Collector(file)
        if file.endswith("subscription.py"):
            _table_mutants(tree, out)
        else:
            _policy_mutants(tree, out)
        for line, description, start, end, replacement, equivalent in sorted(
                out.items, key=lambda i: (i[2], i[1])):
            equivalent = equivalent or KNOWN_EQUIVALENT.get(description, "")
            mutants.append(Mutant(len(mutants) + 1, file, line, description, start, end,
                                  replacement, equivalent))
    return mutants


# CPython 3.11.7's ast.parse is not thread-safe (its recursion-depth check is shared
# state: "SystemError: AST constructor recursion depth mismatch" under run_mutants' threads,
# seen in the broad test run); parses are serialized, they are a tiny part of a mutant's time.
_AST_LOCK = threading.Lock()


def apply(source: str, mutant: Mutant) -> str:
    """The source with the mutant's span replaced (columns are UTF-8 byte offsets)."""
    lines = source.encode("utf-8").splitlines(keepends=True)
    (l1, c1), (l2, c2) = mutant.start, mutant.end
    before = b"".join(lines[:l1 - 1]) + lines[l1 - 1][:c1]
    after = lines[l2 - 1][c2:] + b"".join(lines[l2:])
    mutated = (before + mutant.replacement.encode("utf-8") + after).decode("utf-8")
    with _AST_LOCK:  # mutants are applied from worker threads; see _AST_LOCK
        ast.parse(mutated)  # a mutant must still be valid Python
    return mutated


# ------------------------------------------------------------------ running the library


def _library_verdicts(reference_dir: Path, library: Sequence[Path],
                      timeout: float, other_build: bool = False) -> tuple[str, dict[str, str]]:
    """Run the library on sim with `reference` imported from `reference_dir`'s parent
    (`other_build`: judged as another build, reference choices only `differs`).
    Returns (problem or "", run -> verdict)."""
    root = reference_dir.parent
    report = root / "report.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(REPO)]),
           "PYTHONDONTWRITEBYTECODE": "1", "NO_COLOR": "1"}
    argv = [sys.executable, "-m", "conformance", "run", *map(str, library), "--target", "sim",
            "-j", "1", "--json", str(report)] + (["--as-other-build"] if other_build else [])
    try:
        done = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True,
                              timeout=timeout, check=False, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return "timeout", {}
    # 2 = some scenario file is invalid (e.g. being edited): its runs are simply missing and
    # cannot kill (only runs that pass in the baseline count).
    if done.returncode not in (0, 1, 2) or not report.is_file():
        return f"crashed ({done.returncode}): {done.stderr[-300:]}", {}
    data = json.loads(report.read_text(encoding="utf-8"))
    return "", {f"{r['scenario']}[{r['profile']}]": r["verdict"] for r in data["results"]}


@dataclass
class _Workspace:
    """A private copy of reference/ (no bytecode) that one mutant at a time is written to."""

    root: Path

    @classmethod
    def create(cls) -> _Workspace:
        root = Path(tempfile.mkdtemp(prefix="b2b-mutant-"))
        shutil.copytree(REPO / "reference", root / "reference",
                        ignore=shutil.ignore_patterns("__pycache__"))
        return cls(root)

    def write(self, file: str, text: str) -> None:
        (self.root / file).write_text(text, encoding="utf-8")


def run_mutants(mutants: Sequence[Mutant], jobs: int, library: Sequence[Path],
                timeout: float = RUN_TIMEOUT, progress: bool = False,
                other_build: bool = False) -> tuple[dict[str, str], list[Outcome]]:
    """Baseline verdicts, then one outcome per mutant (workspaces reused per worker).
    `other_build`: the mutant is judged as another build; one whose runs only `differs`
    (it breaks a reference choice, no requirement) gets the status `differs`."""
    originals = {f: (REPO / f).read_text(encoding="utf-8") for f in TARGET_FILES}
    base_ws = _Workspace.create()
    try:
        problem, baseline = _library_verdicts(base_ws.root / "reference", library, timeout,
                                              other_build)
    finally:
        shutil.rmtree(base_ws.root, ignore_errors=True)
    if problem:
        raise RuntimeError(f"the unmutated reference does not run: {problem}")
    passing = {run for run, verdict in baseline.items() if verdict not in BAD}

    free: list[_Workspace] = []

    def one(mutant: Mutant) -> Outcome:
        ws = free.pop() if free else _Workspace.create()
        started = time.perf_counter()
        try:
            ws.write(mutant.file, apply(originals[mutant.file], mutant))
            problem, verdicts = _library_verdicts(ws.root / "reference", library, timeout,
                                                  other_build)
        finally:
            ws.write(mutant.file, originals[mutant.file])
            free.append(ws)
        seconds = time.perf_counter() - started
        if problem:
            status = "timeout" if problem == "timeout" else "crashed"
            outcome = Outcome(mutant, status, [problem[:200]], seconds)
        else:
            killers = sorted(run for run in passing if verdicts.get(run, "missing") in BAD)
            differing = sorted(run for run in passing if verdicts.get(run) == "differs")
            status = "killed" if killers else ("differs" if differing else "survived")
            outcome = Outcome(mutant, status, killers or differing, seconds)
        if progress:
            print(f"  #{mutant.id:<4} {outcome.status:<8} {mutant.where:<32} "
                  f"{mutant.description}", file=sys.stderr, flush=True)
        return outcome

    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            outcomes = list(pool.map(one, mutants))
    finally:
        for ws in free:
            shutil.rmtree(ws.root, ignore_errors=True)
    return baseline, outcomes


def score(outcomes: Sequence[Outcome], raw: bool = False) -> float:
    """Killed (incl. timeouts and crashes) over the mutants that are not equivalent (or over
    all of them: `raw`), in percent."""
    counted = [o for o in outcomes if raw or not o.mutant.equivalent]
    if not counted:
        return 0.0
    killed = sum(1 for o in counted if o.status not in ("survived", "differs"))
    return 100.0 * killed / len(counted)


def select(mutants: Sequence[Mutant], pattern: str | None, limit: int | None,
           ids: Sequence[int] = ()) -> list[Mutant]:
    chosen = [m for m in mutants
              if (not pattern or pattern.lower() in f"{m.where} {m.description}".lower())
              and (not ids or m.id in ids)]
    return chosen[:limit] if limit else chosen


def _report(outcomes: Sequence[Outcome]) -> str:
    counts = {s: sum(1 for o in outcomes if o.status == s)
              for s in ("killed", "timeout", "crashed", "survived", "differs")}
    equivalent = [o for o in outcomes if o.mutant.equivalent]
    lines = [f"{len(outcomes)} mutants: {counts['killed']} killed, {counts['timeout']} "
             f"timeout, {counts['crashed']} crashed, {counts['survived']} survived "
             f"({len(equivalent)} equivalent by construction, "
             f"{sum(1 for o in equivalent if o.status != 'survived')} of them killed anyway)",
             f"mutation score {score(outcomes):.1f} % without the equivalent mutants "
             f"({score(outcomes, raw=True):.1f} % over all)"]
    differing = [o for o in outcomes if o.status == "differs"]
    if differing:
        lines.append(f"reference choice only (`differs`, no requirement violated): "
                     f"{len(differing)}")
        lines += [f"  #{o.mutant.id} {o.mutant.where}  {o.mutant.description}"
                  for o in differing]
    survivors = [o for o in outcomes if o.status == "survived" and not o.mutant.equivalent]
    if survivors:
        lines.append("survivors:")
        lines += [f"  #{o.mutant.id} {o.mutant.where}  {o.mutant.description}"
                  for o in survivors]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("-k", dest="pattern", help="only mutants whose file:line or "
                        "description contains this (case-insensitive)")
    parser.add_argument("--id", type=int, action="append", default=[], help="only mutant N")
    parser.add_argument("--limit", type=int, help="at most N mutants (after -k/--id)")
    parser.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--library", type=Path, action="append",
                        help=f"scenario files/folders (default {LIBRARY.relative_to(REPO)})")
    parser.add_argument("--json", type=Path, help="write every outcome here")
    parser.add_argument("--min-score", type=float, default=0.0,
                        help="exit 1 when the score is below this (percent)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no per-mutant progress")
    parser.add_argument("--as-other-build", action="store_true",
                        help="judge each mutant as another build: killed = a requirement "
                        "violated; a mutant that only breaks reference choices is `differs`")
    args = parser.parse_args(argv)
    mutants = select(generate(), args.pattern, args.limit, args.id)
    if args.list:
        for m in mutants:
            tag = f"  [equivalent: {m.equivalent}]" if m.equivalent else ""
            print(f"#{m.id:<4} {m.where:<32} {m.description}{tag}")
        return 0
    library = args.library or [LIBRARY]
    started = time.perf_counter()
    _, outcomes = run_mutants(mutants, args.jobs, library, progress=not args.quiet,
                              other_build=args.as_other_build)
    print(_report(outcomes))
    print(f"({time.perf_counter() - started:.0f} s, {args.jobs} jobs)")
    if args.json:
        args.json.write_text(json.dumps({
            "score": score(outcomes), "raw_score": score(outcomes, raw=True),
            "outcomes": [{**asdict(o.mutant), "where": o.mutant.where, "status": o.status,
                          "killed_by": o.killed_by, "seconds": round(o.seconds, 3)}
                         for o in outcomes]}, indent=1), encoding="utf-8")
    return 1 if score(outcomes) < args.min_score else 0


if __name__ == "__main__":
    sys.exit(main())
