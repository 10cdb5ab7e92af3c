"""Heat's own engine, offline: the strict validation that ``openstack stack create`` runs.

heatclient's ``template_utils`` builds the template and its files map exactly
as the CLI sends them; Heat's ``Stack.validate()`` then checks them as the
engine does before a create. Only what needs a cloud is stubbed: whether a
service is in the catalog, the custom constraints' look-ups (does this image,
flavor or network exist?), and Nova's and Glance's answers about the image,
the flavor and the limits.

Heat checks nested stacks only loosely before a create (their property values
are not checked), so every nested stack (each template resource, and one
member of each group) is validated strictly here too, with the parameters its
parent passes. A parameter whose value depends on the parent's resources (an
address, an ID, a generated password) gets a placeholder of its type instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
HEAT_DIR = ROOT / "heat"
MAIN_TEMPLATE = HEAT_DIR / "tombola.yaml"
ENVIRONMENTS = {"staging": HEAT_DIR / "env" / "staging.yaml", "production": HEAT_DIR / "env" / "production.yaml"}
# What an operator passes besides an environment file: the site's names and the secrets.
SITE_PARAMETERS = {
    "key_name": "admins",
    "external_network": "public",
    "admin_cidr": "192.0.2.0/24",
    "git_url": "https://git.example.org/shop/tombola.git",
    "swift_auth_url": "https://keystone.example.org:5000/v3",
    "swift_user": "tombola",
    "swift_password": "s3cret-from-the-command-line",
    "swift_project": "shop",
}


class HeatInvalid(Exception):
    """Heat refused a template; the message names the file and says why."""


@dataclasses.dataclass(frozen=True)
class Image:
    """What Glance would answer about an image."""

    id: str = "image-id"
    name: str = "debian-12"
    status: str = "active"
    min_ram: int = 0
    min_disk: int = 0
    size: int = 400 * 1024**2


@dataclasses.dataclass(frozen=True)
class Flavor:
    """What Nova would answer about a flavor."""

    id: str = "flavor-id"
    name: str = "m1.small"
    ram: int = 2048
    disk: int = 20
    vcpus: int = 1


# The property of each group type that defines its members.
GROUP_MEMBERS = {"OS::Heat::ResourceGroup": "resource_def", "OS::Heat::AutoScalingGroup": "resource"}
# Custom constraints that Heat checks without a cloud (the others are stubbed), with a value they accept.
CONSTRAINED_PLACEHOLDERS = {"ip_addr": "192.0.2.10", "net_cidr": "192.0.2.0/24"}
NOVA_LIMITS = {"maxServerMeta": 128, "maxPersonality": 5, "maxPersonalitySize": 10240}


@functools.cache
def _engine() -> Any:
    """Set Heat's engine up once per process (configuration, fake RPC, resource plugins); the checks' context."""
    from oslo_config import cfg

    cfg.CONF(args=[], project="heat", default_config_files=[])
    from heat.common import messaging

    messaging.setup("fake://", optional=True)
    # Heat logs every hidden resource type at start, and its own debug lines during validation.
    for name in ("heat", "stevedore", "oslo_messaging"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from heat.engine import resources

    resources.initialise()
    from heat.common import context

    return context.RequestContext.from_dict(
        {
            "tenant_id": "project-id",
            "tenant": "shop",
            "username": "operator",
            "user_id": "operator-id",
            "auth_url": "https://keystone.example.org:5000/v3",
            "auth_token": "token",
            "roles": ["member"],
            "is_admin": False,
        }
    )


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """Answer, for the duration, the few questions Heat would ask the cloud."""
    from heat.engine import constraints, resource
    from heat.engine.clients.os import glance, nova

    def available(cls: type, context: object) -> tuple[bool, None]:
        return True, None

    with contextlib.ExitStack() as stubs:
        stubs.enter_context(mock.patch.object(resource.Resource, "is_service_available", classmethod(available)))
        stubs.enter_context(mock.patch.object(constraints.BaseCustomConstraint, "validate", lambda *args, **kw: True))
        stubs.enter_context(mock.patch.object(glance.GlanceClientPlugin, "get_image", lambda self, image: Image()))
        stubs.enter_context(mock.patch.object(nova.NovaClientPlugin, "get_flavor", lambda self, flavor: Flavor()))
        stubs.enter_context(mock.patch.object(nova.NovaClientPlugin, "get_max_microversion", lambda self: "2.96"))
        stubs.enter_context(mock.patch.object(nova.NovaClientPlugin, "absolute_limits", lambda self: NOVA_LIMITS))
        yield


def load(template: Path, environments: Sequence[Path] = ()) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    """The template, files map and environment, built as ``openstack stack create -t T -e E...`` builds them."""
    from heatclient.common import template_utils

    files, body = template_utils.get_template_contents(template_file=str(template))
    environment_files, environment = template_utils.process_multiple_environments_and_files(
        env_paths=[str(path) for path in environments]
    )
    return body, {**files, **environment_files}, environment


@dataclasses.dataclass
class Validated:
    """A stack that passed, with every nested stack validated strictly, by path (``gateway``, ``workers/group/0``)."""

    stack: Any
    nested: dict[str, Any]


def validate(
    template: Path = MAIN_TEMPLATE,
    environments: Sequence[Path] = (),
    parameters: Mapping[str, Any] | None = None,
    nested: bool = True,
) -> Validated:
    """Validate ``template`` strictly with Heat's engine; raise HeatInvalid naming the first problem and its file.

    ``nested=False`` stops at what Heat itself checks before a create.
    """
    from heat.common import exception
    from heat.engine import environment, stack
    from heat.engine import template as heat_template

    context = _engine()
    body, files, env = load(template, environments)
    env.setdefault("parameters", {}).update(parameters or {})
    with _offline():
        try:
            parsed = heat_template.Template(body, files=files, env=environment.Environment(env))
            root = stack.Stack(context, "tombola", parsed)
            root.validate()
        except (exception.HeatException, ValueError, TypeError, KeyError) as error:
            raise HeatInvalid(f"{template.name}: {error}") from None
        validated = Validated(root, {})
        if nested:
            _validate_nested(root, template.name, "", validated.nested)
    return validated


def _validate_nested(parent: Any, where: str, path: str, found: dict[str, Any]) -> None:
    """Validate strictly every nested stack under ``parent``'s resources, depth first."""
    from heat.common import exception

    for name, resource in sorted(parent.resources.items()):
        try:
            nested = _nested_stack(resource)
        except (exception.HeatException, ValueError, TypeError, KeyError) as error:
            raise HeatInvalid(f"{where}: {name}: {error}") from None
        if nested is None:
            continue
        file = _file_name(resource) or where
        nested.strict_validate = True
        try:
            nested.validate()
        except (exception.HeatException, ValueError, TypeError, KeyError) as error:
            raise HeatInvalid(f"{file} (as {path}{name}): {error}") from None
        found[path + name] = nested
        _validate_nested(nested, file, f"{path}{name}/", found)


def _file_name(resource: Any) -> str | None:
    """The file name of a template resource's template, if it has one."""
    url = getattr(resource, "template_url", "")
    return url.rsplit("/", 1)[-1] if url.endswith((".yaml", ".template")) else None


def _nested_stack(resource: Any) -> Any:
    """The nested stack a resource would create (one member for a group), or None for a plain resource."""
    from heat.engine.resources import template_resource

    if isinstance(resource, template_resource.TemplateResource):
        child = resource.child_template()
        params = resource.child_params()
        for name, value in resource.properties.data.items():
            if _depends_on_resources(value):
                params[name] = _placeholder(child["parameters"][name])
        return resource._parse_nested_stack(f"{resource.stack.name}-{resource.name}", child, params)
    if resource.type() in GROUP_MEMBERS:
        return _group_member_stack(resource)
    return resource.get_nested_parameters_stack()


def _group_member_stack(group: Any) -> Any:
    """A group's nested stack with one member; properties that depend on resources get placeholders."""
    from heat.engine import function

    member = group.properties.data[GROUP_MEMBERS[group.type()]]
    member_type = function.resolve(member["type"])
    if member_type not in group.stack.t.files:
        return group.get_nested_parameters_stack()
    parameters = json.loads(group.stack.t.files[member_type]).get("parameters", {})
    properties = {
        name: _placeholder(parameters[name]) if _depends_on_resources(value) else function.resolve(value)
        for name, value in member.get("properties", {}).items()
    }
    child = {"heat_template_version": "2015-04-30", "resources": {"0": {"type": member_type, "properties": properties}}}
    return group._parse_nested_stack(f"{group.stack.name}-{group.name}", child, group.child_params())


def _depends_on_resources(snippet: Any) -> bool:
    """True when a property's value is known only once other resources exist (get_attr, get_resource)."""
    from heat.engine import function

    return any(True for _ in function.dependencies(snippet))


def _placeholder(schema: Mapping[str, Any]) -> Any:
    """A value of the parameter's type that its constraints accept."""
    for constraint in schema.get("constraints", []):
        if constraint.get("custom_constraint") in CONSTRAINED_PLACEHOLDERS:
            return CONSTRAINED_PLACEHOLDERS[constraint["custom_constraint"]]
        if "allowed_values" in constraint:
            return constraint["allowed_values"][0]
        if "range" in constraint:
            bounds = constraint["range"]
            return bounds.get("min", bounds.get("max"))
    return {
        "string": "unresolved",
        "number": 1,
        "comma_delimited_list": "unresolved",
        "json": {},
        "boolean": False,
    }[schema["type"]]
