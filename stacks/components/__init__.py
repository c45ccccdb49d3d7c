"""Pulumi ComponentResources of the knooppunt platform (one concept per module).

``namespaces``  Namespaces with Pod Security ``restricted``
``pki``         the federation's CA or external PKIoverheid bundle, leaf Secrets, trust bundles
``network``     default-deny NetworkPolicies and the explicit allows
``operator_release``  the operator's Helm chart as a release
``facade``      the shared municipal cloud façade
``config``      reading a stack's configuration into the components' typed args
"""
