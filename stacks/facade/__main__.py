"""Façade stack: the shared municipal cloud façade in the platform's façade namespace."""

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[2]))  # the repository: stacks.components

import pulumi

from stacks.components.facade import (
    Entry,
    Facade,
    FacadeArgs,
    Resources,
    documents_from_files,
)

config = pulumi.Config()
platform = pulumi.StackReference(config.require("platformStack"))
environment = config.require("environment")
entry = config.require_object("entry")
resources = config.get_object("resources") or {}

facade = Facade(
    "facade",
    FacadeArgs(
        environment=environment,
        namespace=platform.require_output("namespaces").apply(lambda n: n["facade"]),
        tls_secret=platform.require_output("facadeTlsSecret"),
        trust_config_map=platform.require_output("trustBundleConfigMap"),
        image=config.require("image"),
        replicas=config.get_int("replicas") or 2,
        resources=Resources(**resources),
        entry=Entry(
            kind=entry["kind"],
            host=entry.get("host"),
            ingress_class=entry.get("ingressClass"),
            load_balancer_source_ranges=tuple(entry.get("loadBalancerSourceRanges", [])),
            annotations=entry.get("annotations", {}),
        ),
        resource_documents=documents_from_files(
            config.get_object("resourceFiles") or [], base=str(Path(__file__).parent)
        ),
    ),
)

pulumi.export("service", facade.service_name)
pulumi.export("endpoint", facade.endpoint)
