"""The gateway's RBAC: one table in code, the chart's Roles generated from it, least privilege.

Besides a sample of needs, the gateway's source is read (its AST) for every call it makes to the
API server, so code that needs a new verb fails here until the table grants it.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubepilot_gateway import rbac
from kubepilot_gateway.kube.resources import WATCHED, ResourceType
from kubepilot_gateway.rbac import (
    ALL_RULES,
    GROUP,
    KINDS,
    OPERATOR_NAMESPACE_RULES,
    RULES,
    Rule,
    covers,
    policy_rules,
)
from tests.chart.chart_tools import NAMESPACE, RELEASE, ROOT, Manifest, of_kind, one, render

GATEWAY = f"{RELEASE}-gateway"
PACKAGE = ROOT / "gateway" / "kubepilot_gateway"
Grant = tuple[str, str, str]

NEEDED: list[Grant] = [
    (GROUP, "modelpulls", "create"),
    (GROUP, "trainingruns", "delete"),
    (GROUP, "serviceinstances", "patch"),
    (GROUP, "generationjobs", "watch"),
    ("", "pods", "watch"),
    ("", "pods/log", "get"),
    ("batch", "jobs", "list"),
    ("", "secrets", "get"),
    ("", "secrets", "create"),
    ("", "secrets", "patch"),
    ("", "configmaps", "get"),
    # The profiles' own documents: sd.cpp Studio's options (merge patch), HomePilot's edit sessions
    # and preferences (replaced under a resourceVersion check; a session's is deleted with it).
    ("", "configmaps", "create"),
    ("", "configmaps", "patch"),
    ("", "configmaps", "update"),
    ("", "configmaps", "delete"),
]

NOT_NEEDED: list[Grant] = [
    ("", "secrets", "list"),  # every Secret of the namespace, tokens of other workloads included
    ("", "secrets", "watch"),
    ("", "pods", "get"),  # pods are read from the cache
    ("", "pods", "delete"),
    ("", "pods/exec", "create"),
    ("batch", "jobs", "create"),  # Jobs are the operator's
    ("batch", "jobs", "delete"),
    ("apps", "deployments", "patch"),
    ("", "services", "create"),
    (GROUP, "modelpulls/status", "patch"),  # status is the operator's alone
    (GROUP, "trainingruns", "update"),  # every write is a patch
    (GROUP, "generationjobs", "deletecollection"),
    ("", "configmaps", "list"),  # by name only: the namespace's other ConfigMaps are not the gateway's
    ("", "configmaps", "watch"),
    ("", "events", "create"),
    ("coordination.k8s.io", "leases", "update"),  # no leader election in the gateway
    ("rbac.authorization.k8s.io", "roles", "create"),
    ("", "namespaces", "list"),
]


@pytest.mark.parametrize(("group", "resource", "verb"), NEEDED)
def test_the_table_grants_what_the_gateway_needs(group: str, resource: str, verb: str) -> None:
    assert covers(RULES, group, resource, verb)


@pytest.mark.parametrize(("group", "resource", "verb"), NOT_NEEDED)
def test_the_table_grants_nothing_beyond_it_in_the_working_namespace(
    group: str, resource: str, verb: str
) -> None:
    assert not covers(RULES, group, resource, verb)


def test_the_operator_namespace_gets_the_schedule_configmap_and_nothing_else() -> None:
    assert [(r.api_group, r.resources) for r in OPERATOR_NAMESPACE_RULES] == [("", ("configmaps",))]
    for verb in ("get", "create", "patch"):
        assert covers(OPERATOR_NAMESPACE_RULES, "", "configmaps", verb)
    assert not covers(OPERATOR_NAMESPACE_RULES, "", "configmaps", "list")
    assert not covers(OPERATOR_NAMESPACE_RULES, "", "configmaps", "delete")


def test_covers_matches_group_resource_and_verb_exactly() -> None:
    rules = (Rule("batch", ("jobs",), ("list",)),)
    assert covers(rules, "batch", "jobs", "list")
    assert not covers(rules, "", "jobs", "list")
    assert not covers(rules, "batch", "jobs/status", "list")
    assert not covers(rules, "batch", "jobs", "watch")


def test_the_table_holds_no_wildcards_and_no_repeated_grant() -> None:
    for rules in (RULES, OPERATOR_NAMESPACE_RULES):
        grants = [(r.api_group, res, verb) for r in rules for res in r.resources for verb in r.verbs]
        assert len(grants) == len(set(grants))
        assert not any("*" in part for grant in grants for part in grant)
        assert all(rule.resources and rule.verbs for rule in rules)


def test_every_cached_type_can_be_listed_and_watched() -> None:
    assert set(KINDS) == {r.plural for r in WATCHED if r.group == GROUP}
    for resource in WATCHED:
        assert covers(RULES, resource.group, resource.plural, "list")
        assert covers(RULES, resource.group, resource.plural, "watch")


# -- what the code calls ------------------------------------------------------------------------

METHOD_VERBS = {"POST": "create", "PATCH": "patch", "PUT": "update"}
STORE_VERBS = {
    "create": ("create",),
    "get": ("get",),
    "patch": ("patch",),
    "mutate": ("get", "patch"),
    "delete": ("delete",),
}


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)


def _resolve(node: ast.expr, module: Any) -> Any:
    if isinstance(node, ast.Name):
        return getattr(module, node.id, None)
    if isinstance(node, ast.Attribute):
        owner = _resolve(node.value, module)
        return getattr(owner, node.attr, None) if owner is not None else None
    return None


def _constant(node: ast.expr | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _path_call(node: ast.expr, assigned: dict[str, ast.expr]) -> ast.Call | None:
    """The ``X.path(...)`` call an argument is, directly or through a local variable."""
    if isinstance(node, ast.Name) and node.id in assigned:
        node = assigned[node.id]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "path":
        return node
    return None


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((kw.value for kw in call.keywords if kw.arg == name), None)


def _grants_in(tree: ast.AST, module: Any) -> Iterator[Grant]:
    for function in ast.walk(tree):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        assigned = {
            target.id: node.value
            for node in ast.walk(function)
            if isinstance(node, ast.Assign)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        for call in ast.walk(function):
            if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Attribute):
                continue
            method = call.func.attr
            if method in {"request", "request_text"} and len(call.args) >= 2:
                verb_method = _constant(call.args[0])
                path = _path_call(call.args[1], assigned)
                if verb_method is None or path is None or not isinstance(path.func, ast.Attribute):
                    continue
                resource = _resolve(path.func.value, module)
                if not isinstance(resource, ResourceType):
                    continue
                named = len(path.args) >= 2 or _keyword(path, "name") is not None
                sub = (
                    _constant(path.args[2])
                    if len(path.args) >= 3
                    else _constant(_keyword(path, "subresource"))
                )
                plural = f"{resource.plural}/{sub}" if sub else resource.plural
                if verb_method == "GET":
                    verb = "get" if named else "list"
                elif verb_method == "DELETE":
                    verb = "delete" if named else "deletecollection"
                else:
                    verb = METHOD_VERBS[verb_method]
                yield resource.group, plural, verb
            elif (
                method in STORE_VERBS | {"patch_status": ()}
                and isinstance(call.func.value, ast.Attribute)
                and call.func.value.attr == "store"
                and call.args
            ):
                resource = _resolve(call.args[0], module)
                if not isinstance(resource, ResourceType):
                    continue
                if method == "patch_status":
                    yield resource.group, f"{resource.plural}/status", "patch"
                    continue
                sub = _constant(_keyword(call, "subresource"))
                for verb in STORE_VERBS[method]:
                    yield resource.group, f"{resource.plural}/{sub}" if sub else resource.plural, verb


def _code_grants() -> set[Grant]:
    grants: set[Grant] = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "rbac.py":
            continue
        module = importlib.import_module(_module_name(path).removesuffix(".__init__"))
        grants.update(_grants_in(ast.parse(path.read_text(encoding="utf-8")), module))
    grants.update((r.group, r.plural, verb) for r in WATCHED for verb in ("list", "watch"))
    return grants


CODE_GRANTS = sorted(_code_grants())


def test_the_source_scan_finds_the_calls_it_should() -> None:
    # A guard on the scanner itself: these calls are in the code today.
    assert {("", "pods/log", "get"), ("", "secrets", "create"), ("", "configmaps", "patch")} <= set(
        CODE_GRANTS
    )
    assert any(group == GROUP and verb == "create" for group, _, verb in CODE_GRANTS)


@pytest.mark.parametrize(("group", "resource", "verb"), CODE_GRANTS)
def test_every_call_the_gateway_makes_is_granted(group: str, resource: str, verb: str) -> None:
    assert covers(ALL_RULES, group, resource, verb), (
        f"the gateway calls {verb} on {group or 'core'}/{resource}: add it to "
        "gateway/kubepilot_gateway/rbac.py and run `python -m kubepilot_gateway.rbac generate`"
    )


def test_every_built_in_grant_is_used_by_the_code() -> None:
    # Our four kinds get the full set of writes every profile uses; everything else must be called.
    used = set(CODE_GRANTS)
    for rules in (RULES, OPERATOR_NAMESPACE_RULES):
        for rule in rules:
            if rule.api_group == GROUP:
                continue
            for resource in rule.resources:
                for verb in rule.verbs:
                    assert (rule.api_group, resource, verb) in used, f"unused grant: {verb} {resource}"


# -- the generated file -------------------------------------------------------------------------


def test_the_committed_rules_file_matches_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert rbac.check(ROOT) == ""
    assert rbac.main(["check", "--root", str(ROOT)]) == 0
    assert "up to date" in capsys.readouterr().out


def test_check_fails_on_a_stale_rules_file_and_generate_repairs_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert rbac.main(["check", "--root", str(tmp_path)]) == 1
    assert rbac.main(["generate", "--root", str(tmp_path)]) == 0
    path = tmp_path / rbac.RULES_FILE
    assert path.read_text().startswith("# Generated by `python -m kubepilot_gateway.rbac generate`")
    path.write_text(path.read_text().replace("  - watch\n", "  - '*'\n", 1))
    capsys.readouterr()
    assert rbac.main(["check", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "+  - watch" in err and "python -m kubepilot_gateway.rbac generate" in err
    assert rbac.main(["generate", "--root", str(tmp_path)]) == 0
    assert f"wrote {path}" in capsys.readouterr().out
    assert rbac.main(["check", "--root", str(tmp_path)]) == 0
    assert (ROOT / rbac.RULES_FILE).read_text() == path.read_text()


# -- the chart ----------------------------------------------------------------------------------


def _render(gateway: dict[str, Any] | None = None, **kwargs: Any) -> list[Manifest]:
    return render({"gateway": {"enabled": True, **(gateway or {})}}, **kwargs)


def _gateway_objects(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [doc for doc in of_kind(manifests, kind) if doc["metadata"]["name"] == GATEWAY]


def _check_binding(manifests: list[Manifest], namespace: str) -> None:
    [binding] = [
        b for b in _gateway_objects(manifests, "RoleBinding") if b["metadata"]["namespace"] == namespace
    ]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": GATEWAY}
    account = one(manifests, "ServiceAccount", GATEWAY)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": GATEWAY, "namespace": NAMESPACE}]
    assert account["metadata"]["namespace"] == NAMESPACE
    pod = one(manifests, "Deployment", GATEWAY)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == GATEWAY


def test_one_role_grants_exactly_the_table_when_the_gateway_works_in_the_release_namespace() -> None:
    manifests = _render()
    [role] = _gateway_objects(manifests, "Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == policy_rules(RULES) + policy_rules(OPERATOR_NAMESPACE_RULES)
    _check_binding(manifests, NAMESPACE)
    # A Role, not a ClusterRole: the gateway sees no other namespace.
    assert [doc["metadata"]["name"] for doc in of_kind(manifests, "ClusterRole")] == [f"{RELEASE}-operator"]


def test_another_working_namespace_gets_the_table_and_the_release_namespace_the_schedule_rights() -> None:
    manifests = _render({"namespace": "studio"})
    roles = {role["metadata"]["namespace"]: role["rules"] for role in _gateway_objects(manifests, "Role")}
    assert roles == {"studio": policy_rules(RULES), NAMESPACE: policy_rules(OPERATOR_NAMESPACE_RULES)}
    for namespace in roles:
        _check_binding(manifests, namespace)


def test_gateway_rbac_and_service_account_can_be_left_to_the_cluster_admin() -> None:
    manifests = _render({"rbac": {"create": False}, "serviceAccount": {"create": False, "name": "gw-made"}})
    assert _gateway_objects(manifests, "Role") == _gateway_objects(manifests, "RoleBinding") == []
    assert _gateway_objects(manifests, "ServiceAccount") == []
    assert (
        one(manifests, "Deployment", GATEWAY)["spec"]["template"]["spec"]["serviceAccountName"] == "gw-made"
    )


def test_a_missing_gateway_service_account_name_fails_the_render() -> None:
    from helm_python import HelmRenderError

    with pytest.raises(HelmRenderError, match=r"gateway\.serviceAccount\.name is required"):
        _render({"serviceAccount": {"create": False}})
