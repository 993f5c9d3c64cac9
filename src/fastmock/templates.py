"""``{{ EXPR }}`` templates of scenario files, evaluated without ``eval``.

    EXPR := faker.PROVIDER | faker.PROVIDER(LITERAL, ..., name=LITERAL)     a seeded Faker value
          | NAME | NAME.key | NAME[0]                                       a value extracted earlier
          | LITERAL | EXPR (+ - * / // %) EXPR | -EXPR | (EXPR)             arithmetic, string concatenation
          | int(EXPR) | float(EXPR) | str(EXPR) | round(EXPR[, DIGITS])     conversions (a query value is text)

The expression is parsed by Python's ``ast`` and only these node kinds are accepted; everything is checked
before a run (providers exist, their arguments fit their signatures, names are extracted by an earlier
step), and evaluated by walking the tree.
"""

import ast
import functools
import inspect
import operator
import re

__all__ = ["TemplateError", "TEMPLATE", "check_templates", "render"]

TEMPLATE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
MAX_EXPRESSION = 500
MAX_REPEAT = 1 << 20  # a repeated string or list: at most this long
CONVERSIONS = {"int": int, "float": float, "str": str, "round": round}


class TemplateError(ValueError):
    """A template that cannot be evaluated (at check time: one that never could)."""


@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> ast.expr:
    if len(text) > MAX_EXPRESSION:
        raise TemplateError(f"template longer than {MAX_EXPRESSION} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        raise TemplateError(f"{{{{{text}}}}}: not an expression ({exc.msg})") from None
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Constant, ast.Name, ast.Attribute, ast.Subscript, ast.BinOp, ast.UnaryOp,
                                 ast.Call, ast.keyword, ast.Load, *_BINARY, *_UNARY)):
            raise TemplateError(f"{{{{{text}}}}}: {type(node).__name__} is not allowed in a template")
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise TemplateError(f"{{{{{text}}}}}: no names starting with '_'")
        if isinstance(node, ast.Call):
            if _conversion(node) is not None:
                if node.keywords or not 1 <= len(node.args) <= 2:
                    raise TemplateError(f"{{{{{text}}}}}: {node.func.id}() takes one value (round: and digits)")
            elif _provider_name(node.func) is None:
                raise TemplateError(f"{{{{{text}}}}}: only faker providers and {', '.join(CONVERSIONS)} can be "
                                    f"called")
            elif not all(isinstance(arg, ast.Constant) for arg in [*node.args, *(k.value for k in node.keywords)]):
                raise TemplateError(f"{{{{{text}}}}}: a provider's arguments are literals")
            elif any(keyword.arg is None for keyword in node.keywords):
                raise TemplateError(f"{{{{{text}}}}}: no **arguments")
    return tree


def _conversion(node: ast.Call):
    """int(...), float(...), str(...) or round(...): the function, else None."""
    return CONVERSIONS.get(node.func.id) if isinstance(node.func, ast.Name) else None


def _provider_name(node: ast.expr) -> str | None:
    """``faker.X`` → "X"."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "faker":
        return node.attr
    return None


def _provider(faker, name: str):
    provider = getattr(faker, name, None) if not name.startswith("_") else None
    if not callable(provider):
        raise TemplateError(f"no faker provider {name!r}")
    return provider


def check_templates(value, faker, names) -> None:
    """Every template in ``value`` (a string, or lists and mappings of them) can be evaluated: its providers
    exist and take the arguments given, and its names are among ``names``. Raises TemplateError."""
    if isinstance(value, dict):
        for item in value.values():
            check_templates(item, faker, names)
    elif isinstance(value, list):
        for item in value:
            check_templates(item, faker, names)
    elif isinstance(value, str):
        for match in TEMPLATE.finditer(value):
            tree = _parse(match.group(1))
            for node in ast.walk(tree):
                call = node if isinstance(node, ast.Call) else None
                name = _provider_name(call.func if call else node)
                if name is not None:
                    provider = _provider(faker, name)
                    if call is not None:
                        try:
                            inspect.signature(provider).bind(*(arg.value for arg in call.args),
                                                             **{k.arg: k.value.value for k in call.keywords})
                        except TypeError as exc:
                            raise TemplateError(f"faker.{name}: {exc}") from None
                elif isinstance(node, ast.Name) and node.id not in names and not _known_function(node, tree):
                    known = ", ".join(sorted(names)) or "none yet"
                    raise TemplateError(f"no value named {node.id!r} (extracted by an earlier step: {known})")


def _known_function(name: ast.Name, tree: ast.expr) -> bool:
    """``name`` is faker (of a provider) or a conversion being called, not a value."""
    return any(isinstance(node, ast.Call) and node.func is name or
               isinstance(node, ast.Attribute) and node.value is name and name.id == "faker"
               for node in ast.walk(tree))


def render(value, variables: dict, faker):
    """``value`` with its templates evaluated; a string that is one template keeps the value's type."""
    if isinstance(value, dict):
        return {key: render(item, variables, faker) for key, item in value.items()}
    if isinstance(value, list):
        return [render(item, variables, faker) for item in value]
    if not isinstance(value, str):
        return value
    whole = TEMPLATE.fullmatch(value.strip())
    if whole:
        return _evaluate(_parse(whole.group(1)), variables, faker)
    return TEMPLATE.sub(lambda match: str(_evaluate(_parse(match.group(1)), variables, faker)), value)


def _evaluate(node: ast.expr, variables: dict, faker):
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Call) and _conversion(node) is not None:
        args = [_evaluate(arg, variables, faker) for arg in node.args]
        try:
            return _conversion(node)(*args)
        except (TypeError, ValueError) as exc:
            raise TemplateError(f"{ast.unparse(node)}: {exc}") from None
    name = _provider_name(node.func if isinstance(node, ast.Call) else node)
    if name is not None:
        args = [arg.value for arg in node.args] if isinstance(node, ast.Call) else []
        kwargs = {k.arg: k.value.value for k in node.keywords} if isinstance(node, ast.Call) else {}
        result = _provider(faker, name)(*args, **kwargs)
        return result.isoformat() if hasattr(result, "isoformat") else result
    if isinstance(node, ast.Name):
        if node.id not in variables:
            raise TemplateError(f"no value named {node.id!r} (extract it in an earlier step)")
        return variables[node.id]
    if isinstance(node, ast.Attribute):  # item.price: a key of an extracted mapping
        return _item(_evaluate(node.value, variables, faker), node.attr)
    if isinstance(node, ast.Subscript):
        return _item(_evaluate(node.value, variables, faker), _evaluate(node.slice, variables, faker))
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_evaluate(node.operand, variables, faker))
    left, right = _evaluate(node.left, variables, faker), _evaluate(node.right, variables, faker)
    if isinstance(node.op, ast.Mult) and (isinstance(left, (str, list)) or isinstance(right, (str, list))):
        size = len(left if isinstance(left, (str, list)) else right) * (right if isinstance(right, int) else left)
        if isinstance(size, int) and size > MAX_REPEAT:
            raise TemplateError(f"{ast.unparse(node)}: more than {MAX_REPEAT} items")
    try:
        return _BINARY[type(node.op)](left, right)
    except (TypeError, ArithmeticError) as exc:
        raise TemplateError(f"{ast.unparse(node)}: {exc}") from None


def _item(container, key):
    try:
        return container[key]
    except (KeyError, IndexError, TypeError):
        raise TemplateError(f"no {key!r} in {type(container).__name__} {str(container)[:80]!r}") from None
