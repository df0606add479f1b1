"""The operator's RBAC: one table in code, the chart's ClusterRole generated from it, least privilege."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubepilot_operator import rbac_cli
from kubepilot_operator.rbac import KINDS, RULES, Rule, cluster_role, covers, policy_rules
from tests.chart.chart_tools import NAMESPACE, RELEASE, ROOT, Manifest, of_kind, one, render

NEEDED = [
    ("kubepilot.io", "modelpulls", "watch"),
    ("kubepilot.io", "serviceinstances", "patch"),
    ("kubepilot.io", "trainingruns/status", "patch"),
    ("kubepilot.io", "generationjobs/finalizers", "update"),
    ("batch", "jobs", "create"),
    ("apps", "deployments", "patch"),
    ("", "services", "create"),
    ("", "secrets", "create"),
    ("", "pods", "watch"),
    ("", "serviceaccounts", "create"),
    ("", "configmaps", "patch"),
    ("", "events", "create"),
    ("coordination.k8s.io", "leases", "update"),
]
"""A sample; tests/operator/test_rbac_coverage.py records a real run and holds the table to it exactly."""

NOT_NEEDED = [
    ("", "secrets", "list"),  # listing would expose every Secret in the cluster
    ("", "secrets", "watch"),
    ("", "pods", "create"),  # pods come from Jobs and Deployments
    ("", "pods/exec", "create"),
    ("", "serviceaccounts", "delete"),
    ("", "serviceaccounts/token", "create"),
    ("rbac.authorization.k8s.io", "rolebindings", "create"),  # workers get no rights
    ("rbac.authorization.k8s.io", "clusterroles", "bind"),
    ("kubepilot.io", "modelpulls", "create"),  # users and the gateway create CRs, not the operator
    ("apiextensions.k8s.io", "customresourcedefinitions", "create"),
    ("", "namespaces", "create"),
    ("", "nodes", "get"),
    ("", "services", "delete"),  # garbage collection removes children with their owner
    ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),  # kopf's scanning is off
]


@pytest.mark.parametrize(("group", "resource", "verb"), NEEDED)
def test_the_table_grants_what_the_operator_needs(group: str, resource: str, verb: str) -> None:
    assert covers(RULES, group, resource, verb)


@pytest.mark.parametrize(("group", "resource", "verb"), NOT_NEEDED)
def test_the_table_grants_nothing_beyond_it(group: str, resource: str, verb: str) -> None:
    assert not covers(RULES, group, resource, verb)


def test_covers_matches_group_resource_and_verb_exactly() -> None:
    rules = (Rule("apps", ("deployments",), ("get",)),)
    assert covers(rules, "apps", "deployments", "get")
    assert not covers(rules, "", "deployments", "get")
    assert not covers(rules, "apps", "deployments/scale", "get")
    assert not covers(rules, "apps", "deployments", "list")


def test_the_table_holds_no_wildcards_and_no_repeated_grant() -> None:
    grants = [(r.api_group, res, verb) for r in RULES for res in r.resources for verb in r.verbs]
    assert len(grants) == len(set(grants))
    assert not any("*" in part for grant in grants for part in grant)
    assert all(rule.resources and rule.verbs for rule in RULES)


def test_every_kind_gets_its_status_and_finalizers_subresources() -> None:
    for kind in KINDS:
        assert covers(RULES, "kubepilot.io", f"{kind}/status", "patch")
        assert covers(RULES, "kubepilot.io", f"{kind}/finalizers", "update")
        assert not covers(RULES, "kubepilot.io", f"{kind}/finalizers", "delete")


def test_cluster_role_renders_the_table_in_order() -> None:
    role = cluster_role("kp-operator")
    assert role["apiVersion"] == "rbac.authorization.k8s.io/v1"
    assert role["kind"] == "ClusterRole"
    assert role["metadata"] == {"name": "kp-operator"}
    assert len(role["rules"]) == len(RULES)
    batch = next(i for i, rule in enumerate(RULES) if rule.api_group == "batch")
    assert role["rules"][batch] == {
        "apiGroups": ["batch"],
        "resources": ["jobs"],
        "verbs": list(RULES[batch].verbs),
    }


def test_the_committed_rules_file_matches_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert rbac_cli.check(ROOT) == ""
    assert rbac_cli.main(["check", "--root", str(ROOT)]) == 0
    assert "up to date" in capsys.readouterr().out


def test_check_fails_on_a_stale_rules_file_and_generate_repairs_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert rbac_cli.main(["check", "--root", str(tmp_path)]) == 1
    assert rbac_cli.main(["generate", "--root", str(tmp_path)]) == 0
    path = tmp_path / rbac_cli.RULES_FILE
    path.write_text(path.read_text().replace("- watch\n", "- '*'\n", 1))
    capsys.readouterr()
    assert rbac_cli.main(["check", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "+  - watch" in err and "kubepilot rbac generate" in err
    assert rbac_cli.main(["generate", "--root", str(tmp_path)]) == 0
    assert f"wrote {path}" in capsys.readouterr().out
    assert rbac_cli.main(["check", "--root", str(tmp_path)]) == 0
    assert (ROOT / rbac_cli.RULES_FILE).read_text() == path.read_text()


def test_the_chart_cluster_role_grants_exactly_the_table_to_the_operator() -> None:
    manifests = render()
    role = one(manifests, "ClusterRole")
    assert role["metadata"]["name"] == f"{RELEASE}-operator"
    assert role["rules"] == policy_rules() == cluster_role("any")["rules"]
    binding = one(manifests, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    account = one(manifests, "ServiceAccount", f"{RELEASE}-operator")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NAMESPACE}
    ]
    pod = one(manifests, "Deployment", f"{RELEASE}-operator")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]


def _component(doc: Manifest) -> str:
    return str(doc["metadata"]["labels"].get("app.kubernetes.io/component", ""))


def test_rbac_and_service_account_can_be_left_to_the_cluster_admin() -> None:
    manifests = render(
        {"operator": {"rbac": {"create": False}, "serviceAccount": {"create": False, "name": "ops-made"}}}
    )
    for kind in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount"):
        # The gateway's own account and Roles have their own switches (test_gateway_rbac_table.py).
        assert [doc for doc in of_kind(manifests, kind) if _component(doc) == "operator"] == []
    assert (
        one(manifests, "Deployment", f"{RELEASE}-operator")["spec"]["template"]["spec"]["serviceAccountName"]
        == "ops-made"
    )


def test_worker_pods_get_no_service_account_or_binding_from_the_chart() -> None:
    manifests = render()
    # The operator creates the rights-less kubepilot-worker account per namespace itself.
    # The gateway's account, when it is installed, is the only other one.
    components = {f"{RELEASE}-operator", f"{RELEASE}-gateway"}
    accounts = {doc["metadata"]["name"] for doc in of_kind(manifests, "ServiceAccount")}
    assert f"{RELEASE}-operator" in accounts and accounts <= components
    bindings = of_kind(manifests, "ClusterRoleBinding") + of_kind(manifests, "RoleBinding")
    subjects = {subject["name"] for binding in bindings for subject in binding["subjects"]}
    assert subjects == accounts
