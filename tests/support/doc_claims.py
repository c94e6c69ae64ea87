"""Checkers of what the README and docs/ show that the code determines: command lines, flags, worker queue
lists, exit statuses, make targets, `diff`'s classes. Each takes a page's text and what the code says, and
returns findings as `where:line: message` (none: the page agrees). tests/unit/test_docs_current.py runs
them over every page, and feeds them drifted snippets to prove that each one catches its kind of drift."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable, Iterator

import yaml

FENCE = re.compile(r"^\s*```")
INLINE = re.compile(r"`([^`\n]+)`")


def code_lines(text: str) -> Iterator[tuple[int, str, bool]]:
    """(line number, code, in a fence) for each fenced line and each inline code span of `text`."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            yield number, line, True
        else:
            for span in INLINE.findall(line):
                yield number, span, False


def fences(text: str) -> Iterator[tuple[int, str, str]]:
    """(first line number, language, body) of each fenced block."""
    lines, start, language, body = text.splitlines(), None, "", []
    for number, line in enumerate(lines, 1):
        if FENCE.match(line):
            if start is None:
                start, language, body = number + 1, line.strip().strip("`"), []
            else:
                yield start, language, "\n".join(body)
                start = None
        elif start is not None:
            body.append(line)


# -- `python -m infra …` and its subcommands


def options(parser: argparse.ArgumentParser) -> set[str]:
    return {o for action in parser._actions for o in action.option_strings}


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


COMMAND = re.compile(r"python3? -m (infra(?:\.[a-z_.]+)?)((?:\s+[^\s#|`]+)*)|(manage\.py)((?:\s+[^\s#|`]+)*)")
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")


def check_commands(text: str, where: str, parsers: dict[str, argparse.ArgumentParser]) -> list[str]:
    """Every `python -m <module> [sub] --flag` (and `manage.py <command> …`) names a module of `parsers`, a
    subcommand its parser has and flags that subcommand takes; and an inline `` `sub --flag` `` of
    `python -m infra`'s too."""
    found = []
    infra_subs = subcommands(parsers["infra"])
    bare = re.compile(rf"^({'|'.join(map(re.escape, infra_subs))})\s+(--.*)$")
    for number, code, _ in code_lines(text):
        calls = [(m.group(1) or m.group(3), (m.group(2) or m.group(4) or "").split()) for m in COMMAND.finditer(code)]
        if not calls and (m := bare.match(code.strip())):
            calls = [("infra", [m.group(1), *m.group(2).split()])]
        for module, words in calls:
            parser = parsers.get(module)
            if parser is None:
                found.append(f"{where}:{number}: `python -m {module}`: no such command (known: {', '.join(parsers)})")
                continue
            if words and words[0] in ("…", "..."):  # a placeholder for any subcommand
                continue
            said = [module]
            while subs := subcommands(parser):  # down the subcommands: `manage.py dead_letters list …`
                if not words or words[0].startswith("-"):
                    if len(said) == 1 and not set(words) & {"-h", "--help"}:
                        found.append(f"{where}:{number}: `{module}` without a subcommand")
                    break
                name = words[0].strip("[]").rstrip(":,.;)")
                if name not in subs:
                    found.append(
                        f"{where}:{number}: `{' '.join(said)} {name}`: no such subcommand (known: {', '.join(subs)})"
                    )
                    parser = None
                    break
                parser, words, said = subs[name], words[1:], [*said, name]
            if parser is None:
                continue
            takes = options(parser)
            chosen = [a for a in parser._actions if not a.option_strings and a.choices and a.dest != "help"]
            if chosen and words and re.fullmatch(r"[a-z][a-z0-9_-]*", words[0]) and words[0] not in chosen[0].choices:
                found.append(f"{where}:{number}: `{' '.join(said)} {words[0]}`: not one of {sorted(chosen[0].choices)}")
            for flag in FLAG.findall(" ".join(words)):
                if flag not in takes:
                    found.append(f"{where}:{number}: `{' '.join(said)}`: no option {flag}")
    return found


# -- worker command lines

QUEUES = re.compile(r"(?<!\S)-Q\s+([A-Za-z0-9_.,-]+)")


def example_pools(body: str) -> set[tuple[str, ...]]:
    """The worker pools' queue lists a YAML example defines itself (`celery.workers.<pool>.queues`)."""
    try:
        document = yaml.safe_load(body)
    except yaml.YAMLError:
        return set()
    workers = ((document or {}).get("celery") or {}).get("workers") if isinstance(document, dict) else None
    return {tuple(p["queues"]) for p in (workers or {}).values() if isinstance(p, dict) and "queues" in p}


def check_worker_queues(text: str, where: str, pools: set[tuple[str, ...]]) -> list[str]:
    """Every `-Q a,b,c` is exactly one worker pool's queue list, as the plan gives it (or, in a YAML example,
    one that example defines)."""
    own = [(start, start + body.count("\n") + 1, example_pools(body)) for start, _, body in fences(text)]
    found = []
    for number, code, _ in code_lines(text):
        local = {pool for start, end, defined in own if start <= number < end for pool in defined}
        for listed in QUEUES.findall(code):
            queues = tuple(listed.split(","))
            if queues not in pools | local:
                found.append(
                    f"{where}:{number}: -Q {listed}: no worker pool consumes exactly these queues "
                    f"(the plan's: {'; '.join(','.join(p) for p in sorted(pools))})"
                )
    return found


# -- make targets


def makefile_targets(makefile: str) -> set[str]:
    targets = set()
    for line in makefile.splitlines():
        if m := re.match(r"^([^\s#:=][^:=]*):(?!=)", line):
            targets.update(t for t in m.group(1).split() if not t.startswith("$"))
    return targets


def makefile_variables(makefile: str) -> set[str]:
    """The variables the Makefile reads: `$(NAME)`, `$(origin NAME)`, `$(filter …,$(NAME))`, and those it
    `export`s to its recipes' commands (which read them from the environment)."""
    read = set(re.findall(r"\$\((?:origin )?([A-Z_][A-Z0-9_]*)\)", makefile))
    return read | set(re.findall(r"^export\s+([A-Z_][A-Z0-9_]*)\s*$", makefile, re.MULTILINE))


MAKE_LINE = re.compile(r"(?<![\w-])make\s+([A-Za-z_][A-Za-z0-9_.-]*)((?:\s+[A-Z_][A-Z0-9_]*=\S*)*)")


def check_make_targets(text: str, where: str, targets: set[str], variables: set[str]) -> list[str]:
    """Every `make X [VAR=value]` in code (a fence or an inline span) is a target of the Makefile, and each
    VAR one it reads."""
    found = []
    for number, code, _ in code_lines(text):
        for m in MAKE_LINE.finditer(code):
            if m.group(1) not in targets:
                found.append(f"{where}:{number}: `make {m.group(1)}`: the Makefile has no such target")
            for name in re.findall(r"([A-Z_][A-Z0-9_]*)=", m.group(2)):
                if name not in variables:
                    found.append(f"{where}:{number}: `make {m.group(1)} {name}=…`: the Makefile reads no {name}")
    return found


# -- exit statuses and `diff`'s classes

EXIT = re.compile(r"\b[Ee]xit(?:s| status| code|s with)?:?\s+\**(\d+)\b")
SENTENCE_END = re.compile(r"[.;:!?]\s|\n\n")


def check_exit_codes(text: str, where: str, statuses: dict[int, str], classes: dict[str, set[int]]) -> list[str]:
    """Every `exit N` is a status of `ExitStatus`, and one said of a class of `diff` (`… data loss (exit 3)`,
    `exit 0 … migration`) is that class's exit status."""
    found = []
    class_names = re.compile("|".join(re.escape(c) for c in sorted(classes, key=len, reverse=True)))
    for m in EXIT.finditer(text):
        number = text.count("\n", 0, m.start()) + 1
        code = int(m.group(1))
        if code not in statuses:
            found.append(f"{where}:{number}: exit {code}: not an exit status (ExitStatus: {sorted(statuses)})")
            continue
        before = SENTENCE_END.split(text[max(0, m.start() - 80) : m.start()])[-1]
        named = class_names.findall(before)
        if named and code not in classes[named[-1]]:
            found.append(
                f"{where}:{number}: {named[-1]} … exit {code}: `diff` exits "
                f"{' or '.join(map(str, sorted(classes[named[-1]])))} for {named[-1]}"
            )
    return found


def check_class_claims(text: str, where: str, classes: Iterable[str]) -> list[str]:
    """What `diff` says of a change is written in one place (the generated table of its classes): a page
    that states it elsewhere (`` `diff` reports data loss ``) can drift from the code, so it links there."""
    names = "|".join(re.escape(c) for c in classes)
    claim = re.compile(
        rf"`?diff`?\s+(?:reports?|says|classif(?:y|ies)|calls)\s+(?:it\s+|this\s+|as\s+|an?\s+)*({names})"
    )
    return [
        f"{where}:{text.count(chr(10), 0, m.start()) + 1}: `diff` {m.group(1)}: say what `diff` does by linking to "
        f"its table of classes (docs/deploying.md#what-a-change-does), not in prose"
        for m in claim.finditer(text)
    ]
