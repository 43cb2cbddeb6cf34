"""The builtins this engine provides to OPA policies, by name (:data:`PROVIDED`).

``opa build -t wasm`` compiles most builtins into the module; the rest become
calls to the host (``opa_builtin0..4``) and the module lists them in its
``builtins()`` export. The engine refuses, at load, a module that needs one not
in :data:`PROVIDED`, naming it. The provided set (a test holds it to this list):

* time: ``time.now_ns``, ``time.parse_rfc3339_ns``, ``time.parse_duration_ns``,
  ``time.date``, ``time.clock``, ``time.weekday``, ``time.add_date``, ``time.diff``;
* strings: ``sprintf``, ``strings.count``, ``strings.any_prefix_match``;
* encodings: ``hex.encode``, ``hex.decode``, ``base64url.encode_no_pad``,
  ``urlquery.encode``, ``urlquery.decode``, ``urlquery.encode_object``;
* hashes: ``crypto.md5``, ``crypto.sha1``, ``crypto.sha256``,
  ``crypto.hmac.md5``, ``crypto.hmac.sha1``, ``crypto.hmac.sha256``,
  ``crypto.hmac.sha512``, ``crypto.hmac.equal``;
* ``semver.is_valid``, ``semver.compare``, ``numbers.range_step``, ``trace``;
* ported from OPA's Go (:mod:`hostmore`): ``units.parse``, ``units.parse_bytes``,
  ``object.subset``, ``strings.any_suffix_match``, ``indexof_n``, ``strings.split_n``,
  ``uuid.parse``,
  ``net.cidr_is_valid``, ``net.cidr_merge``, ``net.cidr_contains_matches``;
* GraphQL (:mod:`hostgraphql`, on graphql-core): ``graphql.parse_query``,
  ``graphql.parse_schema``, ``graphql.schema_is_valid``, ``graphql.is_valid``,
  ``graphql.parse``, ``graphql.parse_and_verify``;
* JWTs (:mod:`hostjwt`, on ``cryptography``): ``io.jwt.decode``, ``io.jwt.decode_verify``,
  ``io.jwt.verify_rs256``, ``io.jwt.verify_rs384``, ``io.jwt.verify_rs512``,
  ``io.jwt.verify_ps256``, ``io.jwt.verify_ps384``, ``io.jwt.verify_ps512``,
  ``io.jwt.verify_es256``, ``io.jwt.verify_es384``, ``io.jwt.verify_es512``,
  ``io.jwt.verify_eddsa``, ``io.jwt.verify_hs256``, ``io.jwt.verify_hs384``,
  ``io.jwt.verify_hs512``, ``io.jwt.encode_sign``, ``io.jwt.encode_sign_raw``;
* AWS and JSON/YAML (:mod:`hostaws`, :mod:`hostjson`): ``providers.aws.sign_req``,
  ``json.marshal_with_options``, ``json.patch``, ``yaml.marshal``, ``yaml.unmarshal``,
  ``yaml.is_valid``; JSON Schema (:mod:`hostschema`, gojsonschema's semantics):
  ``json.verify_schema``, ``json.match_schema``;
* X.509 and keys (:mod:`hostx509`, :mod:`hostx509keys`, on ``cryptography``):
  ``crypto.x509.parse_certificates``, ``crypto.x509.parse_and_verify_certificates``,
  ``crypto.x509.parse_and_verify_certificates_with_options``,
  ``crypto.x509.parse_certificate_request``, ``crypto.x509.parse_keypair``,
  ``crypto.x509.parse_rsa_private_key``, ``crypto.parse_private_keys``;
* regexes with Go's semantics (:mod:`hostregex`, on RE2): ``regex.replace``, ``regex.find_n``,
  ``regex.split``, ``regex.globs_match``, ``regex.template_match``;
* Go time layouts (:mod:`gotimelayout`): ``time.parse_ns``, ``time.format``;
* Go's ``net/url`` (:mod:`hosturi`): ``uri.parse``, ``uri.is_valid``;
* data-only Go templates (:mod:`hosttemplate`): ``strings.render_template``;
* :mod:`hostextra`: ``net.cidr_expand``, ``glob.quote_meta``, ``urlquery.decode_object``,
  ``graph.reachable_paths``,
  ``cast_array``, ``cast_set``, ``cast_string``, ``cast_boolean``, ``cast_null``,
  ``cast_object``.

A builtin that rejects its operands makes the call undefined
(:class:`BuiltinUndefined`); one that would exceed the evaluation's resources
fails the evaluation (:class:`BuiltinLimitError`). For policy authors (what is
refused, how the results differ from OPA): docs/wasm-engine.md ("Builtins").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from evaluator_sidecar.policy.engines.wasm import (
    gotime,
    gotimelayout,
    hostaws,
    hostextra,
    hostgraphql,
    hostjson,
    hostjwt,
    hostlib,
    hostmore,
    hostregex,
    hostschema,
    hosttemplate,
    hosturi,
    hostx509,
    hostx509keys,
)
from evaluator_sidecar.policy.engines.wasm.gofmt import GoFormatError, go_sprintf, sprintf_operand

__all__ = [
    "EXCLUDED",
    "PROVIDED",
    "Builtin",
    "BuiltinLimitError",
    "BuiltinUndefined",
    "CallContext",
    "call_builtin",
    "excluded_reasons",
    "missing_builtins",
]

log = logging.getLogger(__name__)


class BuiltinUndefined(Exception):
    """The builtin rejected its operands: the call is undefined (OPA's non-strict behaviour)."""


class BuiltinLimitError(Exception):
    """The builtin would exceed the evaluation's resources: the evaluation fails."""


class CallContext:
    """What builtins may know about the evaluation they run in."""

    __slots__ = ("max_items", "max_string_bytes", "now")

    def __init__(self, *, max_items: int, max_string_bytes: int) -> None:
        #: ``time.now_ns`` of the current evaluation, read on first use; None between evaluations.
        self.now: int | None = None
        self.max_items = max_items
        self.max_string_bytes = max_string_bytes

    def reset(self) -> None:
        """Called before each evaluation: ``time.now_ns`` is fixed per evaluation."""
        self.now = None

    def now_ns(self) -> int:
        if self.now is None:
            self.now = time.time_ns()
        return self.now


BuiltinFn = Callable[[list[Any], CallContext], Any]


@dataclass(frozen=True)
class Builtin:
    name: str
    arity: int
    fn: BuiltinFn


def _sprintf(args: list[Any], ctx: CallContext) -> str:
    fmt, operands = args
    if not isinstance(fmt, str) or not isinstance(operands, list):
        raise hostlib.HostBuiltinError("sprintf takes a format string and an array of operands")
    # Go caps widths at 1e6 itself; a smaller cap keeps one call within the memory cap.
    text = go_sprintf(
        fmt, [sprintf_operand(v) for v in operands], max_width=min(ctx.max_string_bytes, 1_000_000)
    )
    if len(text) > ctx.max_string_bytes:
        raise OverflowError("sprintf result is larger than the memory cap allows")
    return text


def _trace(args: list[Any], _ctx: CallContext) -> bool:
    log.debug("policy trace: %s", args[0])
    return True


def _one(fn: Callable[[Any], Any]) -> BuiltinFn:
    return lambda args, _ctx: fn(args[0])


def _two(fn: Callable[[Any, Any], Any]) -> BuiltinFn:
    return lambda args, _ctx: fn(args[0], args[1])


_TABLE: tuple[Builtin, ...] = (
    Builtin("time.now_ns", 0, lambda _args, ctx: ctx.now_ns()),
    Builtin("time.parse_rfc3339_ns", 1, _one(lambda v: gotime.parse_rfc3339_ns(hostlib_string(v)))),
    Builtin(
        "time.parse_duration_ns", 1, _one(lambda v: gotime.parse_duration_ns(hostlib_string(v)))
    ),
    Builtin("time.date", 1, _one(gotime.date)),
    Builtin("time.clock", 1, _one(gotime.clock)),
    Builtin("time.weekday", 1, _one(gotime.weekday)),
    Builtin("time.add_date", 4, lambda args, _ctx: gotime.add_date(*args)),
    Builtin("time.diff", 2, _two(gotime.diff)),
    Builtin("sprintf", 2, _sprintf),
    Builtin("strings.count", 2, _two(hostlib.strings_count)),
    Builtin("strings.any_prefix_match", 2, _two(hostlib.any_prefix_match)),
    Builtin("hex.encode", 1, _one(hostlib.hex_encode)),
    Builtin("hex.decode", 1, _one(hostlib.hex_decode)),
    Builtin("base64url.encode_no_pad", 1, _one(hostlib.base64url_encode_no_pad)),
    Builtin("urlquery.encode", 1, _one(hostlib.urlquery_encode)),
    Builtin("urlquery.decode", 1, _one(hostlib.urlquery_decode)),
    Builtin("urlquery.encode_object", 1, _one(hostlib.urlquery_encode_object)),
    Builtin("crypto.md5", 1, _one(hostlib.digest("md5"))),
    Builtin("crypto.sha1", 1, _one(hostlib.digest("sha1"))),
    Builtin("crypto.sha256", 1, _one(hostlib.digest("sha256"))),
    Builtin("crypto.hmac.md5", 2, _two(hostlib.hmac_digest("md5"))),
    Builtin("crypto.hmac.sha1", 2, _two(hostlib.hmac_digest("sha1"))),
    Builtin("crypto.hmac.sha256", 2, _two(hostlib.hmac_digest("sha256"))),
    Builtin("crypto.hmac.sha512", 2, _two(hostlib.hmac_digest("sha512"))),
    Builtin("crypto.hmac.equal", 2, _two(hostlib.hmac_equal)),
    Builtin("semver.is_valid", 1, _one(hostlib.semver_is_valid)),
    Builtin("semver.compare", 2, _two(hostlib.semver_compare)),
    Builtin(
        "numbers.range_step",
        3,
        lambda args, ctx: hostlib.range_step(*args, max_items=ctx.max_items),
    ),
    Builtin("trace", 1, _trace),
    Builtin("units.parse", 1, _one(hostmore.units_parse)),
    Builtin("units.parse_bytes", 1, _one(hostmore.units_parse_bytes)),
    Builtin("object.subset", 2, _two(hostmore.object_subset)),
    Builtin("strings.any_suffix_match", 2, _two(hostmore.any_suffix_match)),
    Builtin("indexof_n", 2, _two(hostmore.indexof_n)),
    Builtin("strings.split_n", 3, lambda args, _ctx: hostmore.split_n(*args)),
    Builtin("uuid.parse", 1, _one(hostmore.uuid_parse)),
    Builtin("net.cidr_is_valid", 1, _one(hostmore.cidr_is_valid)),
    Builtin("net.cidr_merge", 1, _one(hostmore.cidr_merge)),
    Builtin("net.cidr_contains_matches", 2, _two(hostmore.cidr_contains_matches)),
    Builtin("graphql.parse_query", 1, _one(hostgraphql.parse_query)),
    Builtin("graphql.parse_schema", 1, _one(hostgraphql.parse_schema)),
    Builtin("graphql.schema_is_valid", 1, _one(hostgraphql.schema_is_valid)),
    Builtin("graphql.is_valid", 2, _two(hostgraphql.is_valid)),
    Builtin("graphql.parse", 2, _two(hostgraphql.parse_with_schema)),
    Builtin("graphql.parse_and_verify", 2, _two(hostgraphql.parse_and_verify)),
    Builtin("io.jwt.decode", 1, _one(hostjwt.decode)),
    Builtin(
        "io.jwt.decode_verify",
        2,
        lambda args, ctx: hostjwt.decode_verify(args[0], args[1], ctx.now_ns()),
    ),
    *(
        Builtin(f"io.jwt.verify_{alg.lower()}", 2, _two(hostjwt.verify_asymmetric(alg)))
        for alg in (*(f"{f}{n}" for f in ("RS", "PS", "ES") for n in (256, 384, 512)), "EdDSA")
    ),
    *(Builtin(f"io.jwt.verify_hs{n}", 2, _two(hostjwt.verify_hs(str(n)))) for n in (256, 384, 512)),
    Builtin("io.jwt.encode_sign", 3, lambda args, _ctx: hostjwt.encode_sign(*args)),
    Builtin("io.jwt.encode_sign_raw", 3, lambda args, _ctx: hostjwt.encode_sign_raw(*args)),
    # -- AWS signing, JSON/YAML (hostaws, hostjson) --
    Builtin("providers.aws.sign_req", 3, lambda args, _ctx: hostaws.sign_req(*args)),
    Builtin("json.marshal_with_options", 2, _two(hostjson.marshal_with_options)),
    Builtin("json.patch", 2, _two(hostjson.json_patch)),
    Builtin("json.verify_schema", 1, _one(hostschema.verify_schema)),
    Builtin("json.match_schema", 2, _two(hostschema.match_schema)),
    Builtin("yaml.marshal", 1, _one(hostjson.yaml_marshal)),
    Builtin("yaml.unmarshal", 1, _one(hostjson.yaml_unmarshal)),
    Builtin("yaml.is_valid", 1, _one(hostjson.yaml_is_valid)),
    Builtin("crypto.x509.parse_certificates", 1, _one(hostx509.parse_certificates)),
    Builtin(
        "crypto.x509.parse_and_verify_certificates",
        1,
        _one(hostx509.parse_and_verify_certificates),
    ),
    Builtin(
        "crypto.x509.parse_and_verify_certificates_with_options",
        2,
        _two(hostx509.parse_and_verify_certificates_with_options),
    ),
    Builtin(
        "crypto.x509.parse_certificate_request", 1, _one(hostx509keys.parse_certificate_request)
    ),
    Builtin("crypto.x509.parse_keypair", 2, _two(hostx509keys.parse_keypair)),
    Builtin("crypto.x509.parse_rsa_private_key", 1, _one(hostx509keys.parse_rsa_private_key)),
    Builtin("crypto.parse_private_keys", 1, _one(hostx509keys.parse_private_keys)),
    # Regexes (RE2 with Go's match walking), layouts of Go's time package, CIDR expansion,
    # glob quoting, query objects and v0's casts: hostregex, gotimelayout, hostextra.
    Builtin(
        "regex.replace",
        3,
        lambda args, ctx: hostregex.regex_replace(*args, max_bytes=ctx.max_string_bytes),
    ),
    Builtin("regex.find_n", 3, lambda args, _ctx: hostregex.find_n(*args)),
    Builtin("regex.split", 2, _two(hostregex.regex_split)),
    Builtin("regex.globs_match", 2, _two(hostregex.globs_match)),
    Builtin("regex.template_match", 4, lambda args, _ctx: hostregex.template_match(*args)),
    Builtin("time.parse_ns", 2, _two(gotimelayout.time_parse_ns)),
    Builtin("time.format", 1, _one(gotimelayout.time_format)),
    Builtin(
        "net.cidr_expand",
        1,
        lambda args, ctx: hostextra.cidr_expand(args[0], max_items=ctx.max_items),
    ),
    Builtin("glob.quote_meta", 1, _one(hostextra.glob_quote_meta)),
    Builtin(
        "graph.reachable_paths",
        2,
        lambda args, ctx: hostextra.reachable_paths(*args, max_items=ctx.max_items),
    ),
    Builtin("urlquery.decode_object", 1, _one(hostextra.urlquery_decode_object)),
    Builtin("uri.parse", 1, _one(hosturi.uri_parse)),
    Builtin("uri.is_valid", 1, _one(hosturi.uri_is_valid)),
    Builtin("strings.render_template", 2, _two(hosttemplate.render_template)),
    Builtin("cast_array", 1, _one(hostextra.cast_array)),
    Builtin("cast_set", 1, _one(hostextra.cast_set)),
    Builtin("cast_string", 1, _one(hostextra.cast_string)),
    Builtin("cast_boolean", 1, _one(hostextra.cast_boolean)),
    Builtin("cast_null", 1, _one(hostextra.cast_null)),
    Builtin("cast_object", 1, _one(hostextra.cast_object)),
)


def hostlib_string(value: Any) -> str:
    if not isinstance(value, str):
        raise hostlib.HostBuiltinError("operand 1 must be a string")
    return value


#: name -> builtin, for every builtin this engine provides.
PROVIDED: dict[str, Builtin] = {b.name: b for b in _TABLE}


#: Builtins left out on purpose, with why: a policy needing one is refused at load saying so.
EXCLUDED: dict[str, str] = {
    "http.send": "it reaches the network; an evaluation must depend only on its input and data",
    "net.lookup_ip_addr": "it reaches the network (DNS); an evaluation must not",
    "opa.runtime": "it exposes the host process's environment and configuration",
    "rand.intn": "it makes the decision random; evaluations must be reproducible",
    "time.now_ns_remote": "it reaches the network",
    "uuid.rfc4122": "it makes the decision random; evaluations must be reproducible",
}


def excluded_reasons(names: list[str]) -> list[str]:
    """``name (why)`` for each of ``names`` left out on purpose, in order."""
    return [f"{n} ({EXCLUDED[n]})" for n in names if n in EXCLUDED]


def missing_builtins(required: dict[str, int]) -> list[str]:
    """The names in a module's ``builtins()`` map that this engine does not provide, sorted."""
    return sorted(name for name in required if name not in PROVIDED)


def call_builtin(builtin: Builtin, args: list[Any], ctx: CallContext) -> Any:
    """Run one builtin; map operand errors to :class:`BuiltinUndefined`, size errors to limits."""
    if len(args) != builtin.arity:
        raise BuiltinUndefined(f"{builtin.name} takes {builtin.arity} operand(s), got {len(args)}")
    try:
        return builtin.fn(args, ctx)
    except OverflowError as exc:
        raise BuiltinLimitError(f"{builtin.name}: {exc}") from exc
    except (
        hostlib.HostBuiltinError,
        gotime.GoTimeError,
        GoFormatError,
        ValueError,
        TypeError,
    ) as exc:
        raise BuiltinUndefined(f"{builtin.name}: {exc}") from exc
