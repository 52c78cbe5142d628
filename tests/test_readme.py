"""README.md's code runs as written.

Every ```python block is executed in a temporary folder. Every command of every ```bash block,
and every inline `linkexit-fast ...` / `python benchmarks/...` span, is exercised by the rule of
its kind below; a command of no known kind fails the test, so nothing is skipped silently.

- ``linkexit-fast ...``: parsed by the CLI's own parser (a renamed option or command fails);
  commands listed in ``RUN`` are also run for real, in README order, in one temporary folder,
  after the ``TINY`` substitutions (which swap real datasets and long trainings for tiny ones).
  Everything else (``pareto``: trains a grid of models; ``demo``: a minute of training; commands
  on datasets without a tiny stand-in) is parse-only, and the test id says so.
- ``python benchmarks/X.py --opt ...`` (measurements, GPU scripts): the script exists and
  declares every ``--opt`` used.
- ``pytest PATH ...`` / ``python -m pytest PATH ...``: every PATH exists.
- ``pytest-benchmark compare A B``: the plugin's own CLI (compares two earlier runs); listed in
  ``EXTERNAL`` and only checked to be a pytest-benchmark subcommand.
- environment setup (``python3 -m venv``, ``. .venv/bin/activate``, ``pip install``): every
  ``.[extra]`` named is declared in pyproject.toml.
"""
import re
import shlex
from pathlib import Path

import pytest

from linkexit_fast.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()

# Substitutions applied, in order, to a `linkexit-fast` command before it is run for real.
TINY = [("heart:citeseer", "synthetic:300"), ("--layers 8", "--layers 2")]
# Options appended per command when it is run for real (seconds instead of minutes).
TINY_EXTRA = {"train": ["--epochs", "1", "--hidden", "8", "--quiet"], "heart-negatives": ["--k", "20"]}
# Commands run for real (when their dataset, if any, is synthetic after TINY). `predict` reads
# pairs.txt, which the test writes first.
RUN = {"datasets", "heart-negatives", "train", "eval", "predict", "compare"}
EXTERNAL = {"pytest-benchmark": {"compare", "list"}}


def _command(text):
    """argv of one shell command, without comments and leading ``VAR=value`` assignments."""
    argv = shlex.split(text, comments=True)
    while argv and re.fullmatch(r"[A-Za-z_]\w*=\S*", argv[0]):
        argv = argv[1:]
    return argv


def _bash_commands():
    """Every command of the ```bash blocks (`&&` chains split, comments dropped), in order."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.splitlines():
            for part in re.split(r"\s&&\s", line):
                argv = _command(part)
                if argv:
                    out.append(argv)
    return out


def _inline_commands():
    """Inline code spans that are whole CLI or benchmark command lines (a bare command name in
    the prose, like `linkexit-fast train`, is not one)."""
    spans = re.findall(r"`((?:linkexit-fast|python3? benchmarks/)[^`]*)`", README)
    return [_command(s) for s in spans if s.startswith("python") or " --" in s and "--help" not in s]


def _tiny(argv):
    line = " ".join(argv[1:])
    for old, new in TINY:
        line = line.replace(old, new)
    args = shlex.split(line)
    return args + TINY_EXTRA.get(args[0], [])


def _runs(argv) -> bool:
    if argv[0] != "linkexit-fast" or argv[1] not in RUN:
        return False
    args = _tiny(argv)
    dataset = args[args.index("--dataset") + 1] if "--dataset" in args else "synthetic"
    return dataset.startswith("synthetic")


COMMANDS = [(argv, "bash") for argv in _bash_commands()] + [(argv, "inline") for argv in _inline_commands()]


def _id(item):
    argv, where = item
    mode = "run" if where == "bash" and _runs(argv) else "check"
    return f"{where}-{mode}:{' '.join(argv)[:70]}"


def test_readme_has_what_this_file_checks():
    assert re.findall(r"```python\n", README), "README.md has no python block"
    assert any(argv[0] == "linkexit-fast" and _runs(argv) for argv, _ in COMMANDS)


@pytest.mark.parametrize("block", re.findall(r"```python\n(.*?)```", README, re.S),
                         ids=lambda b: b.splitlines()[0][:40])
def test_python_block_runs(block, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {"__name__": "__readme__"})


@pytest.mark.parametrize("item", COMMANDS, ids=_id)
def test_command_is_valid(item):
    argv, _ = item
    prog = argv[0]
    if prog == "linkexit-fast":
        build_parser().parse_args(argv[1:])  # SystemExit(2) on a renamed option or command
    elif prog in ("python", "python3") and argv[1:3] == ["-m", "venv"]:
        pass  # environment setup
    elif prog in (".", "source"):
        assert argv[1].endswith("activate")
    elif prog == "pip" and argv[1] == "install":
        declared = (ROOT / "pyproject.toml").read_text()
        for arg in argv[2:]:
            for extra in re.findall(r"\.\[([\w,-]+)\]", arg):
                for name in extra.split(","):
                    assert re.search(rf"^{name}\s*=", declared, re.M), f"pip extra [{name}] not declared"
    elif prog == "pytest" or (prog in ("python", "python3") and argv[1:3] == ["-m", "pytest"]):
        args = argv[1:] if prog == "pytest" else argv[3:]
        for arg in args:
            if not arg.startswith("-"):
                assert (ROOT / arg).exists(), f"pytest path {arg} does not exist"
    elif prog in EXTERNAL:
        assert argv[1] in EXTERNAL[prog]
    elif prog in ("python", "python3") and argv[1].startswith("benchmarks/") and argv[1].endswith(".py"):
        script = ROOT / argv[1]
        assert script.exists(), f"{argv[1]} does not exist"
        source = script.read_text()
        for opt in (a.split("=")[0] for a in argv[2:] if a.startswith("--")):
            assert f'"{opt}"' in source or f"'{opt}'" in source, f"{argv[1]} declares no {opt}"
    else:
        pytest.fail(f"README command of no known kind (add a rule to tests/test_readme.py): {argv}")


def test_cli_commands_run_on_tiny_settings(tmp_path, monkeypatch, capsys):
    """The README's runnable `linkexit-fast` commands, in order, in one folder, for real."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pairs.txt").write_text("0 1\n2 3\n")
    ran = []
    for argv, where in COMMANDS:
        if where == "bash" and _runs(argv):
            main(_tiny(argv))
            ran.append(argv[1])
    out = capsys.readouterr().out
    assert {"train", "eval", "predict"} <= set(ran), ran
    # what the run leaves: metrics naming their negatives, scores for both pairs
    assert "negatives" in out and re.search(r"^0\t1\t[0-9.]+$", out, re.M)
