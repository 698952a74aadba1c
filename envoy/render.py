#!/usr/bin/env python3
"""Render Alfred's Envoy bootstrap (front door + filter + clusters) as YAML.

One listener serves everything a user sees at ``http://<host>:8000``:

* the control plane's routes (``/v1/admin/``, ``/v1/users/``, ``/v1/auth/``, ``/static/``, ``/healthz``,
  ``/readyz``, ``/metrics``, ``/openapi.json``) go to cluster ``alfred_control_plane`` with
  the Alfred filter disabled on the route;
* the provider routes go through the ``alfred`` Proxy-Wasm filter to one cluster per
  provider (``provider_openai``, ``provider_azure``, ``provider_anthropic``,
  ``provider_gemini``, ``provider_bedrock``, ``provider_ollama``, ``provider_vllm``). Each
  provider is optional: it is served when its credential (or, for the keyless in-mesh
  ones, its base URL) is set — see ``PROVIDERS``. Bedrock requests are signed with AWS
  SigV4 by Envoy's own ``aws_request_signing`` filter, after the Alfred filter;
* everything else, ``/internal/`` included, is answered 404 in OpenAI's error shape.

Values come from command-line flags, else from the environment (names below), else from
defaults. The output contains the provider credential and the filter token, so it is
written with mode 0600. Python standard library only.

    python3 envoy/render.py -o .alfred/envoy.yaml
    envoy -c .alfred/envoy.yaml --concurrency 2

``--example`` renders envoy/alfred.example.yaml: defaults only, placeholder secrets.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
import urllib.parse

DEFAULT_WASM = "target/wasm32-wasip1/release/alfred_filter.wasm"
DEFAULT_CA_FILE = "/etc/ssl/certs/ca-certificates.crt"
FILTER_NAME = "alfred"
CONTROL_PLANE_CLUSTER = "alfred_control_plane"
CONTROL_PLANE_AUTHORITY = "alfred-control-plane"

# Control-plane routes exposed on the front door (the filter is disabled on them).
CONTROL_PLANE_PREFIXES = ["/v1/admin", "/v1/users", "/v1/auth", "/static"]
CONTROL_PLANE_PATHS = ["/healthz", "/readyz", "/metrics", "/openapi.json"]

AWS_SIGNING_FILTER = "envoy.filters.http.aws_request_signing"
# Request bodies up to the filter's 32 MiB limit must fit in Envoy's buffers.
CONNECTION_BUFFER_LIMIT = 40 * 1024 * 1024


class ProviderSpec:
    """One provider: where its base URL and credential come from, how the filter sends
    the credential, and which client paths route to it.

    ``routes`` are (match kind, client path, upstream path) with the upstream path
    relative to the base URL's own path prefix; ``exact`` matches the path, ``prefix`` a
    string prefix (the rest of the path is kept).
    """

    def __init__(self, name, *, key_env, base_env, default_base, auth_header, auth_format,
                 routes, keyless=False, title=""):
        self.name = name
        self.key_env = key_env
        self.base_env = base_env
        self.default_base = default_base
        self.auth_header = auth_header
        self.auth_format = auth_format
        self.routes = routes
        self.keyless = keyless
        self.title = title


def _openai_paths(client_prefix: str, upstream_prefix: str = "") -> list[tuple[str, str, str]]:
    ops = ["chat/completions", "completions", "embeddings", "responses"]
    return [("exact", f"{client_prefix}/v1/{op}", f"{upstream_prefix}/v1/{op}") for op in ops]


PROVIDERS = [
    ProviderSpec("openai", key_env="OPENAI_API_KEY", base_env="OPENAI_BASE_URL",
                 default_base="https://api.openai.com", auth_header="authorization",
                 auth_format="Bearer {key}", routes=_openai_paths(""), title="OpenAI"),
    ProviderSpec("azure", key_env="AZURE_OPENAI_API_KEY", base_env="AZURE_OPENAI_ENDPOINT",
                 default_base=None, auth_header="api-key", auth_format="{key}",
                 routes=[("prefix", "/openai/deployments/", "/openai/deployments/")], title="Azure OpenAI"),
    ProviderSpec("anthropic", key_env="ANTHROPIC_API_KEY", base_env="ANTHROPIC_BASE_URL",
                 default_base="https://api.anthropic.com", auth_header="x-api-key", auth_format="{key}",
                 routes=[("exact", "/v1/messages", "/v1/messages")], title="Anthropic"),
    ProviderSpec("gemini", key_env="GEMINI_API_KEY", base_env="GEMINI_BASE_URL",
                 default_base="https://generativelanguage.googleapis.com", auth_header="x-goog-api-key",
                 auth_format="{key}",
                 routes=[("prefix", "/v1beta/models/", "/v1beta/models/"), ("prefix", "/v1/models/", "/v1/models/")],
                 title="Google Gemini"),
    # Credential: SigV4 from Envoy's aws_request_signing filter, not from the Alfred filter.
    ProviderSpec("bedrock", key_env=None, base_env="BEDROCK_ENDPOINT", default_base=None,
                 auth_header="", auth_format="", routes=[("prefix", "/model/", "/model/")], keyless=True,
                 title="AWS Bedrock"),
    ProviderSpec("ollama", key_env=None, base_env="OLLAMA_BASE_URL", default_base=None,
                 auth_header="", auth_format="", keyless=True, title="Ollama",
                 routes=[("exact", "/api/chat", "/api/chat"), ("exact", "/api/generate", "/api/generate"),
                         ("prefix", "/ollama/v1/", "/v1/")]),
    ProviderSpec("vllm", key_env="VLLM_API_KEY", base_env="VLLM_BASE_URL", default_base=None,
                 auth_header="authorization", auth_format="Bearer {key}", keyless=True,
                 routes=[("prefix", "/vllm/v1/", "/v1/")], title="vLLM / TGI (OpenAI-compatible)"),
]
PROVIDER_BY_NAME = {p.name: p for p in PROVIDERS}

NOT_FOUND_BODY = json.dumps(
    {
        "error": {
            "message": "Unknown path. Alfred serves the provider APIs under /v1 (e.g. /v1/chat/completions) "
            "and its own API under /v1/admin/ and /v1/users/.",
            "type": "invalid_request_error",
            "param": None,
            "code": "not_found",
        }
    },
    separators=(",", ":"),
)


class RenderError(Exception):
    """A bad input value; the message names the flag and the variable."""


# ---------------------------------------------------------------- helpers


def socket_address(host: str, port: int) -> dict:
    return {"socket_address": {"address": host, "port_value": port}}


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def split_host_port(value: str, what: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise RenderError(f"{what} must be HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


class Upstream:
    """A provider base URL: scheme, host, port and an optional path prefix."""

    def __init__(self, base_url: str, what: str, strip_v1: bool = True):
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise RenderError(f"{what} must be an http:// or https:// URL, got {base_url!r}")
        if parsed.query or parsed.fragment or parsed.username:
            raise RenderError(f"{what} must not carry a query, fragment or user info")
        self.tls = parsed.scheme == "https"
        self.host = parsed.hostname
        self.port = parsed.port or (443 if self.tls else 80)
        prefix = parsed.path.rstrip("/")
        # OpenAI SDK convention: OPENAI_BASE_URL often ends in /v1. Alfred appends the
        # client's full path (/v1/...), so a trailing /v1 is dropped rather than doubled.
        if strip_v1 and prefix.endswith("/v1"):
            prefix = prefix[: -len("/v1")]
        self.prefix = prefix
        default_port = (self.tls and self.port == 443) or (not self.tls and self.port == 80)
        self.authority = self.host if default_port else f"{self.host}:{self.port}"


def cluster(name: str, host: str, port: int, *, dns_type: str, tls_sni: str | None = None,
            ca_file: str | None = None, connect_timeout: str = "5s") -> dict:
    """A one-endpoint cluster: STATIC for an IP, else `dns_type` (STRICT_DNS for a service
    with several addresses to balance over, LOGICAL_DNS for a provider behind a CDN)."""
    ip = is_ip(host)
    result = {
        "name": name,
        "type": "STATIC" if ip else dns_type,
        "connect_timeout": connect_timeout,
        "lb_policy": "ROUND_ROBIN",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket_address(host, port)}}]}],
        },
    }
    if not ip:
        result["dns_lookup_family"] = "V4_PREFERRED"
    if tls_sni is not None:
        common = {}
        if ca_file:
            common["validation_context"] = {"trusted_ca": {"filename": ca_file}}
        result["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": tls_sni,
                "common_tls_context": common,
            },
        }
    return result


def filter_disabled() -> dict:
    return {
        FILTER_NAME: {
            "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
            "disabled": True,
        }
    }


def control_plane_routes(with_filter: bool) -> list[dict]:
    routes = []
    matches = [{"path_separated_prefix": p} for p in CONTROL_PLANE_PREFIXES]
    matches += [{"path": p} for p in CONTROL_PLANE_PATHS]
    for match in matches:
        path = next(iter(match.values()))
        route = {
            "name": "control_plane" + path.replace("/", "_").replace(".", "_"),
            "match": match,
            "route": {"cluster": CONTROL_PLANE_CLUSTER, "timeout": "60s"},
        }
        if with_filter:
            route["typed_per_filter_config"] = filter_disabled()
        routes.append(route)
    return routes


class Enabled:
    """A provider this gateway serves: its spec, upstream and credential."""

    def __init__(self, spec: ProviderSpec, upstream: Upstream, key: str | None):
        self.spec = spec
        self.upstream = upstream
        self.key = key

    @property
    def cluster(self) -> str:
        return f"provider_{self.spec.name}"

    def filter_credential(self) -> dict:
        if self.spec.auth_header and self.key:
            return {"auth_header": self.spec.auth_header, "auth_value": self.spec.auth_format.format(key=self.key)}
        # Empty: the filter sets no credential (keyless in-mesh model, or SigV4 by Envoy).
        return {"auth_header": "", "auth_value": ""}


def provider_routes(provider: Enabled, with_filter: bool, signing: dict | None = None) -> list[dict]:
    routes = []
    upstream = provider.upstream
    for kind, path, target in provider.spec.routes:
        action = {
            "cluster": provider.cluster,
            "host_rewrite_literal": upstream.authority,
            # Streams may run for minutes; the idle timeout catches a stalled provider.
            "timeout": "600s",
            "idle_timeout": "300s",
        }
        rewritten = upstream.prefix + target
        if rewritten != path:
            action["prefix_rewrite"] = rewritten
        route = {
            "name": f"{provider.spec.name}{path.rstrip('/').replace('/', '_')}",
            "match": {"path": path} if kind == "exact" else {"prefix": path},
            "route": action,
        }
        if signing is not None:
            # Sign after the Alfred filter swapped the client key out (it sets no
            # credential for Bedrock): the signing filter is off on every other route.
            route["typed_per_filter_config"] = {
                AWS_SIGNING_FILTER: {
                    "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig",
                    "disabled": False,
                    "config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.aws_request_signing.v3.AwsRequestSigningPerRoute",
                        "aws_request_signing": signing,
                        "stat_prefix": "bedrock",
                    },
                }
            }
        routes.append(route)
    return routes


def aws_signing_config(args: argparse.Namespace, bedrock: Enabled) -> dict:
    """AwsRequestSigning for Bedrock (used on the Bedrock routes)."""
    config = {
        "service_name": "bedrock",
        "region": args.aws_region,
        # The router rewrites Host after this filter runs: sign what the provider sees.
        "host_rewrite": bedrock.upstream.authority,
        "use_unsigned_payload": False,
    }
    if args.aws_access_key_id and args.aws_secret_access_key:
        inline = {"access_key_id": args.aws_access_key_id, "secret_access_key": args.aws_secret_access_key}
        if args.aws_session_token:
            inline["session_token"] = args.aws_session_token
        config["credential_provider"] = {"inline_credential": inline}
    # Else Envoy's default AWS credential chain (environment, profile, IRSA, instance role).
    return config


def aws_signing_filter(args: argparse.Namespace, bedrock: Enabled) -> dict:
    """The signing filter in the chain: disabled by default, enabled per Bedrock route."""
    typed = {"@type": "type.googleapis.com/envoy.extensions.filters.http.aws_request_signing.v3.AwsRequestSigning"}
    typed.update(aws_signing_config(args, bedrock))
    return {"name": AWS_SIGNING_FILTER, "disabled": True, "typed_config": typed}


def not_found_route(with_filter: bool) -> dict:
    route = {
        "name": "not_found",
        "match": {"prefix": "/"},
        "direct_response": {"status": 404, "body": {"inline_string": NOT_FOUND_BODY}},
        "response_headers_to_add": [
            {
                "header": {"key": "content-type", "value": "application/json"},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }
        ],
    }
    if with_filter:
        route["typed_per_filter_config"] = filter_disabled()
    return route


def plugin_configuration(args: argparse.Namespace) -> dict:
    """The JSON the filter parses (see filter/src/config.rs)."""
    return {
        "proxy_id": args.proxy_id,
        "control_plane": {
            "cluster": CONTROL_PLANE_CLUSTER,
            "authority": CONTROL_PLANE_AUTHORITY,
            "token": args.filter_token,
            "timeout_ms": args.control_plane_timeout_ms,
        },
        "lease_request_tokens": args.lease_request_tokens,
        "default_estimate_tokens": args.default_estimate_tokens,
        "tick_ms": args.tick_ms,
        "report_interval_ms": args.report_interval_ms,
        "providers": {p.spec.name: p.filter_credential() for p in enabled_providers(args)},
    }


def wasm_filter(args: argparse.Namespace) -> dict:
    return {
        "name": FILTER_NAME,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": FILTER_NAME,
                "root_id": FILTER_NAME,
                "vm_config": {
                    "vm_id": FILTER_NAME,
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": args.wasm}},
                },
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": json.dumps(plugin_configuration(args), separators=(",", ":")),
                },
                # A crashed filter VM must refuse requests, never pass them ungoverned.
                "failure_policy": "FAIL_CLOSED",
                # Pausing in request headers must still deliver the body to the filter
                # (it reads OpenAI request bodies before they go upstream).
                "allow_on_headers_stop_iteration": True,
            },
        },
    }


def access_log() -> list[dict]:
    # No headers, no query string (Gemini-style ?key= would leak), no bodies.
    fmt = (
        '[%START_TIME%] "%REQ(:METHOD)% %PATH(NQ)% %PROTOCOL%" %RESPONSE_CODE% %RESPONSE_FLAGS% '
        "%BYTES_RECEIVED% %BYTES_SENT% %DURATION%ms route=%ROUTE_NAME% upstream=%UPSTREAM_CLUSTER% "
        "id=%REQ(X-REQUEST-ID)%\n"
    )
    return [
        {
            "name": "envoy.access_loggers.stdout",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
                "log_format": {"text_format_source": {"inline_string": fmt}},
            },
        }
    ]


def enabled_providers(args: argparse.Namespace) -> list[Enabled]:
    """The providers this gateway serves, in PROVIDERS order."""
    result = []
    for spec in PROVIDERS:
        key = getattr(args, f"{spec.name}_api_key", None)
        base = getattr(args, f"{spec.name}_base_url")
        flag = f"--{spec.name}-base-url / {spec.base_env}"
        if spec.name == "bedrock":
            on = bool(base or (args.aws_access_key_id and args.aws_secret_access_key))
            base = base or f"https://bedrock-runtime.{args.aws_region}.amazonaws.com"
        elif spec.keyless:
            on = bool(base)
            if key and not base:
                raise RenderError(f"{spec.key_env} is set but {spec.base_env} is not: {spec.title} needs its endpoint")
        else:
            on = bool(key)
            if on and not base:
                if spec.default_base is None:
                    raise RenderError(f"{spec.key_env} is set but {spec.base_env} is not: {spec.title} needs its endpoint")
                base = spec.default_base
        if spec.name == "openai" and args.no_filter:
            on = True  # the benchmark baseline always has the OpenAI route
            base = base or spec.default_base
        if on:
            result.append(Enabled(spec, Upstream(base, flag, strip_v1=spec.name == "openai"), key))
    return result


def bootstrap(args: argparse.Namespace) -> dict:
    with_filter = not args.no_filter
    cp_host, cp_port = split_host_port(args.control_plane, "--control-plane / ALFRED_CONTROL_PLANE_ADDR")
    providers = enabled_providers(args)
    if not providers:
        raise RenderError(
            "no provider is configured: set at least one of "
            + ", ".join(p.base_env if p.keyless else p.key_env for p in PROVIDERS if p.name != "bedrock")
            + ", BEDROCK_ENDPOINT or AWS_ACCESS_KEY_ID+AWS_SECRET_ACCESS_KEY"
        )

    routes = control_plane_routes(with_filter)
    for provider in providers:
        sign = provider.spec.name == "bedrock" and with_filter
        routes += provider_routes(provider, with_filter, aws_signing_config(args, provider) if sign else None)
    routes.append(not_found_route(with_filter))
    bedrock = next((p for p in providers if p.spec.name == "bedrock"), None)
    signing = [aws_signing_filter(args, bedrock)] if bedrock and with_filter else []
    http_filters = ([wasm_filter(args)] if with_filter else []) + signing + [
        {
            "name": "envoy.filters.http.router",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
        }
    ]
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "alfred",
        "codec_type": "AUTO",
        "use_remote_address": True,
        "stream_idle_timeout": "300s",
        "route_config": {
            "name": "alfred_routes",
            "virtual_hosts": [{"name": "alfred", "domains": ["*"], "routes": routes}],
        },
        "http_filters": http_filters,
    }
    if args.access_log:
        hcm["access_log"] = access_log()

    return {
        "node": {"id": args.proxy_id, "cluster": "alfred-gateway"},
        "admin": {"address": socket_address(args.admin_address, args.admin_port)},
        "static_resources": {
            "listeners": [
                {
                    "name": "alfred_front_door",
                    "address": socket_address(args.listen_address, args.listen_port),
                    "per_connection_buffer_limit_bytes": CONNECTION_BUFFER_LIMIT,
                    "filter_chains": [
                        {
                            "filters": [
                                {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                cluster(CONTROL_PLANE_CLUSTER, cp_host, cp_port, dns_type="STRICT_DNS", connect_timeout="2s"),
            ]
            + [
                cluster(
                    p.cluster,
                    p.upstream.host,
                    p.upstream.port,
                    # In-mesh model servers are services with several replicas to balance
                    # over; public APIs sit behind CDNs.
                    dns_type="STRICT_DNS" if p.spec.keyless and p.spec.name != "bedrock" else "LOGICAL_DNS",
                    tls_sni=p.upstream.host if p.upstream.tls else None,
                    ca_file=args.ca_file if p.upstream.tls else None,
                )
                for p in providers
            ],
        },
    }


# ---------------------------------------------------------------- YAML output

_PLAIN_SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./-")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def _scalar(value) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    text = str(value)
    plain = (
        text
        and set(text) <= _PLAIN_SAFE
        and text.lower() not in _YAML_WORDS
        and not text[0] in "-./0123456789"
    )
    # JSON strings are valid YAML double-quoted scalars.
    return text if plain else json.dumps(text, ensure_ascii=False)


def to_yaml(value, indent: int = 0) -> str:
    pad = "  " * indent
    lines = []
    if isinstance(value, dict):
        for key, item in value.items():
            k = _scalar(key)
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{k}:")
                lines.append(to_yaml(item, indent + 1))
            elif isinstance(item, dict):
                lines.append(f"{pad}{k}: {{}}")
            elif isinstance(item, list):
                lines.append(f"{pad}{k}: []")
            else:
                lines.append(f"{pad}{k}: {_scalar(item)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, (dict, list)) and item:
                body = to_yaml(item, indent + 1)
                lines.append(f"{pad}- {body.lstrip()}")
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    else:
        lines.append(f"{pad}{_scalar(value)}")
    return "\n".join(lines)


# ---------------------------------------------------------------- CLI


def env(name: str, default=None):
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--output", required=True, help="file to write (mode 0600), or - for stdout")
    p.add_argument("--listen-address", default=env("ALFRED_LISTEN_ADDRESS", "0.0.0.0"),
                   help="front-door address [ALFRED_LISTEN_ADDRESS, 0.0.0.0]")
    p.add_argument("--listen-port", type=int, default=int(env("ALFRED_LISTEN_PORT", "8000")),
                   help="front-door port [ALFRED_LISTEN_PORT, 8000]")
    p.add_argument("--admin-address", default=env("ENVOY_ADMIN_ADDRESS", "127.0.0.1"),
                   help="Envoy admin address [ENVOY_ADMIN_ADDRESS, 127.0.0.1]")
    p.add_argument("--admin-port", type=int, default=int(env("ENVOY_ADMIN_PORT", "9901")),
                   help="Envoy admin port [ENVOY_ADMIN_PORT, 9901]")
    p.add_argument("--control-plane", default=env("ALFRED_CONTROL_PLANE_ADDR", "127.0.0.1:8081"),
                   help="control plane HOST:PORT [ALFRED_CONTROL_PLANE_ADDR, 127.0.0.1:8081]")
    p.add_argument("--wasm", default=env("ALFRED_FILTER_WASM", DEFAULT_WASM),
                   help=f"compiled filter [ALFRED_FILTER_WASM, {DEFAULT_WASM}]")
    for spec in PROVIDERS:
        default = f", {spec.default_base}" if spec.default_base else ""
        p.add_argument(f"--{spec.name}-base-url", default=env(spec.base_env),
                       help=f"{spec.title} base URL [{spec.base_env}{default}]")
        if spec.key_env:
            p.add_argument(f"--{spec.name}-api-key", default=env(spec.key_env),
                           help=f"{spec.title} credential [{spec.key_env}] (prefer the variable: flags show in ps)")
    p.add_argument("--aws-region", default=env("AWS_REGION", env("AWS_DEFAULT_REGION", "us-east-1")),
                   help="Bedrock region for SigV4 [AWS_REGION, us-east-1]")
    p.add_argument("--aws-access-key-id", default=env("AWS_ACCESS_KEY_ID"),
                   help="Bedrock signing key id [AWS_ACCESS_KEY_ID]; unset: Envoy's default AWS credential chain")
    p.add_argument("--aws-secret-access-key", default=env("AWS_SECRET_ACCESS_KEY"),
                   help="[AWS_SECRET_ACCESS_KEY]")
    p.add_argument("--aws-session-token", default=env("AWS_SESSION_TOKEN"), help="[AWS_SESSION_TOKEN]")
    p.add_argument("--filter-token", default=env("ALFRED_FILTER_TOKEN"),
                   help="filter ↔ control-plane credential [ALFRED_FILTER_TOKEN]")
    p.add_argument("--proxy-id", default=env("ALFRED_PROXY_ID", "envoy-1"), help="[ALFRED_PROXY_ID, envoy-1]")
    p.add_argument("--lease-request-tokens", type=int, default=int(env("ALFRED_LEASE_REQUEST_TOKENS", "20000")),
                   help="[ALFRED_LEASE_REQUEST_TOKENS, 20000]")
    p.add_argument("--default-estimate-tokens", type=int,
                   default=int(env("ALFRED_DEFAULT_ESTIMATE_TOKENS", "256")),
                   help="[ALFRED_DEFAULT_ESTIMATE_TOKENS, 256]")
    p.add_argument("--tick-ms", type=int, default=int(env("ALFRED_TICK_MS", "200")), help="[ALFRED_TICK_MS, 200]")
    p.add_argument("--report-interval-ms", type=int, default=int(env("ALFRED_REPORT_INTERVAL_MS", "1000")),
                   help="longest a usage record waits for its report to fill [ALFRED_REPORT_INTERVAL_MS, 1000]")
    p.add_argument("--control-plane-timeout-ms", type=int,
                   default=int(env("ALFRED_CONTROL_PLANE_TIMEOUT_MS", "2000")),
                   help="[ALFRED_CONTROL_PLANE_TIMEOUT_MS, 2000]")
    p.add_argument("--ca-file", default=env("ALFRED_UPSTREAM_CA_FILE", DEFAULT_CA_FILE),
                   help=f"CA bundle for https providers [ALFRED_UPSTREAM_CA_FILE, {DEFAULT_CA_FILE}]")
    p.add_argument("--no-access-log", dest="access_log", action="store_false",
                   help="do not log requests to stdout")
    p.add_argument("--example", action="store_true",
                   help="render the committed example: defaults only, placeholder secrets, mode 0644")
    p.add_argument("--no-filter", action="store_true",
                   help="render the same Envoy without the Alfred filter (benchmark baseline)")
    args = p.parse_args(argv)
    if not args.no_filter:
        if not args.filter_token:
            p.error("the filter token is missing: set ALFRED_FILTER_TOKEN (or --filter-token)")
    for name in ("listen_port", "admin_port"):
        if not 0 < getattr(args, name) < 65536:
            p.error(f"--{name.replace('_', '-')} must be a port number")
    for name in ("lease_request_tokens", "default_estimate_tokens", "tick_ms", "report_interval_ms",
                 "control_plane_timeout_ms"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive")
    if args.report_interval_ms > 10_000:
        # Leases stop being used this much before they expire (filter/src/config.rs).
        p.error("--report-interval-ms must be at most 10000")
    return args


EXAMPLE_HEADER = (
    "# Example rendered by `python3 envoy/render.py --example -o envoy/alfred.example.yaml`:\n"
    "# defaults, every provider enabled, placeholder secrets. Render your own (it embeds the\n"
    "# provider credentials and ALFRED_FILTER_TOKEN and is written mode 0600);\n"
    "# scripts/validate-envoy.sh checks this file is current.\n"
)
EXAMPLE_SECRETS = {
    "OPENAI_API_KEY": "sk-REPLACE-WITH-YOUR-OPENAI-KEY",
    "AZURE_OPENAI_API_KEY": "REPLACE-WITH-YOUR-AZURE-OPENAI-KEY",
    "AZURE_OPENAI_ENDPOINT": "https://YOUR-RESOURCE.openai.azure.com",
    "ANTHROPIC_API_KEY": "sk-ant-REPLACE-WITH-YOUR-ANTHROPIC-KEY",
    "GEMINI_API_KEY": "REPLACE-WITH-YOUR-GEMINI-KEY",
    "AWS_ACCESS_KEY_ID": "AKIAREPLACEWITHYOURKEY",
    "AWS_SECRET_ACCESS_KEY": "REPLACE-WITH-YOUR-AWS-SECRET-ACCESS-KEY",
    "OLLAMA_BASE_URL": "http://ollama.models.svc.cluster.local:11434",
    "VLLM_BASE_URL": "http://vllm.models.svc.cluster.local:8000",
    "ALFRED_FILTER_TOKEN": "REPLACE-WITH-ALFRED_FILTER_TOKEN-at-least-32-chars",
}
# Variables render.py reads; --example ignores them so the example never depends on them.
ENV_INPUTS = [
    "ALFRED_LISTEN_ADDRESS", "ALFRED_LISTEN_PORT", "ENVOY_ADMIN_ADDRESS", "ENVOY_ADMIN_PORT",
    "ALFRED_CONTROL_PLANE_ADDR", "ALFRED_FILTER_WASM",
    *(p.base_env for p in PROVIDERS), *(p.key_env for p in PROVIDERS if p.key_env),
    "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "ALFRED_FILTER_TOKEN", "ALFRED_PROXY_ID", "ALFRED_LEASE_REQUEST_TOKENS",
    "ALFRED_DEFAULT_ESTIMATE_TOKENS", "ALFRED_TICK_MS", "ALFRED_REPORT_INTERVAL_MS",
    "ALFRED_CONTROL_PLANE_TIMEOUT_MS",
    "ALFRED_UPSTREAM_CA_FILE",
]


def main(argv: list[str]) -> int:
    example = "--example" in argv
    if example:
        argv = [a for a in argv if a != "--example"]
        for name in ENV_INPUTS:
            os.environ.pop(name, None)
        os.environ.update(EXAMPLE_SECRETS)
    try:
        args = parse_args(argv)
        header = EXAMPLE_HEADER if example else "# Rendered by envoy/render.py. Contains secrets: keep it mode 0600.\n"
        text = header + to_yaml(bootstrap(args)) + "\n"
    except RenderError as err:
        print(f"render.py: {err}", file=sys.stderr)
        return 2
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    directory = os.path.dirname(os.path.abspath(args.output))
    os.makedirs(directory, exist_ok=True)
    tmp = f"{args.output}.tmp.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(tmp, 0o600)
    if example:
        os.chmod(tmp, 0o644)  # placeholders only
    os.replace(tmp, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
