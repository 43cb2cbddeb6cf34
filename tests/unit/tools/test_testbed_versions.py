"""The test bed reads promtool's version as the Prometheus release its pinned module is."""

from __future__ import annotations

from pkg_testbed.binaries import TOOLS, pinned_versions, prometheus_release


def test_module_versions_map_to_releases() -> None:
    assert prometheus_release("v0.316.0") == "3.16.0"
    assert prometheus_release("v0.305.1") == "3.5.1"
    assert prometheus_release("v0.300.0") == "3.0.0"


def test_a_promtool_of_the_pinned_major_release_is_accepted_and_an_older_one_is_not() -> None:
    promtool = TOOLS["promtool"]
    assert pinned_versions()["PROMETHEUS_VERSION"].startswith("v0.3")
    assert promtool.supports("3.16.0")
    assert promtool.supports("3.2.1")
    assert not promtool.supports("2.53.0")  # another major version
