"""Whose X-Forwarded-For a worker believes: FORWARDED_ALLOW_IPS, loopback by default, a warning for `*`."""

import logging

from cluster.worker import DEFAULT_FORWARDED_ALLOW_IPS, forwarded_allow_ips


def test_the_default_is_loopback_only():
    assert DEFAULT_FORWARDED_ALLOW_IPS == "127.0.0.1,::1"
    assert forwarded_allow_ips({}) == forwarded_allow_ips({"FORWARDED_ALLOW_IPS": " "}) == DEFAULT_FORWARDED_ALLOW_IPS


def test_a_list_is_passed_on_and_a_star_is_warned_about(caplog):
    with caplog.at_level(logging.WARNING, logger="scalecube.cluster"):
        assert (
            forwarded_allow_ips({"FORWARDED_ALLOW_IPS": "10.89.0.2/31,10.89.0.128/25"}) == "10.89.0.2/31,10.89.0.128/25"
        )
        assert not caplog.records
        assert forwarded_allow_ips({"FORWARDED_ALLOW_IPS": "10.0.0.1, *"}) == "10.0.0.1, *"
    assert "any client can choose" in caplog.text
