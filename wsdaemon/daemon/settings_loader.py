"""Where settings come from: command line > ``WSDAEMON_*`` environment > config file > defaults.

Every source is derived from the one declaration in :class:`~wsdaemon.config.Settings`:
the field ``max_message_size`` is the option ``--max-message-size``, the
variable ``WSDAEMON_MAX_MESSAGE_SIZE`` and the key ``max_message_size`` of the
``[wsdaemon]`` section of the INI file given with ``--config``. All three are
converted and range-checked by the same click parameter type.

A :class:`SettingsSource` remembers the command-line and environment values, so
SIGHUP can read the file again and rebuild the settings with the same precedence.
"""

from __future__ import annotations

import configparser
import difflib
import os
import textwrap
from dataclasses import Field, dataclass, field
from typing import Any

import click
from click.core import ParameterSource

from ..settings import Settings, setting_fields
from .units import DURATION_HELP, SIZE_HELP, format_duration, format_size, parse_duration, parse_size

ENV_PREFIX = "WSDAEMON_"
SECTION = "wsdaemon"
#: The environment variable naming the config file (like ``--config``).
CONFIG_ENV = ENV_PREFIX + "CONFIG"


class SettingsError(Exception):
    """A config file, variable or value that cannot be used; the message says which and why."""


def env_var(f: Field) -> str:
    return ENV_PREFIX + f.name.upper()


def option_name(f: Field) -> str:
    return "--" + f.name.replace("_", "-")


def is_flag(f: Field) -> bool:
    return f.type in ("bool", bool)


class Number(click.ParamType):
    """A number in ``[minimum, maximum]``; the one parser of each kind (integer, size, duration)."""

    def __init__(self, kind: str, minimum: float | None = None, maximum: float | None = None) -> None:
        self.kind = kind
        self.name = kind
        self.minimum, self.maximum = minimum, maximum

    def parse(self, text: str) -> float:
        if self.kind == "bytes":
            return parse_size(text)
        if self.kind == "seconds":
            return parse_duration(text)
        try:
            return int(text.strip()) if self.kind == "integer" else float(text.strip())
        except ValueError:
            raise ValueError(f"{text!r} is not a valid {self.kind}") from None

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        if isinstance(value, str):
            try:
                value = self.parse(value)
            except ValueError as exc:
                self.fail(str(exc), param, ctx)
        lo, hi = self.minimum, self.maximum
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            shown = self.format(value)
            if lo is not None and hi is not None:
                bounds = f"{self.format(lo)}<=x<={self.format(hi)}"
            else:
                bounds = f"x>={self.format(lo)}" if lo is not None else f"x<={self.format(hi)}"
            self.fail(f"{shown} is not in the range {bounds}", param, ctx)
        return value

    def format(self, value: float) -> str:
        if self.kind == "bytes":
            return format_size(int(value))
        if self.kind == "seconds":
            return format_duration(value)
        return str(value)


def param_type(f: Field) -> click.ParamType:
    """The click type that converts and checks this setting, whatever its source."""
    meta = f.metadata
    if meta.get("choices"):
        return click.Choice(meta["choices"], case_sensitive=False)
    kind = f.type if isinstance(f.type, str) else f.type.__name__
    lo, hi = meta.get("minimum"), meta.get("maximum")
    if kind == "bool":
        return click.BOOL
    if meta.get("unit") in ("bytes", "seconds"):
        return Number(meta["unit"], lo, hi)
    if kind == "int":
        return Number("integer", lo, hi)
    if kind == "float":
        return Number("float", lo, hi)
    return click.STRING


def format_value(value: Any, f: Field | None = None) -> str:
    """The setting as the config file and the command line accept it: ``yes``, ``8M``, ``30s``."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    unit = f.metadata.get("unit") if f is not None else None
    if unit == "bytes":
        return format_size(value)
    if unit == "seconds":
        return format_duration(value)
    return str(value)


def convert(f: Field, raw: str) -> Any:
    """A string from a file or the environment turned into the setting's value (or SettingsError)."""
    try:
        return param_type(f).convert(raw.strip(), None, None)
    except click.BadParameter as exc:
        raise SettingsError(exc.message) from None


def _absolute(value: str, base: str) -> str:
    return os.path.normpath(os.path.join(base, os.path.expanduser(value))) if value else value


def read_config_file(path: str) -> dict[str, Any]:
    """The ``[wsdaemon]`` values of an INI file, converted; anything unknown is an error."""
    parser = configparser.ConfigParser(
        interpolation=None,
        inline_comment_prefixes=("#", ";"),
        default_section="\0",  # a literal [DEFAULT] is then just another (unknown) section
    )
    try:
        with open(path, encoding="utf-8") as fh:
            parser.read_file(fh)
    except OSError as exc:
        raise SettingsError(f"cannot read config file {path}: {exc.strerror}") from None
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise SettingsError(f"config file {path}: {exc}") from None
    others = [s for s in parser.sections() if s != SECTION]
    if others:
        raise SettingsError(
            f"config file {path}: unknown section [{others[0]}]; every key goes in [{SECTION}]"
        )
    if not parser.has_section(SECTION):
        return {}
    known = {f.name: f for f in setting_fields()}
    base = os.path.dirname(os.path.abspath(path))
    values: dict[str, Any] = {}
    for key, raw in parser.items(SECTION):
        name = key.replace("-", "_")
        f = known.get(name)
        if f is None:
            near = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise SettingsError(f"config file {path}: unknown key {key!r} in [{SECTION}]{hint}")
        if name in values:
            raise SettingsError(f"config file {path}: {name!r} is set twice")
        try:
            value = convert(f, raw)
        except SettingsError as exc:
            raise SettingsError(f"config file {path}: {key} = {raw!r}: {exc}") from None
        values[name] = _absolute(value, base) if f.metadata.get("path") else value
    return values


@dataclass
class SettingsSource:
    """Command-line and environment values plus a config file: builds :class:`Settings`."""

    config_path: str | None = None
    #: Values given on the command line or in the environment; they beat the file.
    overrides: dict[str, Any] = field(default_factory=dict)
    #: Where each override came from ("command line" or the variable's name).
    origins: dict[str, str] = field(default_factory=dict)

    def load(self) -> Settings:
        """Read the config file (again) and apply the overrides; raises SettingsError."""
        values = read_config_file(self.config_path) if self.config_path else {}
        values.update(self.overrides)
        return Settings(**values)

    def explain(self) -> list[tuple[Field, Any, str]]:
        """``(field, value, origin)`` for every setting, origin being where its value comes from."""
        from_file = read_config_file(self.config_path) if self.config_path else {}
        settings = self.load()
        rows = []
        for f in setting_fields():
            if f.name in self.overrides:
                origin = self.origins.get(f.name, "command line")
            elif f.name in from_file:
                origin = f"config file {self.config_path}"
            else:
                origin = "default"
            rows.append((f, getattr(settings, f.name), origin))
        return rows


def source_from_click(ctx: click.Context, options: dict[str, Any]) -> SettingsSource:
    """The settings source of a command: click already parsed the command line and environment."""
    cwd = os.getcwd()
    overrides: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for f in setting_fields():
        source = ctx.get_parameter_source(f.name)
        if source == ParameterSource.COMMANDLINE:
            origins[f.name] = "command line"
        elif source == ParameterSource.ENVIRONMENT:
            origins[f.name] = f"environment {env_var(f)}"
        else:
            continue
        value = options[f.name]
        overrides[f.name] = _absolute(value, cwd) if f.metadata.get("path") else value
    config = options.get("config")
    return SettingsSource(_absolute(config, cwd) if config else None, overrides, origins)


def sample_config() -> str:
    """The documented sample config file (``etc/wsdaemon.conf``), generated from the declarations."""
    lines = [
        "# wsdaemon configuration: wsdaemon start|run --config /etc/wsdaemon.conf",
        "#",
        "# Every key is a setting of `wsdaemon run --help`, with underscores for dashes.",
        "# Precedence: command line > environment (WSDAEMON_<KEY>, upper case) > this file",
        "# > the defaults shown here. Unknown keys and bad values stop the daemon at start.",
        "# SIGHUP (`wsdaemon reload`, `systemctl reload`) reads this file again; keys",
        "# marked 'restart' keep their running value until the next restart.",
        "# Booleans: yes/no, true/false, on/off, 1/0. Relative paths are relative to this file.",
        f"# Sizes: {SIZE_HELP}.",
        f"# Durations: {DURATION_HELP}.",
        "# Regenerate: wsdaemon show-config --sample > etc/wsdaemon.conf",
        "",
        f"[{SECTION}]",
    ]
    for f in setting_fields():
        meta = f.metadata
        help_text = meta.get("help") or ""
        notes = []
        if meta.get("choices"):
            notes.append("one of: " + ", ".join(meta["choices"]))
        if meta.get("restart"):
            notes.append("restart")
        if notes:
            help_text += f" ({'; '.join(notes)})"
        lines.append("")
        lines.extend(
            textwrap.wrap(help_text, 76, initial_indent="# ", subsequent_indent="# ", break_on_hyphens=False)
        )
        lines.append(f"#{f.name} = {format_value(f.default, f)}".rstrip())
    return "\n".join(lines) + "\n"
