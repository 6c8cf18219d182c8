"""Value rules shared by the spec models: each returns the value or raises ValueError with a
message that says what a valid value looks like (pydantic attaches the key path)."""

from __future__ import annotations

import ipaddress
import re
import uuid
from datetime import date

_SLUG = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
_ENDPOINT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*(-[A-Za-z0-9]+)*$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
_REGION = re.compile(r"^[a-z][a-z0-9]{2,30}$")
_ASSET_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}:[0-9]+$")
_PREFIX = re.compile(r"^[a-z][a-z0-9]{1,7}$")
_INSTALLATION = re.compile(r"^[a-z0-9]{4,8}$")

SLUG_MIN, SLUG_MAX = 3, 24
ENDPOINT_NAME_MIN, ENDPOINT_NAME_MAX = 3, 32


def slug(value: str) -> str:
    if not (SLUG_MIN <= len(value) <= SLUG_MAX) or not _SLUG.match(value):
        raise ValueError(
            f"'{value}' is not a valid id: use {SLUG_MIN}-{SLUG_MAX} lowercase letters, digits "
            "and single dashes, starting with a letter and not ending with a dash"
        )
    return value


def endpoint_name_problem(value: str) -> str | None:
    """Why ``value`` breaks Azure ML's endpoint naming rule, or None when it is valid."""
    if not (ENDPOINT_NAME_MIN <= len(value) <= ENDPOINT_NAME_MAX):
        return (
            f"endpoint name '{value}' has {len(value)} characters; Azure ML allows "
            f"{ENDPOINT_NAME_MIN}-{ENDPOINT_NAME_MAX}"
        )
    if not _ENDPOINT_NAME.match(value):
        return (
            f"endpoint name '{value}' must start with a letter and hold only letters, digits "
            "and single dashes (no leading, trailing or double dash)"
        )
    return None


def endpoint_name(value: str) -> str:
    problem = endpoint_name_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def group_object_id(value: str) -> str:
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        raise ValueError(f"'{value}' is not an Entra object id (a GUID)") from None
    return str(parsed)


def email(value: str) -> str:
    if not _EMAIL.match(value):
        raise ValueError(f"'{value}' is not an e-mail address")
    return value


def region(value: str) -> str:
    if not _REGION.match(value):
        raise ValueError(f"'{value}' is not an Azure region name such as 'westeurope'")
    return value


def name_prefix(value: str) -> str:
    if not _PREFIX.match(value):
        raise ValueError(
            f"'{value}' is not a valid prefix: use 2-8 lowercase letters and digits, starting "
            "with a letter (it is part of globally unique storage and registry names)"
        )
    return value


def installation_id(value: str) -> str:
    if not _INSTALLATION.match(value):
        raise ValueError(
            f"'{value}' is not a valid installation id: use 4-8 lowercase letters and digits, "
            'drawn once per installation (e.g. `python -c "import secrets; '
            'print(secrets.token_hex(3))"`); it makes globally unique names unique to it'
        )
    return value


def _network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"'{value}' is not a network address in CIDR form: {exc}") from None


def public_cidr(value: str) -> str:
    network = _network(value)
    # Storage firewall IP rules take public IPv4 addresses and ranges only (no private
    # ranges, no /31 or /32 prefixes): https://learn.microsoft.com/azure/storage/common/storage-network-security#grant-access-from-an-internet-ip-range
    if network.version != 4 or network.is_private or network.prefixlen > 30:
        raise ValueError(
            f"'{value}' must be a public IPv4 address range of at most /30 "
            "(storage firewalls take no private ranges, /31 or /32)"
        )
    return value


def asset_ref(value: str) -> str:
    if not _ASSET_REF.match(value):
        raise ValueError(f"'{value}' is not an asset reference of the form 'name:version'")
    return value


def first_of_month(value: date) -> date:
    if value.day != 1:
        raise ValueError(f"{value.isoformat()} is not the first day of a month (Azure budgets)")
    return value


def private_cidr(value: str) -> str:
    network = _network(value)
    if not network.is_private or network.version != 4:
        raise ValueError(f"'{value}' must be a private IPv4 range")
    if not 8 <= network.prefixlen <= 22:
        raise ValueError(f"'{value}' must be between /8 and /22 to hold the platform's subnets")
    return value


def ncrontab(value: str) -> str:
    """Azure Functions timer schedules use six NCRONTAB fields (seconds first)."""
    fields = value.split()
    if len(fields) != 6:
        raise ValueError(
            f"'{value}' is not an NCRONTAB schedule: Azure Functions expects six fields "
            "'{second} {minute} {hour} {day} {month} {day-of-week}'"
        )
    allowed = re.compile(r"^[0-9*/,\-A-Za-z]+$")
    for field in fields:
        if not allowed.match(field):
            raise ValueError(f"'{value}': field '{field}' is not valid NCRONTAB")
    return value
