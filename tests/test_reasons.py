"""Every reason code the code emits is a member of the reason enum (with its retryability)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from schemas.enums import RETRYABLE_REASONS, Reason

REPO = Path(__file__).resolve().parents[1]
# call -> position of its reason argument
REASON_ARG = {"reject": 2, "rejection": 2, "_reject_all": 2, "VideoError": 0, "DecodeFailure": 0, "Rejection": 1}
REASON_KEYWORDS = {"reason", "error"}
CODE = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")


def _codes(expr: ast.AST) -> set[str]:
    """String literals an expression can evaluate to (getattr's attribute name is not one)."""
    if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name) and expr.func.id == "getattr":
        return _codes(expr.args[2]) if len(expr.args) > 2 else set()
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        return {expr.value} if CODE.fullmatch(expr.value) else set()
    if isinstance(expr, ast.IfExp):
        return _codes(expr.body) | _codes(expr.orelse)
    if isinstance(expr, ast.BoolOp):
        return set().union(*(_codes(v) for v in expr.values))
    return set()


def emitted_codes(tree: ast.AST) -> set[str]:
    codes: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in REASON_ARG and len(node.args) > REASON_ARG[name]:
                codes |= _codes(node.args[REASON_ARG[name]])
            codes |= set().union(*(_codes(k.value) for k in node.keywords if k.arg in REASON_KEYWORDS))
        elif isinstance(node, ast.ClassDef):  # `reason = "batch_pending"` on an exception class
            for item in node.body:
                if isinstance(item, ast.Assign) and any(getattr(t, "id", None) == "reason" for t in item.targets):
                    codes |= _codes(item.value)
        elif isinstance(node, ast.FunctionDef) and node.name.startswith("check_"):  # filters: (reason, detail)
            for ret in ast.walk(node):
                if isinstance(ret, ast.Return) and isinstance(ret.value, ast.Tuple) and ret.value.elts:
                    codes |= _codes(ret.value.elts[0])
    for node in getattr(tree, "body", []):  # module constants such as REASON = "near_duplicate"
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "").endswith("REASON") for t in node.targets):
            codes |= _codes(node.value)
    return codes


def test_every_emitted_reason_is_in_the_enum():
    found: dict[str, list[str]] = {}
    for folder in ("agents", "engine", "jobs", "schemas"):
        for path in sorted((REPO / folder).rglob("*.py")):
            for code in emitted_codes(ast.parse(path.read_text())):
                found.setdefault(code, []).append(str(path.relative_to(REPO)))
    assert len(found) > 40, "the scan no longer finds the reason codes"
    missing = {code: files for code, files in found.items() if code not in Reason.__members__}
    assert not missing, f"reason codes missing from schemas.enums.Reason: {missing}"


def test_the_scan_sees_each_way_a_reason_is_written():
    source = '''
out.reject(self.name, item, "a_code", detail)
rejection(stage, item, "b_code" if x else "c_code")
raise VideoError("d_code", "text")
ChatResult(error="e_code")
class Pending(Exception):
    reason = "f_code"
def check_video(w):
    return "g_code", "detail"
REASON = "h_code"
out.reject(s, i, getattr(err, "reason", "i_code"))
'''
    assert emitted_codes(ast.parse(source)) == {f"{c}_code" for c in "abcdefghi"}


def test_retryable_reasons_are_members():
    assert RETRYABLE_REASONS <= set(Reason)
    assert Reason.api_error.retryable and not Reason.parse_failed.retryable
