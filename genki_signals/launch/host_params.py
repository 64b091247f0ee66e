"""The params classes of a spec's ``hosts:`` section (fields: ``launch/hosts.py``).

In a module of their own so that checking a spec without ``hosts:`` (and the fork server's
preload) never builds them: a pydantic dataclass costs milliseconds to make.
"""

from __future__ import annotations

from dataclasses import field
from typing import Annotated, Literal

from genki_signals.launch.hosts import DEFAULT_PORTS
from genki_signals.params import Field, Int, Str, params

__all__ = ["HostKeysParams", "HostParams", "SshParams"]


@params
class SshParams:
    user: Annotated[Str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$",
                               description="a user name")] | None = None
    port: Annotated[Int, Field(ge=1, le=65535)] = 22
    identity: Annotated[Str, Field(min_length=1, description="a private key file")] | None = None
    options: tuple[Annotated[Str, Field(pattern=r"^[A-Za-z]+=.*$",
                                        description="an ssh option Name=value")], ...] = ()


@params
class HostKeysParams:
    public: Annotated[Str, Field(min_length=1, description="a public key file, name or Z85")]
    secret_file: Annotated[Str, Field(min_length=1, description="a .key_secret file")]


@params
class HostParams:
    address: Annotated[Str, Field(pattern=r"^[A-Za-z0-9_.:\[\]-]+$",
                                  description="an IP address or host name")]
    bind: Annotated[Str, Field(pattern=r"^[A-Za-z0-9_.:*\[\]-]+$",
                               description="an IP address, host name or *")] | None = None
    start: Literal["local", "ssh", "manual"] | None = None
    ssh: SshParams | None = None
    ports: Annotated[Int, Field(ge=1024, le=65000)] = DEFAULT_PORTS
    python: Annotated[Str, Field(min_length=1)] = "python3"
    workdir: Annotated[Str, Field(min_length=1)] | None = None
    env: dict[Annotated[Str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                                   description="an environment variable name")], Str] = \
        field(default_factory=dict)
    keys: HostKeysParams | None = None
