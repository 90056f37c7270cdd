"""Every Lua script the platform runs on Redis lives in lua/ beside this module, with its
KEYS, ARGV and reply documented in its header."""
from functools import cache
from pathlib import Path

LUA = Path(__file__).with_name("lua")


@cache
def lua_source(name: str) -> str:
    """The text of lua/<name>.lua."""
    return (LUA / f"{name}.lua").read_text()
