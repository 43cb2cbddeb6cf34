"""``providers.aws.sign_req``: AWS Signature Version 4 of an ``http.send``-style request.

A port of OPA's ``v1/topdown/providers.go`` and ``internal/providers/aws/signing_v4.go``
(which follow AWS's SigV4 documentation): the canonical request is
``method``, the URL's escaped path, its raw query, the signed headers (the AWS
ones plus the request's, lowercased, less ``authorization``, ``user-agent`` and
``x-amzn-trace-id``) sorted by name, their names, and the payload hash; the
signing key is the HMAC-SHA256 chain over date, region, service and
``aws4_request``. The result is the request with its ``headers`` replaced by
the request's own, ``Authorization`` and the AWS headers. Operands OPA rejects
raise :class:`HostBuiltinError` (the call is undefined).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
from typing import Any

from evaluator_sidecar.policy.engines.wasm.hostjwt import go_json_marshal
from evaluator_sidecar.policy.engines.wasm.hostlib import HostBuiltinError

__all__ = ["escaped_path", "parse_url", "sign_req"]

# http.send's request keys (v1/topdown/http.go allowedKeyNames): sign_req takes the same.
_ALLOWED_REQUEST_KEYS = frozenset(
    {
        "method",
        "url",
        "body",
        "enable_redirect",
        "force_json_decode",
        "force_yaml_decode",
        "headers",
        "raw_body",
        "tls_use_system_certs",
        "tls_ca_cert",
        "tls_ca_cert_file",
        "tls_ca_cert_env_variable",
        "tls_client_cert",
        "tls_client_cert_file",
        "tls_client_cert_env_variable",
        "tls_client_key",
        "tls_client_key_file",
        "tls_client_key_env_variable",
        "tls_insecure_skip_verify",
        "tls_server_name",
        "timeout",
        "cache",
        "force_cache",
        "force_cache_duration_seconds",
        "raise_error",
        "caching_mode",
        "max_retry_attempts",
        "cache_ignored_headers",
    }
)
_REQUIRED_CONFIG_KEYS = ("aws_access_key", "aws_region", "aws_secret_access_key", "aws_service")
_IGNORED_HEADERS = frozenset({"authorization", "user-agent", "x-amzn-trace-id"})
_UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_INT64 = 2**63


def _str_or_empty(value: Any) -> str:
    """Go's ``stringFromTerm``: a string's value, anything else ""."""
    return value if isinstance(value, str) else ""


# -- Go's net/url, as far as SigV4 needs it (Host, EscapedPath, RawQuery) --------------------
_UNRESERVED = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~")
_PATH_KEEP = _UNRESERVED | frozenset(b"$&+,/:;=@")
_VALID_ENCODED_EXTRA = frozenset(b"!$&'()*+,;=:@[]%")
_HEX = frozenset(b"0123456789abcdefABCDEF")


def _unescape(text: str) -> str:
    """Go's ``url.PathUnescape``: ``%XX`` decoded, a malformed escape is an error."""
    raw = text.encode("utf-8", "surrogatepass")
    out = bytearray()
    i = 0
    while i < len(raw):
        if raw[i] == 0x25:
            if i + 2 >= len(raw) or raw[i + 1] not in _HEX or raw[i + 2] not in _HEX:
                raise HostBuiltinError(f"invalid URL escape {raw[i : i + 3]!r}")
            out.append(int(raw[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    return out.decode("utf-8", "surrogateescape")


def _escape_path(path: str) -> str:
    out: list[str] = []
    for byte in path.encode("utf-8", "surrogateescape"):
        out.append(chr(byte) if byte in _PATH_KEEP else f"%{byte:02X}")
    return "".join(out)


def escaped_path(raw_path: str) -> str:
    """Go's ``URL.EscapedPath``: the path as written if that is a valid encoding, else escaped."""
    path = _unescape(raw_path)
    data = raw_path.encode("utf-8", "surrogatepass")
    if all(b in _PATH_KEEP or b in _VALID_ENCODED_EXTRA for b in data):
        return raw_path
    if path == "*":
        return "*"
    return _escape_path(path)


def _scheme(url: str) -> tuple[str, str]:
    for i, c in enumerate(url):
        if c.isascii() and c.isalpha():
            continue
        if c.isascii() and (c.isdigit() or c in "+-."):
            if i == 0:
                return "", url
            continue
        if c == ":":
            if i == 0:
                raise HostBuiltinError("missing protocol scheme")
            return url[:i].lower(), url[i + 1 :]
        return "", url
    return "", url


def parse_url(url: str) -> tuple[str, str, str]:
    """Go's ``url.Parse`` reduced to (host, raw path, raw query); errors where Go errs."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise HostBuiltinError("net/url: invalid control character in URL")
    url, _, _fragment = url.partition("#")
    scheme, rest = _scheme(url)
    query = ""
    if "?" in rest:
        rest, query = rest.split("?", 1)
    if scheme and not rest.startswith("/"):
        return "", "", query  # opaque: no host, no path
    if not scheme and rest and ":" in rest.split("/", 1)[0]:
        raise HostBuiltinError("first path segment in URL cannot contain colon")
    host = ""
    if rest.startswith("//") and (scheme or not rest.startswith("///")):
        authority, slash, path = rest[2:].partition("/")
        rest = slash + path
        host = authority.rpartition("@")[2]
        if host.startswith("[") and "]" not in host:
            raise HostBuiltinError("missing ']' in host")
        if "%" in host and not host.startswith("["):
            _unescape(host)
    _unescape(rest)
    return host, rest, query


# -- the builtin -------------------------------------------------------------------------------
def _check_request(req: dict[Any, Any]) -> tuple[str, str]:
    if any(k not in _ALLOWED_REQUEST_KEYS for k in req):
        raise HostBuiltinError("operand 1 has invalid request parameters")
    if "method" not in req or "url" not in req:
        raise HostBuiltinError("operand 1 is missing required request parameters (method, url)")
    url, method = req["url"], req["method"]
    if not isinstance(url, str) or not isinstance(method, str):
        raise HostBuiltinError("operand 1 has invalid values for url or method")
    return url, method


def _check_config(config: Any) -> dict[Any, Any]:
    if not isinstance(config, dict):
        raise HostBuiltinError("operand 2 must be an object")
    if any(k not in config for k in _REQUIRED_CONFIG_KEYS):
        raise HostBuiltinError(
            f"operand 2 is missing AWS config parameters {_REQUIRED_CONFIG_KEYS}"
        )
    if any(not isinstance(config[k], str) for k in _REQUIRED_CONFIG_KEYS):
        raise HostBuiltinError("operand 2 has invalid values for required AWS config parameters")
    return config


def _timestamp(value: Any) -> datetime.datetime:
    # OPA takes the number's int64 form; a number written with a fraction or exponent has none.
    if isinstance(value, bool) or not isinstance(value, int) or not -_INT64 <= value < _INT64:
        raise HostBuiltinError("operand 3 could not convert time_ns value into a unix timestamp")
    seconds, _ns = divmod(value, 10**9)
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    return epoch + datetime.timedelta(seconds=seconds)


def _body(req: dict[Any, Any]) -> bytes:
    if "raw_body" in req:
        return _str_or_empty(req["raw_body"]).encode("utf-8", "surrogatepass")
    if "body" in req:
        return go_json_marshal(req["body"]).encode("utf-8", "surrogatepass")
    return b""


def _mac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()


def _signature(
    *, canonical: str, now: datetime.datetime, secret: str, region: str, service: str
) -> str:
    date = now.strftime("%Y%m%d")
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            now.strftime("%Y%m%dT%H%M%SZ"),
            f"{date}/{region}/{service}/aws4_request",
            hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest(),
        ]
    )
    key = _mac(("AWS4" + secret).encode("utf-8", "surrogatepass"), date)
    for part in (region, service, "aws4_request"):
        key = _mac(key, part)
    return hmac.new(key, to_sign.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def sign_req(req: Any, config: Any, time_ns: Any) -> dict[Any, Any]:
    """``providers.aws.sign_req(request, aws_config, time_ns)``: the request, signed (SigV4)."""
    if not isinstance(req, dict):
        raise HostBuiltinError("operand 1 must be an object")
    config = _check_config(config)
    now = _timestamp(time_ns)
    url, method = _check_request(req)
    headers_in = req.get("headers", {})
    if not isinstance(headers_in, dict):
        raise HostBuiltinError("headers must be an object")
    host, raw_path, query = parse_url(url)
    body = _body(req)
    headers = {_str_or_empty(k): _str_or_empty(v) for k, v in headers_in.items()}
    unsigned = config.get("disable_payload_signing", False)
    if not isinstance(unsigned, bool):
        raise HostBuiltinError("operand 2 has an invalid value for 'disable_payload_signing'")
    service, region = config["aws_service"], config["aws_region"]
    content_sha = _UNSIGNED_PAYLOAD if unsigned else hashlib.sha256(body).hexdigest()
    aws_headers = {"host": host, "x-amz-date": now.strftime("%Y%m%dT%H%M%SZ")}
    if service in ("s3", "glacier"):
        aws_headers["x-amz-content-sha256"] = content_sha
    token = _str_or_empty(config.get("aws_session_token"))
    if token:
        aws_headers["x-amz-security-token"] = token
    to_sign = dict(aws_headers)
    for k, v in headers.items():
        if k.lower() not in _IGNORED_HEADERS:
            to_sign[k.lower()] = v
    names = sorted(to_sign, key=lambda k: k.encode("utf-8", "surrogatepass"))
    canonical = "\n".join(
        [method, escaped_path(raw_path), query, *(f"{k}:{to_sign[k]}" for k in names), ""]
    )
    canonical += "\n" + ";".join(names) + "\n" + content_sha
    signature = _signature(
        canonical=canonical,
        now=now,
        secret=config["aws_secret_access_key"],
        region=region,
        service=service,
    )
    auth = (
        f"AWS4-HMAC-SHA256 Credential={config['aws_access_key']}/{now.strftime('%Y%m%d')}"
        f"/{region}/{service}/aws4_request,SignedHeaders={';'.join(names)},Signature={signature}"
    )
    signed: dict[Any, Any] = {**headers, "Authorization": auth, **aws_headers}
    return {**req, "headers": signed}
