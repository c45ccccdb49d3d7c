"""Run a Pulumi program of stacks/ under mocks and capture what it declares.

``run_stack("platform", "dev")`` loads ``stacks/platform/Pulumi.dev.yaml`` as the stack's
configuration, sets :func:`pulumi.runtime.set_mocks`, executes the project's ``__main__.py``
and returns every registered resource (type token, name, resolved inputs) and every export
(value and whether it is secret). Mocks answer like the providers would in the ways that
matter here: the stacks' dynamic resources (the development CA and its certificates) run their
real provider's ``create``, a StackReference returns the outputs given to it, everything else
echoes its inputs.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import runpy
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pulumi
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pulumi.runtime import sync_await

REPO = Path(__file__).resolve().parents[2]
STACKS = REPO / "stacks"


def fake_key() -> str:
    """A real private key (PKCS#8 PEM): the API server parses the key of a TLS Secret."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def fake_cert(name: str, *, ca: bool = True) -> str:
    """A real (self-signed) certificate, so that code parsing PEM sees a certificate."""
    return _sign(ec.generate_private_key(ec.SECP256R1()), None, name, ca=ca)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])


def _sign(
    key: Any,
    issuer: tuple[x509.Certificate, Any] | None,
    name: str | x509.Name,
    *,
    ca: bool,
    public_key: Any = None,
    sans: list[str] | None = None,
) -> str:
    subject = _name(name) if isinstance(name, str) else name
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(public_key or key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in sans]), critical=False
        )
    signer = issuer[1] if issuer else key
    return builder.sign(signer, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def _load_key(pem: str) -> Any:
    return serialization.load_pem_private_key(pem.encode(), password=None)


DYNAMIC = "pulumi-python:dynamic:Resource"


def dynamic_create(inputs: dict[str, Any]) -> dict[str, Any]:
    """What the engine's dynamic provider answers: the serialised provider's own ``create``."""
    import base64

    import dill

    provider = dill.loads(base64.b64decode(_plain(inputs["__provider"])))
    props = {k: _plain(v) for k, v in inputs.items() if k != "__provider"}
    return dict(provider.create(props).outs or {})


def _plain(value: Any) -> Any:
    """A mock input without its secret wrapper."""
    if isinstance(value, dict) and "value" in value and len(value) == 2:
        return value["value"]
    return value


@dataclass
class Registered:
    type: str
    name: str
    inputs: dict[str, Any]


@dataclass
class Export:
    value: Any
    secret: bool


@dataclass
class Run:
    project: str
    stack: str
    resources: list[Registered] = field(default_factory=list)
    exports: dict[str, Export] = field(default_factory=dict)

    def of_type(self, token: str) -> list[Registered]:
        return [r for r in self.resources if r.type == token]

    def kubernetes(self) -> list[Registered]:
        return [
            r
            for r in self.resources
            if r.type.startswith("kubernetes:")
            and not r.type.startswith("kubernetes:helm.sh/")
            and r.type != "pulumi:providers:kubernetes"
        ]


class CapturingMocks(pulumi.runtime.Mocks):
    def __init__(self, run: Run, stack_outputs: Mapping[str, Mapping[str, Any]]) -> None:
        self.run = run
        self.stack_outputs = stack_outputs

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        inputs = dict(args.inputs)
        self.run.resources.append(Registered(args.typ, args.name, inputs))
        state = dict(inputs)
        if args.typ == DYNAMIC:
            state.update(dynamic_create(inputs))
        elif args.typ == "pulumi:pulumi:StackReference":
            state["outputs"] = dict(self.stack_outputs.get(inputs.get("name", args.name), {}))
            state["secretOutputNames"] = []
        elif args.typ == "kubernetes:helm.sh/v3:Release":
            state["status"] = {
                "status": "deployed",
                "name": inputs.get("name"),
                "namespace": inputs.get("namespace"),
                "revision": 1,
            }
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        return {}


def load_config(project_dir: Path, stack: str) -> tuple[str, dict[str, str]]:
    project = yaml.safe_load((project_dir / "Pulumi.yaml").read_text())["name"]
    doc = yaml.safe_load((project_dir / f"Pulumi.{stack}.yaml").read_text()) or {}
    config: dict[str, str] = {}
    for key, value in (doc.get("config") or {}).items():
        config[key] = value if isinstance(value, str) else json.dumps(value)
    return project, config


def _ensure_event_loop() -> None:
    """Pulumi's mocks use the thread's current event loop; an async test that ran before
    (pytest-asyncio) leaves none set in the main thread."""
    try:
        asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())


def run_stack(
    project: str,
    stack: str,
    *,
    overrides: Mapping[str, Any] | None = None,
    stack_outputs: Mapping[str, Mapping[str, Any]] | None = None,
) -> Run:
    """Execute ``stacks/<project>/__main__.py`` for ``stack`` under mocks."""
    project_dir = STACKS / project
    name, config = load_config(project_dir, stack)
    for key, value in (overrides or {}).items():
        config[key] = value if isinstance(value, str) else json.dumps(value)
    run = Run(project=name, stack=stack)
    outputs: dict[str, Any] = {}
    _ensure_event_loop()
    pulumi.runtime.set_mocks(
        CapturingMocks(run, stack_outputs or {}), project=name, stack=stack, preview=False
    )
    pulumi.runtime.set_all_config(config)

    def export(key: str, value: Any) -> None:
        outputs[key] = value

    @pulumi.runtime.test
    def program() -> pulumi.Output[Any]:
        with mock.patch.object(pulumi, "export", export):
            runpy.run_path(str(project_dir / "__main__.py"), run_name="__main__")
        return pulumi.Output.all(*[pulumi.Output.from_input(v) for v in outputs.values()])

    try:
        program()
        for key, value in outputs.items():
            out = pulumi.Output.from_input(value)
            run.exports[key] = Export(
                value=sync_await._sync_await(out.future()),
                secret=bool(sync_await._sync_await(out.is_secret())),
            )
    finally:
        pulumi.runtime.set_all_config({})
    return run
