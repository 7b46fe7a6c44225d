"""docs/cli.md documents exactly the commands, arguments and options of the app, and is regenerated.

The app side walks `typer.main.get_command(recolor.cli.app)`; the docs side parses the page's
headings (`` ## `recolor models pull` ``) and the first column of its argument and option tables.
Neither side uses scripts/gen_cli_reference.py, so a bug in the generator cannot hide itself.
"""

from __future__ import annotations

import copy
import importlib.util
import re
from pathlib import Path

import typer

from recolor.cli import app

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "cli.md"
REGENERATE = "run `python scripts/gen_cli_reference.py` and commit docs/cli.md"

Tree = dict[str, dict[str, set[str]]]  # "recolor models pull" -> {"options": {...}, "arguments": {...}}


def load_generator():
    spec = importlib.util.spec_from_file_location("gen_cli_reference", ROOT / "scripts" / "gen_cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def app_tree(typer_app: typer.Typer) -> Tree:
    """Every visible command of the app with its option strings and argument names."""
    tree: Tree = {}

    def visit(command, path: str) -> None:
        entry = tree[path] = {"options": set(), "arguments": set()}
        for param in command.params:
            if getattr(param, "hidden", False):
                continue
            if type(param).__name__.endswith("Option") or getattr(param, "param_type_name", "") == "option":
                entry["options"].update(param.opts, param.secondary_opts)
            else:
                name = param.metavar or param.name.upper()
                entry["arguments"].add(name if param.nargs != -1 or name.endswith("...") else name + "...")
        for name, sub in getattr(command, "commands", {}).items():
            if not getattr(sub, "hidden", False):
                visit(sub, f"{path} {name}")

    visit(typer.main.get_command(typer_app), "recolor")
    return tree


def doc_tree(markdown: str) -> Tree:
    """The commands (level-2 headings in backticks) and the names in their argument and option tables."""
    tree: Tree = {}
    entry = None
    kind = None
    for line in markdown.splitlines():
        heading = re.fullmatch(r"## `(recolor(?: [\w-]+)*)`", line.strip())
        if heading:
            entry = tree.setdefault(heading[1], {"options": set(), "arguments": set()})
            kind = None
            continue
        if line.startswith("#"):
            entry, kind = None, None
            continue
        if entry is None or not line.startswith("|"):
            kind = None  # a table ends at its first line that is not a row
            continue
        first_cell = line.split("|")[1].strip()
        if set(first_cell) <= set("-: "):  # |---|---|
            continue
        if "`" not in first_cell:  # a header row: which table this is
            kind = {"option": "options", "argument": "arguments"}.get(first_cell)
        elif kind:
            entry[kind].update(re.findall(r"`([^`]+)`", first_cell))
    return tree


def differences(app_side: Tree, doc_side: Tree) -> list[str]:
    problems = [f"command {path!r} is not in docs/cli.md" for path in app_side.keys() - doc_side.keys()]
    problems += [f"docs/cli.md documents {path!r}, which the app does not have" for path in doc_side.keys() - app_side.keys()]
    for path in sorted(app_side.keys() & doc_side.keys()):
        for kind in ("options", "arguments"):
            for name in sorted(app_side[path][kind] - doc_side[path][kind]):
                problems.append(f"{path}: {kind[:-1]} {name} is not in docs/cli.md")
            for name in sorted(doc_side[path][kind] - app_side[path][kind]):
                problems.append(f"{path}: docs/cli.md documents {kind[:-1]} {name}, which the app does not have")
    return problems


def app_with_extra_command() -> typer.Typer:
    """The real app plus one more command, as when a command (say `push`) is added to cli.py.

    Its name is one the real app will never have, so the test stays true as commands are added.
    """
    grown = copy.copy(app)
    grown.registered_commands = list(app.registered_commands)
    grown.registered_groups = list(app.registered_groups)

    @grown.command("extra-for-test")
    def extra(model: str = typer.Argument(..., help="A run folder."),
             private: bool = typer.Option(True, "--private/--public", help="Repo visibility."),
             token: str = typer.Option(None, "--token", "-t", help="A Hub token.")) -> None:
        """Upload a model somewhere."""

    return grown


# ------------------------------------------------------------------------------------------- tests


def test_every_command_argument_and_option_of_the_app_is_documented():
    app_side, doc_side = app_tree(app), doc_tree(DOC.read_text(encoding="utf-8"))
    missing = [problem for problem in differences(app_side, doc_side) if "is not in docs/cli.md" in problem]
    assert not missing, "\n".join(missing) + f"\n→ {REGENERATE}"


def test_every_documented_command_argument_and_option_exists_in_the_app():
    app_side, doc_side = app_tree(app), doc_tree(DOC.read_text(encoding="utf-8"))
    extra = [problem for problem in differences(app_side, doc_side) if "which the app does not have" in problem]
    assert not extra, "\n".join(extra) + f"\n→ {REGENERATE}"


def test_the_page_is_exactly_what_the_generator_writes_now():
    # Help texts, defaults and ranges too: the page is regenerated, never polished by hand.
    assert DOC.read_text(encoding="utf-8") == load_generator().render(app), f"docs/cli.md is out of date → {REGENERATE}"


def test_the_parser_sees_the_whole_app():
    # Guards the check itself: if the parser found nothing, the comparisons above would pass vacuously.
    doc_side = doc_tree(DOC.read_text(encoding="utf-8"))
    assert {"recolor", "recolor prepare", "recolor train", "recolor eval", "recolor apply", "recolor models",
            "recolor models list", "recolor models pull", "recolor models verify"} <= doc_side.keys()
    assert {"--model", "-m", "--out", "-o", "--recursive", "--no-recursive", "--render-size"} <= doc_side["recolor apply"]["options"]
    assert doc_side["recolor apply"]["arguments"] == {"INPUT..."}
    assert {"--flip", "--no-flip", "--soft-labels"} <= doc_side["recolor train"]["options"]
    assert doc_side["recolor"]["options"] == {"--version"}


def test_an_option_added_without_regenerating_is_caught():
    page = DOC.read_text(encoding="utf-8")
    stale = "\n".join(line for line in page.splitlines() if not line.startswith("| `--upsample`"))
    assert stale != page
    assert differences(app_tree(app), doc_tree(stale)) == ["recolor apply: option --upsample is not in docs/cli.md"]


def test_an_option_removed_from_the_app_is_caught():
    page = DOC.read_text(encoding="utf-8")
    row = "| `--gone` | flag | off | An option the app no longer has. |"
    stale = page.replace("| `--version` |", row + "\n| `--version` |", 1)
    assert differences(app_tree(app), doc_tree(stale)) == [
        "recolor: docs/cli.md documents option --gone, which the app does not have"]


def test_a_new_command_is_caught_and_the_generator_documents_it():
    grown = app_with_extra_command()
    problems = differences(app_tree(grown), doc_tree(DOC.read_text(encoding="utf-8")))
    assert problems == ["command 'recolor extra-for-test' is not in docs/cli.md"]
    regenerated = load_generator().render(grown)
    assert differences(app_tree(grown), doc_tree(regenerated)) == []
    assert doc_tree(regenerated)["recolor extra-for-test"] == {"options": {"--private", "--public", "--token", "-t"},
                                                     "arguments": {"MODEL"}}
    assert "[`recolor extra-for-test`](#recolor-extra-for-test)" in regenerated  # listed under the root command too
    assert "recolor extra-for-test" not in app_tree(app)  # the real app was left as it was
