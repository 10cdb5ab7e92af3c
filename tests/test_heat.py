"""heat/: every template validated strictly by Heat's own engine, offline (tests/heat_validation.py).

Each environment file validates; each kind of mistake is caught, in the main
template and inside nested files; and what the templates promise is checked
on the validated stacks: who may reach what, W's autoscaling, the passwords,
and the cloud-config of each server (the pack's own, from gateway.units).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("heat.engine", reason="openstack-heat is not installed (pip install -r requirements-heat.txt)")

from gateway import units
from runner.settings import Settings
from tests import heat_validation as heat

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

FUNCTIONS = heat.ROOT / "functions"
NESTED = {
    "network",
    "security",
    "rabbitmq",
    "database",
    "gateway",
    "runners",
    "runners/0",
    "workers",
    "workers/group",
    "workers/group/0",
    "public",
}
HOSTS = ("gateway", "runners/0", "workers/group/0")


def validate(environment: str = "staging", **parameters: Any) -> heat.Validated:
    return heat.validate(heat.MAIN_TEMPLATE, [heat.ENVIRONMENTS[environment]], {**heat.SITE_PARAMETERS, **parameters})


@pytest.fixture(scope="module")
def staging() -> heat.Validated:
    return validate("staging")


def resource(stack: Any, name: str) -> Any:
    return stack.resources[name]


def cloud_config(stack: Any) -> tuple[str, dict[str, Any]]:
    """The user data of a server's boot config as Heat renders it (OS::Heat::CloudConfig), and its YAML."""
    from heat.common import template_format

    text = "#cloud-config\n" + yaml.dump(
        resource(stack, "boot").properties["cloud_config"], Dumper=template_format.yaml_dumper
    )
    header, _, body = text.partition("\n")
    assert header == "#cloud-config"
    return text, yaml.safe_load(body)


def test_the_yaml_is_clean() -> None:
    yamllint = pytest.importorskip("yamllint.cli", reason="yamllint is not installed (requirements-heat.txt)")
    with pytest.raises(SystemExit) as done:
        yamllint.run(["--strict", "-c", str(heat.HEAT_DIR / ".yamllint"), str(heat.HEAT_DIR)])
    assert done.value.code == 0


def test_yamllint_catches_duplicate_keys(tmp_path: Path) -> None:
    yamllint = pytest.importorskip("yamllint.linter", reason="yamllint is not installed (requirements-heat.txt)")
    from yamllint.config import YamlLintConfig

    config = YamlLintConfig(file=str(heat.HEAT_DIR / ".yamllint"))
    text = (
        (heat.HEAT_DIR / "host.yaml")
        .read_text()
        .replace("  port:\n", "  server:\n    type: OS::Heat::None\n  port:\n", 1)
    )
    problems = [problem.rule for problem in yamllint.run(text, config)]
    assert "key-duplicates" in problems


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_each_environment_validates_strictly_with_every_nested_file(environment: str) -> None:
    validated = validate(environment)
    assert set(validated.nested) == NESTED
    files = {path.name for path in heat.HEAT_DIR.glob("*.yaml")} - {"tombola.yaml"}
    assert {url.rsplit("/", 1)[-1] for url in validated.stack.t.files} == files


def test_without_octavia_the_gateway_has_the_floating_ip_and_the_web_ports() -> None:
    validated = validate("production", public_entry="floating_ip")
    public = validated.nested["public"]
    assert set(public.resources) == {"gateway_ip"}
    rules = resource(validated.nested["security"], "gateway").properties["rules"]
    assert [(rule["port_range_min"], rule["remote_ip_prefix"]) for rule in rules] == [
        (80, "0.0.0.0/0"),
        (443, "0.0.0.0/0"),
        (8081, "10.42.0.0/24"),
    ]


def test_behind_octavia_the_load_balancer_takes_http_and_https_to_the_gateway_web_port() -> None:
    validated = validate("production", tls_container_ref="https://barbican.example.org/v1/containers/tls")
    public = validated.nested["public"]
    assert set(public.resources) == {
        "load_balancer",
        "pool",
        "http",
        "https_listener",
        "monitor",
        "member",
        "load_balancer_ip",
    }
    assert (
        public.resources["http"].properties["protocol_port"],
        public.resources["https_listener"].properties["protocol_port"],
    ) == (80, 443)
    assert public.resources["member"].properties["protocol_port"] == 80  # the public listener, never the control plane
    assert public.resources["monitor"].properties["url_path"] == "/healthz"
    assert validated.stack.resources["security"].properties["web_source"] == "10.42.0.0/24"


def test_only_the_web_ports_and_the_bastion_face_outside(staging: heat.Validated) -> None:
    security = staging.nested["security"]
    open_to: dict[str, list[tuple[int, int, str]]] = {}
    for name, group in security.resources.items():
        for rule in group.properties["rules"]:
            assert rule["direction"] == "ingress" and rule["protocol"] == "tcp"
            source = rule["remote_ip_prefix"] or rule["remote_mode"]
            open_to.setdefault(name, []).append((rule["port_range_min"], rule["port_range_max"], source))
    private = "10.42.0.0/24"
    assert open_to == {
        "bastion": [(22, 22, "192.0.2.0/24")],
        "ssh": [(22, 22, "remote_group_id")],
        "gateway": [(80, 80, private), (443, 443, private), (8081, 8081, private)],
        "replicas": [(9100, 9199, private)],
        "rabbitmq": [(5672, 5672, private)],
        "database": [(5432, 5432, private)],
    }
    security_body, _, _ = heat.load(heat.HEAT_DIR / "security.yaml")
    [ssh] = security_body["resources"]["ssh"]["properties"]["rules"]
    assert ssh["remote_group_id"] == {"get_resource": "bastion"}
    body, _, _ = heat.load(heat.MAIN_TEMPLATE)
    groups = {
        name: [ref["get_attr"][1] for ref in definition["properties"]["security_groups"]]
        for name, definition in body["resources"].items()
        if "security_groups" in definition.get("properties", {})
    }
    groups["runners"] = [
        ref["get_attr"][1]
        for ref in body["resources"]["runners"]["properties"]["resource_def"]["properties"]["security_groups"]
    ]
    assert groups == {
        "bastion_port": ["bastion"],
        "rabbitmq": ["ssh", "rabbitmq"],
        "database": ["ssh", "database"],
        "gateway": ["ssh", "gateway"],
        "runners": ["ssh", "replicas"],
        "workers": ["ssh", "replicas"],
    }


def test_the_outputs_give_the_public_url_and_the_private_control_plane(staging: heat.Validated) -> None:
    body, _, _ = heat.load(heat.MAIN_TEMPLATE)
    outputs = body["outputs"]
    assert outputs["public_url"]["value"] == {"get_attr": ["public", "url"]}
    assert outputs["control_plane_url"]["value"]["str_replace"] == {
        "template": "http://%address%:8081/v1",
        "params": {"%address%": {"get_attr": ["gateway", "address"]}},
    }
    assert staging.stack.outputs["control_plane_url"].get_value() == "http://:8081/v1"  # the address comes at create


def test_w_autoscales_between_its_bounds_on_gnocchi_cpu_alarms(staging: heat.Validated) -> None:
    workers = staging.nested["workers"]
    group = resource(workers, "group")
    assert group.type() == "OS::Heat::AutoScalingGroup"
    assert (group.properties["min_size"], group.properties["max_size"]) == (1, 2)
    member = group.properties["resource"]
    assert member["properties"]["role"] == "replicas" and member["properties"]["replicas"] == "w=1"
    assert "metering.server_group" in member["properties"]["metadata"]
    up, down = resource(workers, "scale_up"), resource(workers, "scale_down")
    assert (up.properties["scaling_adjustment"], down.properties["scaling_adjustment"]) == (1, -1)
    for alarm, operator, percent, policy in (
        ("cpu_high_alarm", "gt", 70, "scale_up"),
        ("cpu_low_alarm", "lt", 15, "scale_down"),
    ):
        alarm_resource = resource(workers, alarm)
        assert alarm_resource.type() == "OS::Aodh::GnocchiAggregationByResourcesAlarm"
        properties = alarm_resource.properties
        assert (properties["metric"], properties["aggregation_method"], properties["resource_type"]) == (
            "cpu",
            "rate:mean",
            "instance",
        )
        assert properties["comparison_operator"] == operator
        assert properties["threshold"] == percent / 100 * 300 * 1e9  # ns of CPU per 300 s period
        assert json.loads(properties["query"].replace('"None"', '"stack"')) == {"=": {"server_group": "stack"}}
        assert {dependency.name for dependency in alarm_resource.t.dependencies(workers)} == {policy}


def test_passwords_and_tokens_are_generated_and_no_secret_is_in_the_repository(staging: heat.Validated) -> None:
    body, _, _ = heat.load(heat.MAIN_TEMPLATE)
    generated = {
        name for name, definition in body["resources"].items() if definition["type"] == "OS::Heat::RandomString"
    }
    assert generated == {"database_password", "rabbitmq_password", "control_token", "replica_token"}
    hidden = {name for name, definition in body["parameters"].items() if definition.get("hidden")}
    assert hidden == {"swift_password", "mail_api_key", "shop_database_url"}
    for path in heat.ENVIRONMENTS.values():
        defaults = yaml.safe_load(path.read_text())["parameter_defaults"]
        assert not {name for name in hidden if defaults.get(name)}, path.name
    settings = resource(staging.stack, "settings").properties["value"]
    assert "TOMBOLA_REPLICA_TOKEN=\n" in settings and "postgresql+psycopg://tombola:@:5432/tombola" in settings


def test_the_servers_settings_are_the_packs(staging: heat.Validated) -> None:
    text = resource(staging.stack, "settings").properties["value"]
    environment = dict(line.split("=", 1) for line in text.splitlines())
    settings = Settings.from_environ(environment)
    assert (settings.store, settings.swift_auth_version, settings.swift_user) == ("swift", "3", "tombola")
    assert settings.broker_url.startswith("amqp://tombola:") and settings.w_tempo == 5


@pytest.mark.parametrize("host", HOSTS)
def test_each_pack_server_boots_with_the_cloud_config_the_pack_generates(staging: heat.Validated, host: str) -> None:
    stack = staging.nested[host]
    _, document = cloud_config(stack)
    [[_, _, _, _, git_url, git_ref, role_flag, role, host_flag, address]] = [
        command[:10] for command in document["runcmd"]
    ]
    parameters = stack.parameters
    arguments = [
        role_flag,
        role,
        host_flag,
        address,
        "--local-functions",
        parameters["local_functions"],
        "--replicas",
        parameters["replicas"],
        "--gateway-url",
        parameters["gateway_url"],
    ]
    expected = units.cloud_config(parameters["git_url"], parameters["git_ref"], parameters["environment"], arguments)
    assert document == yaml.safe_load(expected.partition("\n")[2])
    assert (git_url, git_ref, role) == (heat.SITE_PARAMETERS["git_url"], "main", parameters["role"])
    served = units.parse_functions(parameters["local_functions"] or "none") + list(
        units.parse_replicas(parameters["replicas"])
    )
    assert all((FUNCTIONS / name / "manifest.toml").is_file() for name in served)


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_every_function_runs_somewhere_and_in_one_place_only(environment: str) -> None:
    validated = validate(environment)
    local = units.parse_functions(validated.nested["gateway"].parameters["local_functions"])
    remote = [
        *units.parse_replicas(validated.nested["runners/0"].parameters["replicas"]),
        *units.parse_replicas(validated.nested["workers/group/0"].parameters["replicas"]),
    ]
    assert sorted(local + remote) == sorted(
        path.name for path in FUNCTIONS.iterdir() if (path / "manifest.toml").is_file()
    )


@pytest.mark.parametrize(("server", "package"), [("rabbitmq", "rabbitmq-server"), ("database", "postgresql")])
def test_the_backend_servers_cloud_configs_parse(staging: heat.Validated, server: str, package: str) -> None:
    _, document = cloud_config(staging.nested[server])
    assert package in document["packages"]
    assert all(entry["permissions"] == "0600" for entry in document["write_files"])
    for command in document["runcmd"]:
        assert command[:2] == ["sh", "-ec"]
        assert subprocess.run(["sh", "-n", "-c", command[2]], capture_output=True).returncode == 0


# Each kind of mistake, made in a copy of heat/: (file, text, replacement, what the validation says).
MISTAKES = {
    "misspelled property": (
        "host.yaml",
        "      key_name: {get_param: key_name}\n      networks:",
        "      keyname: {get_param: key_name}\n      networks:",
        r"host\.yaml.*Unknown Property keyname",
    ),
    "wrong resource type": (
        "workers.yaml",
        "  scale_up:\n    type: OS::Heat::ScalingPolicy",
        "  scale_up:\n    type: OS::Heat::ScalePolicy",
        r"workers\.yaml.*OS::Heat::ScalePolicy\) could not be found",
    ),
    "undefined get_param in the main template": (
        "tombola.yaml",
        "      cidr: {get_param: private_cidr}\n      dns",
        "      cidr: {get_param: private_range}\n      dns",
        r"tombola\.yaml.*The Parameter \(private_range\) was not provided",
    ),
    "undefined get_param in a nested file": (
        "public.yaml",
        "address: {get_param: gateway_address}",
        "address: {get_param: gateway_adress}",
        r"public\.yaml \(as public\).*The Parameter \(gateway_adress\) was not provided",
    ),
    "undefined get_resource": (
        "security.yaml",
        "remote_group_id: {get_resource: bastion}",
        "remote_group_id: {get_resource: bastoin}",
        r"security\.yaml.*reference \"bastoin\".*is incorrect",
    ),
    "wrong property type": (
        "host.yaml",
        "      flavor: {get_param: flavor}\n",
        "      flavor: [{get_param: flavor}]\n",
        r"host\.yaml.*Value must be a string",
    ),
    "wrong property type through a parameter, in a nested file": (
        "security.yaml",
        "port_range_min: 22, port_range_max: 22,\n           remote_ip_prefix: {get_param: admin_cidr}",
        "port_range_min: {get_param: name}, port_range_max: 22,\n           remote_ip_prefix: {get_param: admin_cidr}",
        r"security\.yaml \(as security\).*port_range_min: Value 'tombola' is not an integer",
    ),
    "wrong value in a group member's definition": (
        "tombola.yaml",
        "          role: replicas\n",
        "          role: runner\n",
        r"tombola\.yaml \(as runners\).*role: \"runner\" is not an allowed value",
    ),
    "wrong value in an autoscaling group member, two files deep": (
        "workers.yaml",
        "          role: replicas\n",
        "          role: worker\n",
        r"workers\.yaml \(as workers/group\).*role: \"worker\" is not an allowed value",
    ),
    "wrong value for a parameter's constraint": (
        "env/staging.yaml",
        "  w_max: 2",
        "  w_max: 65",
        r"w_max.*out of range \(min: 1, max: 64\)",
    ),
    "dependency cycle": (
        "network.yaml",
        "      network: {get_resource: network}\n",
        "      network: {get_resource: network}\n"
        "      host_routes: [{destination: 0.0.0.0/0, nexthop: {get_attr: [router_interface, port_id]}}]\n",
        r"network\.yaml.*Circular Dependency Found",
    ),
    "dependency cycle through an autoscaling group": (
        "workers.yaml",
        "      min_size: {get_param: min_size}",
        "      min_size: {get_param: min_size}\n      cooldown: {get_attr: [scale_up, alarm_url]}",
        r"workers\.yaml.*Circular Dependency Found",
    ),
}
NESTED_ONLY = [
    "undefined get_param in a nested file",
    "wrong property type through a parameter, in a nested file",
    "wrong value in a group member's definition",
    "wrong value in an autoscaling group member, two files deep",
]


def mistaken_copy(tmp_path: Path, file: str, text: str, replacement: str) -> Path:
    copy = tmp_path / "heat"
    shutil.copytree(heat.HEAT_DIR, copy)
    path = copy / file
    original = path.read_text()
    assert original.count(text) == 1, f"{file} no longer holds {text!r}: update this test"
    path.write_text(original.replace(text, replacement))
    return copy


@pytest.mark.parametrize("mistake", MISTAKES)
def test_each_kind_of_mistake_is_caught(tmp_path: Path, mistake: str) -> None:
    file, text, replacement, message = MISTAKES[mistake]
    copy = mistaken_copy(tmp_path, file, text, replacement)
    with pytest.raises(heat.HeatInvalid, match=re.compile(message, re.DOTALL)):
        heat.validate(copy / "tombola.yaml", [copy / "env" / "staging.yaml"], heat.SITE_PARAMETERS)


@pytest.mark.parametrize("mistake", NESTED_ONLY)
def test_heat_alone_misses_mistakes_in_nested_files(tmp_path: Path, mistake: str) -> None:
    """Why heat_validation validates nested stacks itself: Heat checks them loosely before a create."""
    file, text, replacement, _ = MISTAKES[mistake]
    copy = mistaken_copy(tmp_path, file, text, replacement)
    heat.validate(copy / "tombola.yaml", [copy / "env" / "staging.yaml"], heat.SITE_PARAMETERS, nested=False)


def test_a_missing_site_parameter_is_named() -> None:
    parameters = {name: value for name, value in heat.SITE_PARAMETERS.items() if name != "admin_cidr"}
    with pytest.raises(heat.HeatInvalid, match="admin_cidr"):
        heat.validate(heat.MAIN_TEMPLATE, [heat.ENVIRONMENTS["production"]], parameters)


def test_a_secret_with_a_quote_is_refused() -> None:
    with pytest.raises(heat.HeatInvalid, match="swift_password"):
        validate(swift_password='pass"word')


def test_the_readme_documents_every_parameter() -> None:
    body, _, _ = heat.load(heat.MAIN_TEMPLATE)
    section = (heat.ROOT / "README.md").read_text().partition("## Deploy on OpenStack")[2]
    table = section.partition("### Parameters")[2].partition("\n## ")[0]
    documented = set(
        re.findall(r"`([a-z0-9_]+)`", "\n".join(line.split("|")[1] for line in table.splitlines() if "|" in line))
    )
    assert documented == set(body["parameters"])
