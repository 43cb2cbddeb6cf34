"""AWS signing, JSON/YAML and X.509 host builtins match OPA's Go ones (values from OPA v1.22.2)."""

from __future__ import annotations

import base64
import datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from evaluator_sidecar.policy.engines.wasm import hostaws, hostjson, hostx509, hostx509keys
from evaluator_sidecar.policy.engines.wasm.builtins import PROVIDED, CallContext, call_builtin
from evaluator_sidecar.policy.engines.wasm.hostlib import HostBuiltinError
from evaluator_sidecar.policy.engines.wasm.values import RegoFloat, RegoSet

AWS_CONFIG = {
    "aws_access_key": "MYAWSACCESSKEYGOESHERE",
    "aws_secret_access_key": "MYAWSSECRETACCESSKEYGOESHERE",
    "aws_service": "s3",
    "aws_region": "us-east-1",
}
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
T = 1451311705000000000  # 2015-12-28T14:08:25Z, as in OPA's own cases


class TestAwsSignReq:
    def test_a_get_without_body_is_signed_as_opa_signs_it(self) -> None:
        signed = hostaws.sign_req({"method": "get", "url": "http://example.com"}, AWS_CONFIG, T)
        assert signed["headers"] == {
            "Authorization": "AWS4-HMAC-SHA256 Credential=MYAWSACCESSKEYGOESHERE/20151228/"
            "us-east-1/s3/aws4_request,SignedHeaders=host;x-amz-content-sha256;x-amz-date,"
            "Signature=0047a7016c81e5c7f29cd522f97e911e04fc472fced0aee7916cbc287ad6c8e3",
            "host": "example.com",
            "x-amz-content-sha256": EMPTY_SHA256,
            "x-amz-date": "20151228T140825Z",
        }
        assert signed["method"] == "get"

    def test_request_headers_are_signed_and_kept(self) -> None:
        req = {"method": "get", "url": "http://example.com", "headers": {"foo": "bar"}}
        signed = hostaws.sign_req(req, AWS_CONFIG, T)
        assert signed["headers"]["foo"] == "bar"
        assert signed["headers"]["Authorization"].endswith(
            "SignedHeaders=foo;host;x-amz-content-sha256;x-amz-date,"
            "Signature=8f1dc7c9b9978356a0d0989fd26a95307f4f8a4aa264d8220647b7097d839952"
        )

    def test_a_body_is_hashed_as_go_marshals_it_and_sets_as_sorted_arrays(self) -> None:
        req = {
            "method": "get",
            "url": "http://example.com",
            "body": {"example": RegoSet([4, 1, 3, 2])},
        }
        signed = hostaws.sign_req(req, AWS_CONFIG, T)
        assert (
            signed["headers"]["x-amz-content-sha256"]
            == "bacff6243c850423883052ac3c336fd645994442933408dfd3f9e858e69bda07"
        )

    def test_services_other_than_s3_sign_no_content_header_and_tokens_are_signed(self) -> None:
        config = {**AWS_CONFIG, "aws_service": "sts", "aws_session_token": "TOK"}
        signed = hostaws.sign_req({"method": "GET", "url": "https://h/x?a=1"}, config, T)
        assert "x-amz-content-sha256" not in signed["headers"]
        assert signed["headers"]["x-amz-security-token"] == "TOK"
        assert (
            "SignedHeaders=host;x-amz-date;x-amz-security-token,"
            in signed["headers"]["Authorization"]
        )

    @pytest.mark.parametrize(
        ("req", "config", "time_ns"),
        [
            ({}, AWS_CONFIG, T),
            ({"method": "get", "url": "http://e", "nope": 1}, AWS_CONFIG, T),
            ({"method": 1, "url": "http://e"}, AWS_CONFIG, T),
            ({"method": "get", "url": "http://e"}, {"aws_service": "s3"}, T),
            ({"method": "get", "url": "http://e"}, {**AWS_CONFIG, "aws_region": 1}, T),
            ({"method": "get", "url": "http://e"}, AWS_CONFIG, RegoFloat("-1e9")),
            (
                {"method": "get", "url": "http://e"},
                {**AWS_CONFIG, "disable_payload_signing": "no"},
                T,
            ),
            ({"method": "get", "url": "http://e/%zz"}, AWS_CONFIG, T),
        ],
    )
    def test_operands_opa_rejects_are_undefined(self, req: Any, config: Any, time_ns: Any) -> None:
        with pytest.raises(HostBuiltinError):
            hostaws.sign_req(req, config, time_ns)

    @pytest.mark.parametrize(
        ("url", "host", "path", "query"),
        [
            ("http://example.com", "example.com", "", ""),
            ("https://u:p@h:8443/a%2Fb?x=1#f", "h:8443", "/a%2Fb", "x=1"),
            ("/relative?q", "", "/relative", "q"),
            ("mailto:x@y", "", "", ""),
        ],
    )
    def test_urls_are_read_as_go_reads_them(
        self, url: str, host: str, path: str, query: str
    ) -> None:
        got_host, raw_path, got_query = hostaws.parse_url(url)
        assert (got_host, hostaws.escaped_path(raw_path), got_query) == (host, path, query)

    def test_paths_go_would_not_write_as_given_are_escaped(self) -> None:
        assert hostaws.escaped_path("/a b/☃") == "/a%20b/%E2%98%83"
        assert hostaws.escaped_path("/x(1)!*") == "/x(1)!*"


class TestMarshalWithOptions:
    def test_pretty_by_default_when_an_indent_or_prefix_is_given(self) -> None:
        assert hostjson.marshal_with_options([1, {"b": 2, "a": "<"}], {"indent": "  "}) == (
            '[\n  1,\n  {\n    "a": "\\u003c",\n    "b": 2\n  }\n]'
        )
        assert hostjson.marshal_with_options([], {"indent": "    ", "prefix": "---"}) == "---[]"
        assert hostjson.marshal_with_options({"a": 1}, {"prefix": "P"}) == 'P{\nP\t"a": 1\nP}'

    def test_pretty_false_wins_and_an_empty_object_is_compact(self) -> None:
        assert hostjson.marshal_with_options([1, 2], {"pretty": False, "indent": "x"}) == "[1,2]"
        assert hostjson.marshal_with_options([1, 2], {}) == "[1,2]"

    @pytest.mark.parametrize("options", [{"bogus": True}, {"pretty": "yes"}, {"indent": 1}, []])
    def test_bad_options_are_undefined(self, options: Any) -> None:
        with pytest.raises(HostBuiltinError):
            hostjson.marshal_with_options([], options)


class TestJsonPatch:
    def test_rfc6902_operations(self) -> None:
        doc = {"a": {"b": [1, 2]}, "c/d": 1}
        ops = [
            {"op": "add", "path": "/a/b/-", "value": 3},
            {"op": "add", "path": "/a/b/0", "value": 0},
            {"op": "remove", "path": "/c~1d"},
            {"op": "copy", "from": "/a/b", "path": "/copy"},
            {"op": "move", "from": "/copy/0", "path": "/first"},
            {"op": "replace", "path": "/a", "value": "x"},
            {"op": "test", "path": "/first", "value": 0},
        ]
        assert hostjson.json_patch(doc, ops) == {"a": "x", "copy": [1, 2, 3], "first": 0}

    def test_sets_are_patched_by_element_and_paths_may_be_arrays(self) -> None:
        doc = {"foo": RegoSet(["a", "b"])}
        assert hostjson.json_patch(doc, [{"op": "add", "path": "foo/c", "value": "c"}]) == {
            "foo": RegoSet(["a", "b", "c"])
        }
        nested = RegoSet([[1]])
        assert hostjson.json_patch(
            nested, [{"op": "add", "path": [[1], 1], "value": 2}]
        ) == RegoSet([[1, 2]])

    @pytest.mark.parametrize(
        "ops",
        [
            [{"op": "add", "path": "foo/d", "value": "e"}],  # a set element must equal its key
            [{"op": "remove", "path": "/nope"}],
            [{"op": "add", "path": "/arr/01", "value": 1}],  # leading zeros
            [{"op": "add", "path": "/arr/5", "value": 1}],
            [{"op": "test", "path": "/arr/0", "value": 2}],
            [{"op": "frobnicate", "path": "/arr"}],
            [{"path": "/arr"}],
            [{"op": "remove", "path": ""}],
            "not an array",
        ],
    )
    def test_failed_patches_are_undefined(self, ops: Any) -> None:
        with pytest.raises(HostBuiltinError):
            hostjson.json_patch({"foo": RegoSet(["a"]), "arr": [1]}, ops)


class TestYaml:
    def test_unmarshal_reads_yaml_1_2_as_go_yaml_v3_and_the_first_document(self) -> None:
        text = "a: 1\nb: [1, 2.0, 1e3, yes, 2001-01-01, 0x1F, 0o17, ~, .5]\n---\nc: 2\n"
        assert hostjson.yaml_unmarshal(text) == {
            "a": 1,
            "b": [1, 2, 1000, "yes", "2001-01-01", 31, 15, None, 0.5],
        }

    def test_is_valid_needs_every_document_to_parse(self) -> None:
        assert hostjson.yaml_is_valid("a: 1\n---\nb: 2\n") is True
        assert hostjson.yaml_is_valid("a: 1\n---\n\tb: 2\n") is False
        assert hostjson.yaml_is_valid("  test:\ntest1: hello\n") is False
        assert hostjson.yaml_is_valid(1) is False
        with pytest.raises(HostBuiltinError):
            hostjson.yaml_unmarshal("[1,2,3")

    def test_marshal_writes_as_go_yaml_v3(self) -> None:
        value = {"foo": [1, RegoFloat("2.5"), "yes", "1", None], "b": "x: y", "c": "l1\nl2"}
        assert hostjson.yaml_marshal(value | {"d": RegoFloat("1e3"), "a10": 1, "a9": 2}) == (
            "a9: 2\na10: 1\nb: 'x: y'\nc: |-\n  l1\n  l2\nd: 1000\n"
            'foo:\n  - 1\n  - 2.5\n  - "yes"\n  - "1"\n  - null\n'
        )
        assert hostjson.yaml_marshal("plain") == "plain\n"
        assert hostjson.yaml_unmarshal(hostjson.yaml_marshal([{"foo": RegoSet([3, 1, 2])}])) == [
            {"foo": [1, 2, 3]}
        ]


# -- X.509 -------------------------------------------------------------------------------------
def _cert(
    key: Any, *, name: str, issuer_key: Any, issuer: str, ca: bool, path_length: int | None = None
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COUNTRY_NAME, "GB"),
                    x509.NameAttribute(NameOID.COMMON_NAME, name),
                ]
            )
        )
        .issuer_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COUNTRY_NAME, "GB"),
                    x509.NameAttribute(NameOID.COMMON_NAME, issuer),
                ]
            )
        )
        .public_key(key.public_key())
        .serial_number(12345)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
    )
    if not ca:
        sans = [x509.DNSName("leaf.example"), x509.UniformResourceIdentifier("spiffe://ex/w")]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def chain() -> tuple[list[x509.Certificate], Any]:
    root_key = ec.generate_private_key(ec.SECP256R1())
    mid_key = ec.generate_private_key(ec.SECP256R1())
    leaf_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    root = _cert(root_key, name="root", issuer_key=root_key, issuer="root", ca=True)
    mid = _cert(mid_key, name="mid", issuer_key=root_key, issuer="root", ca=True)
    leaf = _cert(leaf_key, name="leaf", issuer_key=mid_key, issuer="mid", ca=False)
    return [root, mid, leaf], leaf_key


def _pem(certs: list[x509.Certificate]) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


class TestX509:
    def test_certificates_are_shown_with_go_field_names_and_uri_strings(
        self, chain: tuple[list[x509.Certificate], Any]
    ) -> None:
        certs, _ = chain
        (leaf,) = hostx509.parse_certificates(_pem(certs[2:]))
        assert leaf["Subject"]["CommonName"] == "leaf"
        assert leaf["Subject"]["Country"] == ["GB"]
        assert leaf["Subject"]["Names"][0] == {"Type": [2, 5, 4, 6], "Value": "GB"}
        assert leaf["DNSNames"] == ["leaf.example"]
        assert leaf["URIStrings"] == ["spiffe://ex/w"]
        assert leaf["URIs"][0]["Scheme"] == "spiffe"
        assert leaf["ExtKeyUsage"] == [1]
        assert (leaf["SerialNumber"], leaf["Version"], leaf["PublicKeyAlgorithm"]) == (12345, 3, 1)
        assert leaf["SignatureAlgorithm"] == 10  # ECDSAWithSHA256: signed by the EC intermediate
        assert leaf["PublicKey"]["E"] == 65537
        assert base64.b64decode(leaf["Raw"]) == certs[2].public_bytes(serialization.Encoding.DER)

    def test_pem_base64_pem_and_base64_der_are_all_read(
        self, chain: tuple[list[x509.Certificate], Any]
    ) -> None:
        certs, _ = chain
        pem = _pem(certs)
        der = b"".join(c.public_bytes(serialization.Encoding.DER) for c in certs)
        for form in (pem, base64.b64encode(pem.encode()).decode(), base64.b64encode(der).decode()):
            assert [c["Subject"]["CommonName"] for c in hostx509.parse_certificates(form)] == [
                "root",
                "mid",
                "leaf",
            ]
        with pytest.raises(HostBuiltinError):
            hostx509.parse_certificates("not base64!")

    def test_a_chain_root_first_verifies_and_comes_back_leaf_first(
        self, chain: tuple[list[x509.Certificate], Any]
    ) -> None:
        certs, _ = chain
        valid, verified = hostx509.parse_and_verify_certificates(_pem(certs))
        assert valid is True
        assert [c["Subject"]["CommonName"] for c in verified] == ["leaf", "mid", "root"]
        assert hostx509.parse_and_verify_certificates(_pem([certs[0], certs[2]])) == [False, []]
        assert hostx509.parse_and_verify_certificates(_pem(certs[:1])) == [False, []]

    def test_options_name_the_host_usages_and_time_to_verify_for(
        self, chain: tuple[list[x509.Certificate], Any]
    ) -> None:
        certs, _ = chain
        verify = hostx509.parse_and_verify_certificates_with_options
        valid, verified = verify(_pem(certs), {"DNSName": "LEAF.example."})
        assert valid is True
        assert "URIStrings" not in verified[0]  # OPA returns plain x509.Certificates here
        assert verify(_pem(certs), {"DNSName": "other.example"}) == [False, []]
        assert verify(_pem(certs), {"KeyUsages": ["KeyUsageClientAuth"]}) == [False, []]
        assert verify(_pem(certs), {"KeyUsages": ["KeyUsageAny"]})[0] is True
        assert verify(_pem(certs), {"CurrentTime": 0}) == [False, []]
        with pytest.raises(HostBuiltinError):
            verify(_pem(certs), {"KeyUsages": ["Nope"]})
        assert verify("not certificates", {"KeyUsages": ["Nope"]}) == [False, []]

    def test_a_root_path_length_of_zero_allows_no_intermediate(self) -> None:
        root_key, mid_key = (
            ec.generate_private_key(ec.SECP256R1()),
            ec.generate_private_key(ec.SECP256R1()),
        )
        leaf_key = ec.generate_private_key(ec.SECP256R1())
        root = _cert(root_key, name="r", issuer_key=root_key, issuer="r", ca=True, path_length=0)
        mid = _cert(mid_key, name="m", issuer_key=root_key, issuer="r", ca=True)
        leaf = _cert(leaf_key, name="l", issuer_key=mid_key, issuer="m", ca=False)
        assert hostx509.parse_and_verify_certificates(_pem([root, mid, leaf])) == [False, []]

    def test_keypairs_csrs_and_private_keys(
        self, chain: tuple[list[x509.Certificate], Any]
    ) -> None:
        certs, leaf_key = chain
        key_pem = leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ).decode()
        pair = hostx509keys.parse_keypair(_pem(certs[2:]), key_pem)
        assert pair["Leaf"]["Subject"]["CommonName"] == "leaf"
        assert "URIStrings" not in pair["Leaf"]
        assert pair["PrivateKey"]["E"] == 65537
        with pytest.raises(HostBuiltinError):
            hostx509keys.parse_keypair(_pem(certs[:1]), key_pem)  # the key is not the cert's
        jwk = hostx509keys.parse_rsa_private_key(key_pem)
        assert (jwk["kty"], jwk["e"]) == ("RSA", "AQAB")
        assert len(hostx509keys.parse_private_keys(key_pem + key_pem)) == 2
        assert hostx509keys.parse_private_keys("nope") == []
        assert hostx509keys.parse_private_keys("") is None
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "req")]))
            .sign(leaf_key, hashes.SHA256())
        )
        parsed = hostx509keys.parse_certificate_request(
            csr.public_bytes(serialization.Encoding.PEM).decode()
        )
        assert (parsed["Subject"]["CommonName"], parsed["SignatureAlgorithm"]) == ("req", 4)


def test_the_builtins_are_registered_with_their_arity() -> None:
    context = CallContext(max_items=1000, max_string_bytes=10**6)
    assert PROVIDED["providers.aws.sign_req"].arity == 3
    assert PROVIDED["crypto.x509.parse_keypair"].arity == 2
    assert call_builtin(PROVIDED["yaml.is_valid"], ["a: 1"], context) is True
