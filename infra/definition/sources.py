"""Reading definition files: YAML with the line of every key, and the overlay merge.

A stack is `stacks/base.yaml` overlaid with `stacks/<env>.yaml` (and any `--overlay` files). The merge
rules, also in docs/stack-definition.md:

- mappings merge key by key, recursively (so a queue, a user or a vhost is changed by naming only the
  keys that differ);
- lists and scalars in the overlay replace the base's value whole (a worker pool's `queues`, `plugins`);
- a key set to `null` (`~`) in an overlay removes it from the result (drop a queue or a user in one env).

Every value remembers the file and line it came from, so findings point at the file that set it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

import yaml

from infra.definition.findings import DefinitionError, Finding

Location = tuple[str, int]  # (file as given, 1-based line)


@dataclass
class Source:
    """Plain data (dicts, lists, scalars) plus the location of every key path in it."""

    data: Any
    locations: dict[tuple, Location] = field(default_factory=dict)
    files: tuple[str, ...] = ()

    def where(self, path: tuple) -> Location:
        """Location of `path`, or of its nearest ancestor that has one (a missing key: its parent)."""
        for end in range(len(path), -1, -1):
            if path[:end] in self.locations:
                return self.locations[path[:end]]
        return (self.files[-1] if self.files else "<definition>", 1)


def display_name(path: str | FsPath) -> str:
    """The path relative to the working directory when it is below it: what a user typed or sees."""
    try:
        return str(FsPath(path).resolve().relative_to(FsPath.cwd().resolve()))
    except ValueError:
        return str(path)


def _error(file: str, line: int, path: tuple, message: str) -> DefinitionError:
    return DefinitionError([Finding(file, line, path, message)])


def _to_data(loader: yaml.SafeLoader, node: yaml.Node, file: str, path: tuple, locations: dict) -> Any:
    """Turn a composed YAML node into plain data, recording where each key path sits."""
    locations.setdefault(path, (file, node.start_mark.line + 1))
    if isinstance(node, yaml.MappingNode):
        explicit = sum(1 for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge")
        loader.flatten_mapping(node)  # YAML merge keys (`<<: *defaults`) become ordinary keys, first
        merged = len(node.value) - explicit  # ... which the file's own keys may override
        out: dict = {}
        explicit_keys: set = set()
        for index, (key_node, value_node) in enumerate(node.value):
            key = loader.construct_object(key_node) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                # YAML reads `yes:` as True and `1:` as 1: names must be strings, so say so.
                raise _error(file, key_node.start_mark.line + 1, path, f"key {key!r} must be a string (quote it)")
            if key in out and key in explicit_keys:
                raise _error(
                    file,
                    key_node.start_mark.line + 1,
                    path + (key,),
                    f"duplicate key {key!r} (first at line {locations[path + (key,)][1]})",
                )
            if index >= merged:
                explicit_keys.add(key)
            if key in out:  # a merged value overridden here: its lines go with it
                _drop_locations(locations, path + (key,))
            locations[path + (key,)] = (file, key_node.start_mark.line + 1)
            out[key] = _to_data(loader, value_node, file, path + (key,), locations)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_data(loader, item, file, path + (i,), locations) for i, item in enumerate(node.value)]
    return loader.construct_object(node)


def _yaml_error(name: str, exc: yaml.YAMLError) -> DefinitionError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = mark.line + 1 if mark else 1
    return _error(name, line, (), f"not valid YAML: {getattr(exc, 'problem', None) or exc}")


def load_file(path: str | FsPath) -> Source:
    """One definition file. Raises DefinitionError (with line) on unreadable or malformed YAML."""
    name = display_name(path)
    try:
        text = FsPath(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise _error(name, 1, (), f"cannot read the file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise _error(name, 1, (), f"not UTF-8 text: byte {exc.start} cannot be decoded") from None
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                raise _error(name, 1, (), "the file is empty: a definition must say at least its environment")
            if not isinstance(node, yaml.MappingNode):
                raise _error(name, node.start_mark.line + 1, (), "expected a mapping at the top of the file")
            locations: dict = {}
            data = _to_data(loader, node, name, (), locations)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:  # syntax, control characters, a timestamp that is not a date, ...
        raise _yaml_error(name, exc) from None
    except RecursionError:
        raise _error(name, 1, (), "nested too deeply (a recursive alias?)") from None
    return Source(data, locations, (name,))


def _drop_locations(locations: dict, path: tuple) -> None:
    for key in [k for k in locations if k[: len(path)] == path]:
        del locations[key]


def _merge_into(base: dict, over: dict, path: tuple, locations: dict, over_locations: dict) -> None:
    for key, value in over.items():
        sub = path + (key,)
        if value is None:
            base.pop(key, None)
            _drop_locations(locations, sub)
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            locations[sub] = over_locations[sub]
            _merge_into(base[key], value, sub, locations, over_locations)
        else:
            base[key] = value
            _drop_locations(locations, sub)
            locations.update({k: v for k, v in over_locations.items() if k[: len(sub)] == sub})


def merge(base: Source, overlay: Source) -> Source:
    """`overlay` laid over `base` by the rules in this module's docstring. Neither input is changed."""
    data = copy.deepcopy(base.data)
    locations = dict(base.locations)
    locations[()] = overlay.locations[()]  # a missing top-level key is the last file's to add
    _merge_into(data, overlay.data, (), locations, overlay.locations)
    return Source(data, locations, base.files + overlay.files)


def load_stack(stacks_dir: str | FsPath, env: str, overlays: tuple = ()) -> Source:
    """`base.yaml` + `<env>.yaml` (+ extra overlays, in order) from `stacks_dir`."""
    stacks_dir = FsPath(stacks_dir)
    env_file = stacks_dir / f"{env}.yaml"
    if not env_file.is_file():
        known = sorted(
            p.stem for p in stacks_dir.glob("*.yaml") if p.stem != "base" and not p.name.startswith("Pulumi.")
        )
        raise _error(str(env_file), 1, (), f"no stack {env!r}: expected one of {', '.join(known) or 'none'}")
    source = load_file(stacks_dir / "base.yaml")
    for path in (env_file, *overlays):
        source = merge(source, load_file(path))
    return source


def load_single(path: str | FsPath, overlays: tuple = ()) -> Source:
    """One definition file as it stands (no base), plus any explicit overlays."""
    source = load_file(path)
    for extra in overlays:
        source = merge(source, load_file(extra))
    return source
