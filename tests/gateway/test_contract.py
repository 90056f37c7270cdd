"""The contract module names every Redis key once: the Lua scripts, which build key names
inside Redis, use only prefixes that gateway/contract/keys.py defines, and every script
there documents its KEYS, ARGV and reply."""
import re

import pytest

from gateway.contract import keys
from gateway.contract.scripts import LUA, lua_source

PREFIXES = {value for name, value in vars(keys).items() if name.isupper() and isinstance(value, str)}
SCRIPTS = sorted(path.stem for path in LUA.glob("*.lua"))


def test_the_contract_defines_one_name_per_prefix():
    assert len(PREFIXES) == len([n for n in vars(keys) if n.isupper()])
    assert {"gw:key:", "gw:route:", "gw:lim:", "gw:use:", "gw:inflight:", "gw:rate:", "usage:events"} <= PREFIXES


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_use_only_the_contracts_key_names(script):
    source = lua_source(script)
    used = set(re.findall(r"'((?:gw|usage):[a-z]+:?)'", source))
    assert used <= PREFIXES, f"{script}.lua builds keys the contract does not name: {sorted(used - PREFIXES)}"


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_document_keys_argv_and_reply(script):
    header = "\n".join(line for line in lua_source(script).splitlines() if line.startswith("--"))
    assert "KEYS" in header and "ARGV" in header and "Reply" in header, f"{script}.lua's header"
