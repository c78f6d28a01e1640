"""Finding and checking the pipeline specs a deployment loads.

The built-in `pipelines/` folder and each folder of `$CT_PIPELINES_DIR` hold one sub-folder per
pipeline with its `spec.yaml` (`CT_BUILTIN_PIPELINES=0` leaves the built-in ones out). Across all
of them, pipeline names and serving ports must be unique: a clash is an error naming both specs.
`check_specs` is `ct spec check`: every problem of every spec, one message each, instead of
stopping at the first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ct_assets.lib.core import settings
from ct_assets.lib.core.ports import PORT_KEYS
from ct_assets.lib.core.spec import PipelineSpec, SpecError, load_spec

SPEC_FILE = "spec.yaml"


def spec_files(folder: Path) -> list[Path]:
    """`*/spec.yaml` under a folder of spec folders, sorted."""
    return sorted(Path(folder).glob(f"*/{SPEC_FILE}"))


def folders_without_spec(folder: Path) -> list[Path]:
    """Sub-folders of a folder of spec folders that hold no spec.yaml (hidden and `_` ones aside)."""
    return sorted(
        p
        for p in Path(folder).iterdir()
        if p.is_dir() and not p.name.startswith((".", "_")) and not (p / SPEC_FILE).is_file()
    )


def clashes(specs: list[PipelineSpec]) -> list[str]:
    """Pipeline names or serving ports used by two specs, one message per clash naming both."""
    problems: list[str] = []
    names: dict[str, PipelineSpec] = {}
    ports: dict[int, tuple[PipelineSpec, str]] = {}
    for spec in specs:
        here = spec.spec_dir / SPEC_FILE
        if spec.name in names:
            other = names[spec.name].spec_dir / SPEC_FILE
            problems.append(f"{here}: pipeline name {spec.name!r} is also used by {other}")
            continue
        names[spec.name] = spec
        for key in PORT_KEYS:
            port = getattr(spec.serving, key)
            if port in ports:
                other, other_key = ports[port]
                problems.append(
                    f"{here}: serving.{key} {port} of {spec.name!r} is also serving.{other_key} of "
                    f"{other.name!r} ({other.spec_dir / SPEC_FILE}); set other ports in one of them"
                )
            else:
                ports[port] = (spec, key)
    return problems


def load_specs(folders: list[Path]) -> list[PipelineSpec]:
    """Every spec under the folders, in folder then name order; the first problem raises SpecError."""
    specs = [load_spec(path) for folder in folders for path in spec_files(folder)]
    problems = clashes(specs)
    if problems:
        raise SpecError(problems[0])
    return specs


def discover_specs() -> list[PipelineSpec]:
    """The specs the code location loads: the built-in ones and those of `$CT_PIPELINES_DIR`."""
    return load_specs(settings.config().pipeline_dirs)


@dataclass
class CheckReport:
    """What `ct spec check` found: the specs that loaded, and one message per problem."""

    loaded: list[PipelineSpec] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _at(mark: yaml.Mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"


def _yaml_problem(file: Path, err: yaml.MarkedYAMLError) -> str:
    """A YAML parser's error on one line: the file, where the parser stopped, what it expected,
    and what it was parsing (from where)."""
    what = f"{file}: not valid YAML at {_at(err.problem_mark)}: {err.problem}"
    if err.context and err.context_mark is not None:
        return f"{what} ({err.context} from {_at(err.context_mark)})"
    return f"{what} ({err.context})" if err.context else what


def _problems_of(file: Path, err: SpecError) -> list[str]:
    """A SpecError's message split into one line per problem (each keeps the file's name)."""
    cause = err.__cause__
    if isinstance(cause, yaml.MarkedYAMLError) and cause.problem_mark is not None and cause.problem:
        return [_yaml_problem(file, cause)]
    text = " ".join(str(err).split())
    head, sep, rest = text.partition(": key '")
    if not sep:
        return [text]
    return [f"{head}: key '{part}" for part in re.split(r"; key '", rest)]


def check_specs(path: Path | None = None) -> CheckReport:
    """Check one spec (its file or folder), a folder of spec folders, or (no path) every folder
    loaded; a spec checked alone is also checked for clashes with the loaded ones."""
    report = CheckReport()
    if path is None:
        folders, files = settings.config().pipeline_dirs, []
    elif Path(path).is_file():
        folders, files = [], [Path(path)]
    elif (Path(path) / SPEC_FILE).is_file():
        folders, files = [], [Path(path) / SPEC_FILE]
    elif Path(path).is_dir():
        folders, files = [Path(path)], []
    else:
        report.problems.append(f"{path}: no such spec file or folder")
        return report
    for folder in folders:
        if not folder.is_dir():
            report.problems.append(f"{folder}: no such folder of pipeline specs")
            continue
        report.problems += [f"{f}: folder without a {SPEC_FILE}" for f in folders_without_spec(folder)]
        files += spec_files(folder)
    for file in files:
        try:
            report.loaded.append(load_spec(file))
        except SpecError as err:
            report.problems += _problems_of(file, err)
    report.problems += clashes(report.loaded)
    if path is not None and report.loaded:
        report.problems += _clashes_with_loaded(report.loaded)
    return report


def _clashes_with_loaded(checked: list[PipelineSpec]) -> list[str]:
    """Clashes of the checked specs with the deployment's other specs (their own files aside)."""
    mine = {(s.spec_dir / SPEC_FILE).resolve() for s in checked}
    others = []
    for folder in settings.config().pipeline_dirs:
        for file in spec_files(folder) if folder.is_dir() else []:
            if file.resolve() not in mine:
                try:
                    others.append(load_spec(file))
                except SpecError:
                    continue  # that spec's own problems are reported when it is checked
    named = {str(s.spec_dir / SPEC_FILE) for s in checked}
    return [p for p in clashes([*others, *checked]) if any(n in p for n in named)]
