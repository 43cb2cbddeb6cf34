"""The offline ``pkg`` CLI: eval, test and checksum, exit codes, and errors without tracebacks."""

# ruff: noqa: E501 - tables of cases read best one case per line

from __future__ import annotations

import base64
import hashlib
import io
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REFERENCE_SNAPSHOT, REPO, SAMPLE_SNAPSHOT

from evaluator_sidecar.cli import EXIT_FIXTURES_FAILED, EXIT_OK, EXIT_USAGE, main
from evaluator_sidecar.policy.resource import content_checksum, load_documents


def _run(*argv: str, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdin=io.StringIO(stdin), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def _write(tmp_path: Path, name: str, content: Any) -> str:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return str(path)


def _sample() -> dict[str, Any]:
    return load_documents(SAMPLE_SNAPSHOT.read_text())[0]  # type: ignore[no-any-return]


SEED_FACTS = {
    "tags": ["vip", "allergen"],
    "signals": {"x2": 0.8, "x6": 0.95},
    "context": {"domain": "hotel_ops", "task_type": "guest_request"},
}


# -- eval -----------------------------------------------------------------------------------


def test_eval_prints_the_result_as_json(tmp_path: Path) -> None:
    facts = _write(tmp_path, "facts.json", json.dumps(SEED_FACTS))
    code, out, err = _run("eval", str(SAMPLE_SNAPSHOT), "--facts", facts)
    assert (code, err) == (EXIT_OK, "")
    assert json.loads(out) == {
        "subtasks": [{"name": "escalate_vip", "type": "escalate", "params": {"level": "high"},
                      "rule_id": "rule-001", "rule_name": "high_priority_vip"}],
        "dag": [],
        "rules": [{"rule_id": "rule-001", "rule_name": "high_priority_vip", "rule_priority": 10,
                   "matched_conditions": 1, "emissions_count": 1}],
        "snapshot": "rules@1.4.0",
    }  # fmt: skip


def test_eval_reads_facts_from_stdin_and_prints_compact(tmp_path: Path) -> None:
    code, out, _ = _run(
        "eval", str(SAMPLE_SNAPSHOT), "--facts", "-", "--compact", stdin=json.dumps(SEED_FACTS)
    )
    assert code == EXIT_OK
    assert out.count("\n") == 1
    assert json.loads(out)["snapshot"] == "rules@1.4.0"


def test_eval_reads_the_snapshot_from_stdin(tmp_path: Path) -> None:
    facts = _write(tmp_path, "facts.json", "{}")
    code, out, _ = _run("eval", "-", "--facts", facts, stdin=SAMPLE_SNAPSHOT.read_text())
    assert code == EXIT_OK
    assert json.loads(out)["rules"] == []


@pytest.mark.parametrize(
    ("facts", "fragment"),
    [
        ("{not json", "pkg eval: error: task facts"),
        (
            '{"signals": {"x2": "high"}}',
            "pkg eval: error: invalid task facts: signals['x2'] must be a number",
        ),
        ('["vip"]', "pkg eval: error: invalid task facts: expected a JSON object"),
    ],
)
def test_eval_rejects_bad_facts_with_one_message(tmp_path: Path, facts: str, fragment: str) -> None:
    code, out, err = _run(
        "eval", str(SAMPLE_SNAPSHOT), "--facts", _write(tmp_path, "f.json", facts)
    )
    assert code == EXIT_USAGE
    assert out == ""
    assert err.startswith(fragment)
    assert "Traceback" not in err


def test_eval_cannot_take_both_from_stdin() -> None:
    code, _, err = _run("eval", "-", "--facts", "-")
    assert code == EXIT_USAGE
    assert "cannot both come from stdin" in err


# -- test -----------------------------------------------------------------------------------


def test_test_passes_the_sample_and_reference_snapshots() -> None:
    for path in (SAMPLE_SNAPSHOT, REFERENCE_SNAPSHOT):
        code, out, err = _run("test", str(path))
        assert (code, err) == (EXIT_OK, ""), out
        assert ", 0 failed, " in out.splitlines()[-1]
        assert "FAIL" not in out


def test_failing_fixture_exits_1_with_a_readable_diff(tmp_path: Path) -> None:
    resource = _sample()
    del resource["spec"]["checksum"]
    resource["spec"]["fixtures"] = [
        {
            "name": "expects-the-wrong-subtask",
            "input": SEED_FACTS,
            "expect": {"subtasks": ["escalate_manager"]},
        }
    ]
    code, out, err = _run("test", _write(tmp_path, "s.yaml", resource))
    assert (code, err) == (EXIT_FIXTURES_FAILED, "")
    assert out.splitlines() == [
        "snapshot rules@1.4.0 (native):",
        "FAIL  expects-the-wrong-subtask",
        "      subtasks:",
        '        expected: ["escalate_manager"]',
        '        got:      ["escalate_vip"]',
        "        - [0] expected name 'escalate_manager', got 'escalate_vip'",
        "0 passed, 1 failed, 1 total",
    ]


def test_test_json_report(tmp_path: Path) -> None:
    code, out, _ = _run("test", str(SAMPLE_SNAPSHOT), "--json")
    report = json.loads(out)
    assert code == EXIT_OK
    assert (report["failed"], report["total"]) == (0, report["passed"])


def test_test_without_fixtures_says_so(tmp_path: Path) -> None:
    resource = _sample()
    del resource["spec"]["checksum"], resource["spec"]["fixtures"]
    code, out, _ = _run("test", _write(tmp_path, "s.yaml", resource))
    assert code == EXIT_OK
    assert out == "snapshot rules@1.4.0: no fixtures to run (add spec.fixtures)\n"


def test_invalid_rules_exit_2_listing_every_problem(tmp_path: Path) -> None:
    resource = _sample()
    del resource["spec"]["checksum"]
    rule = resource["spec"]["rules"][0]
    rule["conditions"] = [
        {"condition_type": "TAG", "condition_key": "tags", "operator": "MATCHES", "value": "("}
    ]
    resource["spec"]["rules"][1]["rule_id"] = "rule-001"
    code, out, err = _run("test", _write(tmp_path, "s.yaml", resource))
    assert (code, out) == (EXIT_USAGE, "")
    assert err.startswith(
        "pkg test: error: snapshot 'rules@1.4.0' cannot be loaded (2 problem(s)):"
    )
    assert "rule 'rule-001' conditions[0].value: '(' is not a valid RE2 pattern" in err
    assert "rule 'rule-001': duplicate rule_id: rules[0] and rules[1] both use it" in err
    assert "Traceback" not in err


def test_checksum_mismatch_exits_2_naming_both(tmp_path: Path) -> None:
    resource = _sample()
    resource["spec"]["rules"][0]["priority"] = 11
    code, _, err = _run("test", _write(tmp_path, "s.yaml", resource))
    assert code == EXIT_USAGE
    assert "spec.checksum: declares" in err
    assert content_checksum(resource["spec"]) in err


# -- checksum -------------------------------------------------------------------------------


def test_checksum_prints_what_spec_checksum_expects() -> None:
    code, out, _ = _run("checksum", str(SAMPLE_SNAPSHOT))
    assert code == EXIT_OK
    declared = _sample()["spec"]["checksum"]
    assert f"sha256:{out.strip()}" == declared


def test_checksum_of_wasm_snapshot_from_a_file(tmp_path: Path) -> None:
    wasm = b"\x00asm\x01\x00\x00\x00"
    resource: dict[str, Any] = {
        "apiVersion": "pkg.seedcore.io/v1alpha1", "kind": "PolicySnapshot", "metadata": {"name": "p"},
        "spec": {"version": "policy@1.0.0", "env": "dev", "engine": "wasm",
                 "wasm": {"configMapRef": {"name": "policy", "key": "policy.wasm"}}},
    }  # fmt: skip
    path = _write(tmp_path, "w.yaml", resource)
    module = tmp_path / "policy.wasm"
    module.write_bytes(wasm)
    code, out, _ = _run("checksum", path, "--wasm-file", str(module))
    assert (code, out) == (EXIT_OK, hashlib.sha256(wasm).hexdigest() + "\n")
    code, _, err = _run("checksum", path)
    assert code == EXIT_USAGE
    assert "--wasm-file PATH" in err
    resource["spec"]["wasm"] = {"inline": base64.b64encode(wasm).decode()}
    code, out, _ = _run("checksum", _write(tmp_path, "i.yaml", resource))
    assert out.strip() == hashlib.sha256(wasm).hexdigest()


def test_checksum_of_a_malformed_resource_lists_its_problems(tmp_path: Path) -> None:
    resource = _sample()
    resource["spec"]["env"] = "qa"
    code, _, err = _run("checksum", _write(tmp_path, "s.yaml", resource))
    assert code == EXIT_USAGE
    assert (
        "is not a valid PolicySnapshot:\n  - spec.env: must be one of prod, staging, dev; got 'qa'"
        in err
    )


# -- usage errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (
            ["test", "/no/such/file.yaml"],
            "pkg test: error: cannot read snapshot file '/no/such/file.yaml'",
        ),
        (
            ["eval", str(SAMPLE_SNAPSHOT), "--facts", "/no/facts.json"],
            "cannot read task facts file",
        ),
        (["checksum", str(SAMPLE_SNAPSHOT), "--name", "other"], "no PolicySnapshot named 'other'"),
    ],
)
def test_user_mistakes_exit_2_with_one_line(argv: list[str], fragment: str) -> None:
    code, out, err = _run(*argv)
    assert (code, out) == (EXIT_USAGE, "")
    assert fragment in err
    assert err.count("\n") == 1


def test_bad_yaml_file(tmp_path: Path) -> None:
    code, _, err = _run("test", _write(tmp_path, "bad.yaml", "spec: [unclosed\n"))
    assert code == EXIT_USAGE
    assert "not valid YAML" in err


def test_argparse_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == EXIT_USAGE
    assert main(["eval", str(SAMPLE_SNAPSHOT)]) == EXIT_USAGE  # --facts is required
    assert main(["frobnicate"]) == EXIT_USAGE
    assert "usage: pkg" in capsys.readouterr().err
    assert main(["--help"]) == EXIT_OK
    epilog = " ".join(capsys.readouterr().out.split())
    assert (
        "Exit codes: 0 ok, 1 a fixture failed or a signature does not verify, 2 usage error or "
        "invalid input." in epilog
    )


def test_installed_console_script_runs(tmp_path: Path) -> None:
    script = REPO / ".venv" / "bin" / "pkg"
    done = subprocess.run(
        [str(script), "test", str(REFERENCE_SNAPSHOT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == EXIT_OK, done.stderr
    assert "0 failed" in done.stdout
    failing = _write(tmp_path, "f.json", '{"tags": "vip"}')
    done = subprocess.run(
        [str(script), "eval", str(SAMPLE_SNAPSHOT), "--facts", failing],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == EXIT_USAGE
    assert done.stderr.startswith("pkg eval: error: invalid task facts: tags must be a list")
    assert "Traceback" not in done.stderr


# -- keygen, sign, verify -------------------------------------------------------------------


def _keygen(tmp_path: Path, folder: str = "keys") -> tuple[str, Path]:
    code, out, err = _run("keygen", "--out", str(tmp_path / folder))
    assert (code, err) == (EXIT_OK, "")
    key_id = out.splitlines()[0]
    assert len(key_id) == 16
    return key_id, tmp_path / folder


def test_keygen_writes_a_private_and_a_public_key_named_by_the_key_id(tmp_path: Path) -> None:
    key_id, keys = _keygen(tmp_path)
    private, public = keys / f"{key_id}.key", keys / f"{key_id}.pub"
    assert private.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert private.stat().st_mode & 0o077 == 0


def test_sign_prints_the_file_with_spec_signature_and_verify_accepts_it(tmp_path: Path) -> None:
    key_id, keys = _keygen(tmp_path)
    code, out, err = _run("sign", str(SAMPLE_SNAPSHOT), "--key", str(keys / f"{key_id}.key"))
    assert (code, err) == (EXIT_OK, "")
    signature = load_documents(out)[0]["spec"]["signature"]
    assert signature["keyId"] == key_id
    assert signature["algorithm"] == "ed25519"
    assert len(base64.b64decode(signature["value"])) == 64
    signed = _write(tmp_path, "signed.yaml", out)
    code, out, err = _run("verify", signed, "--trusted", str(keys))
    assert (code, err) == (EXIT_OK, "")
    assert out.startswith("verified:")


def test_sign_in_place_and_verify_fails_once_content_changes(tmp_path: Path) -> None:
    key_id, keys = _keygen(tmp_path)
    path = _write(tmp_path, "s.yaml", _sample())
    code, out, _ = _run("sign", path, "--key", str(keys / f"{key_id}.key"), "-i")
    assert code == EXIT_OK
    assert key_id in out
    resource = load_documents(Path(path).read_text())[0]
    assert resource["spec"]["signature"]["keyId"] == key_id
    resource["spec"]["rules"][0]["priority"] = 99
    resource["spec"].pop("checksum", None)  # else the checksum mismatch is refused first
    tampered = _write(tmp_path, "tampered.yaml", resource)
    code, out, _ = _run("verify", tampered, "--trusted", str(keys))
    assert code == 1
    assert out.startswith("bad_signature:")
    resource = load_documents(Path(path).read_text())[0]
    resource["spec"]["version"] = "rules@9.9.9"
    replayed = _write(tmp_path, "replayed.yaml", resource)
    assert _run("verify", replayed, "--trusted", str(keys))[0] == 1


def test_verify_names_unsigned_and_unknown_keys(tmp_path: Path) -> None:
    key_id, keys = _keygen(tmp_path)
    other_id, other = _keygen(tmp_path, "other")
    code, out, _ = _run("verify", str(SAMPLE_SNAPSHOT), "--trusted", str(keys))
    assert code == 1
    assert out.startswith("unsigned:")
    assert "pkg sign" in out
    path = _write(tmp_path, "s.yaml", _sample())
    assert _run("sign", path, "--key", str(other / f"{other_id}.key"), "-i")[0] == EXIT_OK
    code, out, _ = _run("verify", path, "--trusted", str(keys))
    assert code == 1
    assert out.startswith("unknown_key:")
    assert key_id in out


def test_sign_and_verify_usage_errors(tmp_path: Path) -> None:
    key_id, keys = _keygen(tmp_path)
    code, _, err = _run("sign", str(SAMPLE_SNAPSHOT), "--key", str(keys / f"{key_id}.pub"))
    assert code == EXIT_USAGE
    assert "--key" in err
    code, _, err = _run("sign", "-", "--key", str(keys / f"{key_id}.key"), "-i")
    assert code == EXIT_USAGE
    code, _, err = _run("verify", str(SAMPLE_SNAPSHOT), "--trusted", str(tmp_path / "missing"))
    assert code == EXIT_USAGE
    assert "--trusted" in err
    (keys / "broken.pub").write_text("nope")
    code, _, err = _run("verify", str(SAMPLE_SNAPSHOT), "--trusted", str(keys))
    assert code == EXIT_USAGE
    assert "broken" in err
