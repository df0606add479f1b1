"""The profile registry and how the gateway command chooses its listeners."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import kubepilot_gateway.profiles as registry
from kubepilot_gateway.app.gateway import Gateway
from kubepilot_gateway.app.settings import ListenerSettings, ProfileListener, load_gateway_settings
from kubepilot_gateway.cli import UsageError, listener_plan, parse_args, plan
from kubepilot_gateway.context import GatewayContext
from kubepilot_gateway.profiles import NATIVE_PORTS, load_profile, profiles
from tests.gateway.demo_profiles import DEMO, ENVELOPED, WITH_CORS, ctx

__all__ = ["ctx"]

REGISTERED = (DEMO, ENVELOPED, WITH_CORS)


@pytest.fixture
def extra_profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder searched as part of the profiles package, for profile modules written by a test."""
    monkeypatch.setattr(registry, "__path__", [*registry.__path__, str(tmp_path)])
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith(f"{registry.__name__}."):
            del sys.modules[name]


def test_registry_profiles_sit_on_their_design_ports_in_design_order() -> None:
    found = profiles()
    assert [p.name for p in found] == [name for name in NATIVE_PORTS if name in {p.name for p in found}]
    assert all(p.native_port == NATIVE_PORTS[p.name] for p in found)
    assert NATIVE_PORTS == {
        "controlpilot": 7878,
        "comfyui-docker": 8080,
        "onetrainer": 8000,
        "sdcpp-studio": 3000,
        "homepilot": 8001,
    }


def test_a_profile_module_that_does_not_exist_is_absent(extra_profiles: Path) -> None:
    assert load_profile("not-written-yet") is None


def test_a_profile_is_loaded_by_name_with_dashes_as_underscores(extra_profiles: Path) -> None:
    (extra_profiles / "fake_demo.py").write_text(
        "from kubepilot_gateway.profiles import Profile\n"
        "PROFILE = Profile('fake-demo', 17100, lambda ctx: None, 'written by a test')\n"
    )
    profile = load_profile("fake-demo")
    assert profile is not None and (profile.name, profile.native_port) == ("fake-demo", 17100)


def test_a_profile_missing_a_dependency_fails_loudly_instead_of_vanishing(extra_profiles: Path) -> None:
    (extra_profiles / "broken_dep.py").write_text("import kubepilot_no_such_dependency\n")
    with pytest.raises(ModuleNotFoundError, match="kubepilot_no_such_dependency"):
        load_profile("broken-dep")


def test_a_profile_module_must_name_itself_and_export_a_profile(extra_profiles: Path) -> None:
    (extra_profiles / "misnamed.py").write_text(
        "from kubepilot_gateway.profiles import Profile\nPROFILE = Profile('other', 1, lambda ctx: None)\n"
    )
    (extra_profiles / "no_profile.py").write_text("PROFILE = 'nope'\n")
    with pytest.raises(ValueError, match="expected 'misnamed'"):
        load_profile("misnamed")
    with pytest.raises(TypeError, match="must be a Profile"):
        load_profile("no-profile")


def test_by_default_every_registered_profile_listens_natively_and_on_the_combined_port(
    ctx: GatewayContext,
) -> None:
    selected, listeners = plan(parse_args([]), ListenerSettings(), REGISTERED)
    planned = listener_plan(Gateway(ctx, selected, listeners=listeners))
    assert [(listener.label, listener.port) for listener, _ in planned] == [
        ("combined", 9000),
        ("demo", 17001),
        ("seeded", 17002),
        ("corsy", 17003),
    ]


def test_profile_flags_choose_profiles_and_override_or_disable_native_ports(ctx: GatewayContext) -> None:
    args = parse_args(["--profile", "seeded=18002", "--profile", "demo=0", "--combined-port", "18000"])
    selected, listeners = plan(args, ListenerSettings(), REGISTERED)
    assert [p.name for p in selected] == ["seeded", "demo"]
    planned = listener_plan(Gateway(ctx, selected, listeners=listeners))
    assert [(listener.label, listener.port) for listener, _ in planned] == [
        ("combined", 18000),
        ("seeded", 18002),
    ]


def test_no_native_leaves_only_the_combined_listener(ctx: GatewayContext) -> None:
    selected, listeners = plan(parse_args(["--no-native"]), ListenerSettings(), REGISTERED)
    planned = listener_plan(Gateway(ctx, selected, listeners=listeners))
    assert [listener.label for listener, _ in planned] == ["combined"]


def test_settings_can_turn_a_profile_off_and_flags_bring_it_back(ctx: GatewayContext) -> None:
    listeners = ListenerSettings(profiles={"demo": ProfileListener(enabled=False)})
    assert [p.name for p in plan(parse_args([]), listeners, REGISTERED)[0]] == ["seeded", "corsy"]
    assert [p.name for p in plan(parse_args(["--profile", "demo"]), listeners, REGISTERED)[0]] == ["demo"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--profile", "nope"], "unknown profile 'nope'"),
        (["--profile", "homepilot"], "not built yet"),
        (["--profile", "demo=http"], "must be a number"),
        (["--profile", "demo=9000"], "two listeners on port 9000"),
        (["--combined-port", "0", "--no-native"], "nothing to serve"),
    ],
)
def test_impossible_command_lines_are_usage_errors(
    ctx: GatewayContext, argv: list[str], message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        selected, listeners = plan(parse_args(argv), ListenerSettings(), REGISTERED)
        listener_plan(Gateway(ctx, selected, listeners=listeners))


def test_listener_settings_come_from_the_gateway_settings_file(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text("namespace: ai\nlisteners:\n  combinedPort: 9100\n  profiles:\n    demo: {port: 0}\n")
    settings, listeners = load_gateway_settings(path)
    assert settings.namespace == "ai"
    assert listeners.combinedPort == 9100
    assert listeners.for_profile("demo").port == 0
