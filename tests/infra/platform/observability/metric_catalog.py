"""Every metric name Ray 2.60 and vLLM 0.29 (through Ray) export, read from the installed packages' source.

Ray: each `Counter(...)`, `Gauge(...)` or `Histogram(...)` (ray.util.metrics, and the
reporter agent's node metrics) in the installed `ray` package. vLLM: each metric
vLLM defines (`_gauge_cls`/`_counter_cls`/`_histogram_cls`, prometheus_client
classes, and the KV-offload `Offloading*Metadata` tables) in the installed `vllm`
package, named as Ray exports it: vLLM's Ray stat logger (vllm/v1/metrics/ray_wrappers.py,
which Ray Serve LLM installs when `log_engine_metrics` is on) turns `vllm:x` into
`vllm_x`, and Ray prefixes its namespace. Ray's exporter (OpenTelemetry to
Prometheus) names a counter `<name>_total`, a histogram `<name>_bucket|_sum|_count`
and a gauge `<name>`. Names built from an f-string match any one lowercase word
in place of each placeholder (Ray Serve's `serve_num_{protocol}_requests`).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import cache
from importlib.util import find_spec
from pathlib import Path

from conftest import TESTS

KINDS = ("histogram", "counter", "gauge")
_RAY_CONSTRUCTORS = {"Counter": "counter", "Gauge": "gauge", "Histogram": "histogram"}
_VLLM_CONSTRUCTOR = re.compile(r"(?i)(gauge|counter|histogram)(_cls)?$")
_VLLM_METADATA = re.compile(r"Offloading(Counter|Gauge|Histogram)Metadata$")
_PLACEHOLDER = "[a-z0-9]+"
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


@dataclass(frozen=True)
class Metric:
    name: str  # as the package defines it, e.g. `vllm:kv_cache_usage_perc`, `serve_num_{}_requests`
    kind: str  # counter, gauge or histogram
    source: str  # path inside the package, with line
    prefix: str | None = None  # exported as `<prefix><name>`; None: Ray's namespace, `ray_`


def exported_names(base: str, kind: str) -> list[str]:
    """The Prometheus series names of one metric."""
    if kind == "counter":
        return [base if base.endswith("_total") else f"{base}_total"]
    if kind == "histogram":
        return [f"{base}_bucket", f"{base}_sum", f"{base}_count"]
    return [base]


def _callee(node: ast.Call) -> str:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _constants(tree: ast.Module) -> tuple[dict[str, str], dict[str, str]]:
    """Module-level `NAME = "..."` and class-level `Class.ATTR = "..."` string constants."""
    module, classes = {}, {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            module.update({t.id: node.value.value for t in node.targets if isinstance(t, ast.Name)})
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if (
                    isinstance(item, ast.Assign)
                    and isinstance(item.value, ast.Constant)
                    and isinstance(item.value.value, str)
                ):
                    classes.update(
                        {f"{node.name}.{t.id}": item.value.value for t in item.targets if isinstance(t, ast.Name)}
                    )
    return module, classes


class _Resolver:
    """The string values an expression naming a metric can take, in its module and enclosing function."""

    def __init__(self, module: dict[str, str], classes: dict[str, str]):
        self.module, self.classes = module, classes

    def values(self, node: ast.AST | None, scope: ast.AST | None) -> list[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return [node.value]
        if isinstance(node, ast.JoinedStr):
            return self._fstring(node, scope)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            value = self.classes.get(f"{node.value.id}.{node.attr}")
            return [value] if value is not None else []
        if isinstance(node, ast.Name):
            if node.id in self.module:
                return [self.module[node.id]]
            return self._local(node.id, scope) if scope is not None else []
        return []

    def _fstring(self, node: ast.JoinedStr, scope: ast.AST | None) -> list[str]:
        literal = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
        if len(literal.strip("_")) < 3:  # `f"{namespace}_{name}"`: generic plumbing, not a definition
            return []
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(re.escape(value.value))
            else:
                known = self.values(value.value, scope)
                parts.append(f"(?:{'|'.join(map(re.escape, known))})" if known else _PLACEHOLDER)
        return ["re:" + "".join(parts)]

    def _local(self, name: str, scope: ast.AST) -> list[str]:
        """`name = "..."` in the function, or `for name, ... in specs` over tuples assigned to `specs` there."""
        found: list[str] = []
        for node in ast.walk(scope):
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
                found += self.values(node.value, None)
            targets = [(node.target, node.iter)] if isinstance(node, (ast.For, ast.comprehension)) else []
            targets += [(g.target, g.iter) for g in getattr(node, "generators", [])]
            for target, iterable in targets:
                if isinstance(target, ast.Tuple) and isinstance(iterable, ast.Name):
                    index = next(
                        (i for i, e in enumerate(target.elts) if isinstance(e, ast.Name) and e.id == name), None
                    )
                    if index is not None:
                        found += self._tuple_elements(iterable.id, index, scope)
        return found

    def _tuple_elements(self, name: str, index: int, scope: ast.AST) -> list[str]:
        found = []
        for node in ast.walk(scope):
            if (
                isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
                and isinstance(node.value, (ast.List, ast.Tuple))
            ):
                for element in node.value.elts:
                    if isinstance(element, ast.Tuple) and len(element.elts) > index:
                        found += self.values(element.elts[index], None)
        return found


def _scan(package: str, wanted: str, *, vllm: bool) -> list[Metric]:
    root = Path(find_spec(package).origin).parent
    modules = {}
    for path in sorted(root.rglob("*.py")):
        if "/tests/" in path.as_posix() or "/_private/telemetry/" in path.as_posix():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if re.search(wanted, text):
            modules[path] = ast.parse(text)
    classes: dict[str, str] = {}
    for tree in modules.values():
        classes.update(_constants(tree)[1])
    metrics = []
    for path, tree in modules.items():
        resolver = _Resolver(_constants(tree)[0], classes)
        where = path.relative_to(root.parent).as_posix()
        for scope, node in _calls(tree):
            callee = _callee(node)
            if vllm:
                match, metadata = _VLLM_CONSTRUCTOR.search(callee), _VLLM_METADATA.search(callee)
                kind = (match or metadata).group(1).lower() if (match or metadata) else None
            else:
                kind, metadata = _RAY_CONSTRUCTORS.get(callee), None
                if not _describes_a_metric(node):
                    continue  # `collections.Counter(...)`
            if kind is None:
                continue
            names_node = _metadata_key(node, tree) if metadata else _name_argument(node)
            # prometheus_client's own `namespace=` (the autoscaler's `autoscaler_*`): served as is, not through Ray.
            namespace = next(
                (
                    k.value.value
                    for k in node.keywords
                    if k.arg == "namespace" and isinstance(k.value, ast.Constant) and isinstance(k.value.value, str)
                ),
                None,
            )
            for value in resolver.values(names_node, scope):
                if not _METRIC_NAME.fullmatch(value) and not value.startswith("re:"):
                    continue
                if namespace is not None:
                    value = (
                        f"re:{re.escape(namespace)}_{value[3:]}" if value.startswith("re:") else f"{namespace}_{value}"
                    )
                metrics.append(Metric(value, kind, f"{where}:{node.lineno}", "" if namespace is not None else None))
    return metrics


def _calls(tree: ast.Module):
    """(enclosing function or module, call) for every call."""

    def visit(node: ast.AST, scope: ast.AST):
        for child in ast.iter_child_nodes(node):
            inner = child if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else scope
            if isinstance(child, ast.Call):
                yield scope, child
            yield from visit(child, inner)

    yield from visit(tree, tree)


def _describes_a_metric(node: ast.Call) -> bool:
    """Metric classes take a description (Ray's `description`, prometheus_client's `documentation`)."""
    return len(node.args) >= 2 or any(k.arg in ("description", "documentation") for k in node.keywords)


def _name_argument(node: ast.Call) -> ast.AST | None:
    for keyword in node.keywords:
        if keyword.arg == "name":
            return keyword.value
    return node.args[0] if node.args else None


def _metadata_key(node: ast.Call, tree: ast.Module) -> ast.AST | None:
    """The key a metadata call is stored under: `{KEY: Offloading...Metadata(...)}` or `d[KEY] = ...`."""
    for parent in ast.walk(tree):
        if isinstance(parent, ast.Dict):
            for key, value in zip(parent.keys, parent.values, strict=True):
                if value is node:
                    return key
        if isinstance(parent, ast.Assign) and parent.value is node:
            target = parent.targets[0]
            if isinstance(target, ast.Subscript):
                return target.slice
    return None


# --- what gets exported -----------------------------------------------------------------

SCHEMAS = TESTS / "schemas" / "monitoring"
RAY_CORE_METRICS = SCHEMAS / "ray-2.60.0-core-metrics.txt"
KUBE_STATE_METRICS = SCHEMAS / "kube-state-metrics-v2.20.0-metrics.txt"
# Prometheus adds `up` to every scrape target (prometheus.io/docs/concepts/jobs_instances).
PROMETHEUS_SYNTHETIC = {"up": Metric("up", "gauge", "Prometheus, per scrape target")}


def read_vendored(path: Path) -> list[Metric]:
    """`<name> <kind>` lines; `#` starts a comment."""
    metrics = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split("#", 1)[0].split()
        if fields:
            name, kind = fields
            assert kind in KINDS, f"{path.name}:{number}: unknown kind {kind!r}"
            metrics.append(Metric(name, kind, f"{path.name}:{number}"))
    return metrics


class Catalog:
    """Exported series name -> the metric it comes from; f-string names as patterns."""

    def __init__(self, metrics: list[tuple[str, Metric]]):
        self.exact: dict[str, Metric] = {}
        self.patterns: list[tuple[re.Pattern[str], Metric]] = []
        for prefix, metric in metrics:
            if metric.name.startswith("re:"):
                base = prefix + metric.name.removeprefix("re:")
                for name in exported_names(base, metric.kind):
                    self.patterns.append((re.compile(name), metric))
            else:
                for name in exported_names(prefix + metric.name, metric.kind):
                    self.exact.setdefault(name, metric)

    def lookup(self, name: str) -> Metric | None:
        if name in self.exact:
            return self.exact[name]
        return next((m for pattern, m in self.patterns if pattern.fullmatch(name)), None)

    def matches(self, pattern: str) -> list[str]:
        """Exported exact names a `__name__=~` regex selects."""
        regex = re.compile(pattern)
        return sorted(n for n in self.exact if regex.fullmatch(n))


def ray_namespace() -> str:
    from ray._private.telemetry.open_telemetry_metric_recorder import NAMESPACE

    return NAMESPACE


def vllm_to_ray(name: str) -> str:
    """vLLM's own conversion for Ray metrics (`vllm:x` -> `vllm_x`)."""
    from vllm.v1.metrics.ray_wrappers import RayPrometheusMetric

    return RayPrometheusMetric._get_sanitized_opentelemetry_name(name)


@cache
def ray_python_metrics() -> list[Metric]:
    return _scan("ray", r"\b(Counter|Gauge|Histogram)\(", vllm=False)


@cache
def vllm_metrics() -> list[Metric]:
    metrics = _scan("vllm", r"vllm:|Metadata\(", vllm=True)
    return [m for m in metrics if m.name.startswith(("vllm:", "re:vllm:", "re:vllm\\:"))]


@cache
def catalog() -> Catalog:
    prefix = f"{ray_namespace()}_"
    entries = [(prefix if m.prefix is None else m.prefix, m) for m in ray_python_metrics()]
    entries += [(prefix, m) for m in read_vendored(RAY_CORE_METRICS)]
    for m in vllm_metrics():
        if m.name.startswith("re:"):
            entries.append(
                (prefix, Metric("re:" + re.sub(r"vllm\\?:", "vllm_", m.name[3:], count=1), m.kind, m.source))
            )
        else:
            entries.append((prefix, Metric(vllm_to_ray(m.name), m.kind, m.source)))
    entries += [("", m) for m in read_vendored(KUBE_STATE_METRICS)]
    entries += [("", m) for m in PROMETHEUS_SYNTHETIC.values()]
    return Catalog(entries)
