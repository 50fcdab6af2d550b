"""What every command-line program shares: absl flags made from a settings dataclass, and
one-line errors for bad input.

A settings dataclass names each field's help text and allowed values once (`setting`);
`define_flags` turns its fields (and those of nested settings, `nested`) into absl flags,
`from_flags` builds the dataclass back from parsed flags, and `to_argv` writes the flags
that reproduce a value (the sweep launcher's per-run command lines).
"""
import contextlib
import dataclasses
import re
import shutil
import sys
import textwrap
import weakref

from absl import app, flags

_KINDS = {bool: "boolean", int: "integer", float: "float", str: "string"}


def setting(default, help, choices=None, item=None, group=None):
    """A dataclass field with its flag's help text (its first sentence is the one line of --help), its
    allowed values (a registry's names), for tuples the type of an item, and its heading in --help (by
    default its dataclass's `help_group`)."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices, "item": item,
                                                        "group": group})


def nested(cls, prefix=""):
    """A field holding another settings dataclass; its fields become flags of their own names
    (with `prefix` in front, e.g. "eval_" where two programs' settings share names)."""
    return dataclasses.field(default_factory=cls, metadata={"nested": cls, "prefix": prefix})


def _fields(cls):
    """(field, nested class or None) for every field that is a flag, in order (fields made
    without `setting`, such as a value derived from the data, are not flags)."""
    return [(f, f.metadata.get("nested")) for f in dataclasses.fields(cls)
            if "help" in f.metadata or "nested" in f.metadata]


# The heading of each of a program's own flags in its --help (flags without one, absl's and
# TensorFlow's, are left to --helpfull).
_GROUPS = weakref.WeakKeyDictionary()


def define(kind, name, default, help, flag_values=flags.FLAGS, group="flags", **kwargs):
    """flags.DEFINE_<kind> for a flag that the program's --help lists under `group`."""
    getattr(flags, f"DEFINE_{kind}")(name=name, default=default, help=help, flag_values=flag_values, **kwargs)
    _GROUPS[flag_values[name]] = group


def define_flags(cls, flag_values=flags.FLAGS, prefix=""):
    """Defines one absl flag per field of `cls` (nested settings flattened), named prefix + field name."""
    defaults = cls()
    for field, inner in _fields(cls):
        if inner is not None:
            define_flags(inner, flag_values, prefix + field.metadata["prefix"])
            continue
        name, meta = prefix + field.name, field.metadata
        group = meta.get("group") or getattr(cls, "help_group", "flags")
        default = getattr(defaults, field.name) if field.default is dataclasses.MISSING else field.default
        if meta.get("choices") is not None:
            define("enum", name, default, meta["help"], flag_values, group, enum_values=list(meta["choices"]))
        elif isinstance(default, tuple):
            define("list", name, [str(v) for v in default], meta["help"], flag_values, group)
        else:
            define(_KINDS[type(default)], name, default, meta["help"], flag_values, group)


def build(cls, **settings):
    """`cls` from flat settings named like its flags (nested settings' fields included), e.g.
    build(TrainConfig, dataset="digits", latent_dims=(8, 4)); unnamed settings keep their defaults."""
    values, unknown = {}, dict(settings)
    for field, inner in _fields(cls):
        if inner is not None:
            prefix = field.metadata["prefix"]
            names = {prefix + name for name, _ in _flat_fields(inner)}
            values[field.name] = build(inner, **{k[len(prefix):]: unknown.pop(k) for k in list(unknown) if k in names})
        elif field.name in unknown:
            values[field.name] = unknown.pop(field.name)
    if unknown:
        raise ValueError(f"unknown settings {', '.join(sorted(unknown))} for {cls.__name__}")
    return cls(**values)


def _flat_fields(cls):
    """(flag name without the caller's prefix, field) of every flag of `cls`, nested settings included."""
    out = []
    for field, inner in _fields(cls):
        if inner is None:
            out.append((field.name, field))
        else:
            out += [(field.metadata["prefix"] + name, f) for name, f in _flat_fields(inner)]
    return out


def from_flags(cls, flag_values=flags.FLAGS, prefix=""):
    """The settings `cls` from parsed flags; ValueError (one line) for a bad list or value."""
    values = {}
    for name, field in _flat_fields(cls):
        value = flag_values[prefix + name].value
        item = field.metadata.get("item")
        if item is not None:
            try:
                value = tuple(item(v) for v in value)
            except ValueError:
                raise ValueError(f"--{prefix}{name} must be a comma-separated list of {item.__name__} "
                                 f"values (got {','.join(value)})") from None
        values[name] = value
    return build(cls, **values)


def to_argv(value, prefix="", only_changed=True):
    """Flags (`--name=value`) that rebuild the settings `value` with from_flags; with only_changed,
    only fields that differ from their flags' defaults. Those are the declared defaults, not the values
    they resolve to (-1 = "the paper's" warm-up, 0 = "the data set's" sigma): a resolved value is
    written out, so that parsing it again cannot resolve it differently (a conditional model's warm-up)."""
    argv = []
    for field, inner in _fields(type(value)):
        current = getattr(value, field.name)
        if inner is not None:
            argv += to_argv(current, prefix + field.metadata["prefix"], only_changed)
        elif not only_changed or current != field.default:
            if isinstance(current, tuple):
                current = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in current)
            elif isinstance(current, bool):
                current = str(current).lower()
            argv.append(f"--{prefix}{field.name}={current}")
    return argv


@contextlib.contextmanager
def one_line_errors(errors=(ValueError, OSError), status=2):
    """Bad input (ValueError, OSError) inside the block ends the program with `error: ...` on one
    line and exit status 2, no traceback. Errors outside the block keep their traceback. (Failures
    during the work, such as a diverged training or a full disk, use other `errors` and status 1.)"""
    try:
        yield
    except errors as e:
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"error: {message}", file=sys.stderr)
        sys.exit(status)


HELP_FLAGS = ("--help", "-help", "-h", "-?", "--helpshort", "-helpshort")


def _one_line(flag):
    """A flag's meaning in one line: the first sentence of its help (without the "<a|b>: " that absl puts
    before an enum's), and an enum's values."""
    text = re.sub(r"^<[^>]*>:\s*", "", " ".join(flag.help.split()))
    first = re.split(r"(?<=\.)\s+", text, maxsplit=1)[0]
    values = getattr(flag.parser, "enum_values", None)
    return first + (f" One of: {', '.join(values)}." if values else "")


def _shown(flag):
    if isinstance(flag.default, bool):
        return str(flag.default).lower()
    if isinstance(flag.default, list):
        return ",".join(flag.default) or "''"
    return "''" if flag.default in ("", None) else str(flag.default)


def help_text(flag_values, doc=""):
    """The program's --help: its docstring's title and usage, then each of its own flags (those defined with `define`,
    grouped under their headings) with its default and the first sentence of its help."""
    groups = {}
    for name in flag_values:
        flag = flag_values[name]
        if name == flag.name and flag in _GROUPS:  # once per flag, not again under a short name
            groups.setdefault(_GROUPS[flag], []).append(flag)
    width = max(80, min(shutil.get_terminal_size().columns, 140))
    lines = ["\n\n".join(doc.strip("\n").split("\n\n")[:2]), ""] if doc and doc.strip() else []  # title, usage
    for group, members in groups.items():
        lines.append(f"{group}:")
        for flag in members:
            lines += textwrap.wrap(f"--{flag.name}={_shown(flag)}  {_one_line(flag)}", width, initial_indent="  ",
                                   subsequent_indent="      ", break_on_hyphens=False)
        lines.append("")
    lines.append("The full help of every flag, absl's and TensorFlow's included: --helpfull.")
    return "\n".join(lines)


def _parse_flags(flag_values, argv, doc=""):
    """Parses argv into flag_values; --help prints help_text (exit 0), a bad flag one line (exit 2)."""
    options = argv[1:argv.index("--")] if "--" in argv else argv[1:]
    if any(a in HELP_FLAGS for a in options):
        print(help_text(flag_values, doc))
        sys.exit(0)
    try:
        return flag_values(argv)
    except flags.Error as e:
        print(f"error: {' '.join(str(e).split())}; see --help", file=sys.stderr)
        sys.exit(2)


def run(define, main, doc=None):
    """Runs a program: define(flag_values) defines its flags, main(flag_values) does its work.
    absl's app.run, but a flag that cannot be parsed is reported in one line (exit 2) and --help lists the
    program's own flags under the docstring `doc` (by default main's module's)."""
    import hvae_repr
    hvae_repr.PROGRAM = True  # TensorFlow then loads without Keras' extras (hvae_repr.tf_env)
    define(flags.FLAGS)
    if doc is None:
        doc = getattr(sys.modules.get(main.__module__), "__doc__", "") or ""
    app.run(lambda argv: main(flags.FLAGS), flags_parser=lambda argv: _parse_flags(flags.FLAGS, argv, doc))
