"""Container environment resolution: $(VAR) expansion, envFrom, valueFrom and the downward API."""

from __future__ import annotations

import base64

import pytest

from kubepilot_devcluster.kubelet.env import PodFacts, container_env, expand
from kubepilot_devcluster.kubelet.sources import ContainerConfigError, PodSources, referenced_objects

POD = {
    "metadata": {
        "name": "web-1",
        "namespace": "team",
        "uid": "u-1",
        "labels": {"app": "web", "tier": "front"},
        "annotations": {"note": 'say "hi"'},
    },
    "spec": {"nodeName": "devcluster-node"},
}
FACTS = PodFacts(POD, "127.1.0.9", "127.0.0.1", "devcluster-node")


def sources() -> PodSources:
    found = PodSources("team")
    found.add_secret(
        {
            "metadata": {"name": "creds"},
            "data": {"TOKEN": base64.b64encode(b"s3cret").decode(), "USER": "YWRh"},
        }
    )
    found.add_configmap({"metadata": {"name": "settings"}, "data": {"MODE": "fast", "LEVEL": "3"}})
    return found


def test_expand_replaces_known_variables_keeps_unknown_and_unescapes_double_dollar() -> None:
    variables = {"NAME": "ada", "PORT": "8188"}
    assert expand("hi $(NAME) on $(PORT)", variables) == "hi ada on 8188"
    assert expand("$(MISSING) stays", variables) == "$(MISSING) stays"
    assert expand("$$(NAME) is literal, $$ too", variables) == "$(NAME) is literal, $ too"
    assert expand("unterminated $(NAME", variables) == "unterminated $(NAME"


def test_env_from_and_value_from_resolve_with_env_overriding_env_from() -> None:
    container = {
        "envFrom": [
            {"secretRef": {"name": "creds"}},
            {"configMapRef": {"name": "settings"}, "prefix": "CFG_"},
        ],
        "env": [
            {"name": "USER", "value": "override"},
            {"name": "GREETING", "value": "hello $(USER) mode=$(CFG_MODE)"},
            {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "TOKEN"}}},
            {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "LEVEL"}}},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "LABELS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels"}}},
            {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "x", "optional": True}}},
        ],
    }
    env = container_env(container, FACTS, sources())
    assert env["TOKEN"] == "s3cret"
    assert env["USER"] == "override"
    assert env["CFG_MODE"] == "fast"
    assert env["GREETING"] == "hello override mode=fast"
    assert env["PASS"] == "s3cret"
    assert env["LEVEL"] == "3"
    assert (env["POD_IP"], env["POD_NAME"], env["POD_NS"], env["POD_UID"]) == (
        "127.1.0.9",
        "web-1",
        "team",
        "u-1",
    )
    assert env["APP"] == "web"
    assert env["NODE"] == "devcluster-node"
    assert env["LABELS"] == 'app="web"\ntier="front"'
    assert "OPT" not in env


def test_missing_secret_or_key_is_a_clear_config_error() -> None:
    with pytest.raises(ContainerConfigError, match='secret "nope" not found'):
        container_env({"envFrom": [{"secretRef": {"name": "nope"}}]}, FACTS, sources())
    missing_key = {
        "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "NOPE"}}}]
    }
    with pytest.raises(ContainerConfigError, match="couldn't find key NOPE in ConfigMap team/settings"):
        container_env(missing_key, FACTS, sources())


def test_referenced_objects_collects_env_and_volume_sources() -> None:
    pod = {
        "spec": {
            "initContainers": [{"envFrom": [{"configMapRef": {"name": "init-cm"}}]}],
            "containers": [
                {"env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s1", "key": "k"}}}]}
            ],
            "volumes": [
                {"name": "v1", "secret": {"secretName": "s2"}},
                {"name": "v2", "configMap": {"name": "cm2"}},
                {"name": "v3", "projected": {"sources": [{"secret": {"name": "s3"}}]}},
            ],
        }
    }
    assert referenced_objects(pod) == ({"s1", "s2", "s3"}, {"init-cm", "cm2"})
