"""Every ``genaug`` and ``torchrun`` command in the README runs as written, at tiny sizes.

The commands are taken from the README's bash blocks in order (later ones use what earlier ones
wrote), with only the sizes made tiny and MNIST replaced by the bundled sample.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genaug.cli import build_parser, main
from genaug.data import MNISTSample

README = Path(__file__).resolve().parents[1] / "README.md"
# Sizes, and the one threshold that a generator trained for four steps can't meet.
TINY = {"--min-confidence": "0.0", "--epochs": "1", "--per-class": "2", "--num-samples": "40", "--n": "40",
        "--tstr-epochs": "1", "--labels-per-class": "2", "--nproc-per-node": "2",
        "--student-steps": "20", "--labeller-epochs": "1"}


def readme_commands() -> list[list[str]]:
    text = README.read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] in ("genaug", "torchrun"):
                commands.append(words)
    return commands


def split_torchrun(words: list[str]) -> tuple[list[str], list[str]]:
    """(torchrun's own options, genaug's arguments), parsed by torchrun itself."""
    from torch.distributed.run import get_args_parser

    args = get_args_parser().parse_args(words[1:])
    assert args.module and args.training_script == "genaug.cli", words
    return words[1 : len(words) - len(args.training_script_args) - 1], list(args.training_script_args)


def tiny(argv: list[str]) -> list[str]:
    out, i = [], 0
    while i < len(argv):
        word = argv[i]
        if word in TINY:
            out += [word, TINY[word]]
            i += 2
        elif word == "--data-root":
            i += 2
        elif word == "--data" and argv[i + 1] == "mnist":
            out += ["--data", "sample"]
            i += 2
        else:
            out.append(word)
            i += 1
    if out[0] == "train":
        out += ["--max-steps", "4" if "--resume" in out else "2", "--no-progress"]
        if "--labels-per-class" in out and "--labeller-epochs" not in out:  # the labelling GAN's default is a size too
            out += ["--labeller-epochs", TINY["--labeller-epochs"]]
    if out[0] in ("export", "pretrain", "judge"):
        out.append("--no-progress")
    if out[0] == "pretrain":
        out += ["--finetune-steps", "2"]
    if out[0] == "evaluate":  # the defaults are sizes too
        out += [flag for flag in ("--per-class", "--tstr-epochs") if flag not in out for flag in (flag, TINY[flag])]
    return out


def test_the_readme_has_the_commands_it_should():
    names = {c[1] if c[0] == "genaug" else split_torchrun(c)[1][0] for c in readme_commands()}
    assert names >= {"train", "evaluate", "judge", "pretrain", "export"}


@pytest.mark.parametrize("words", readme_commands(), ids=" ".join)
def test_each_readme_command_parses_as_written(words):
    argv = split_torchrun(words)[1] if words[0] == "torchrun" else words[1:]
    try:
        build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"the README's command does not parse: {shlex.join(words)}")


@pytest.mark.slow
def test_the_readme_commands_run_in_order(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    # The inputs the README assumes the user has: an export, class folders and an .npz of their own digits.
    assert main(["export", "--generator", "mnist-cvae", "--per-class", "10", "--out", "my_digits.h5",
                 "--no-progress"]) == 0
    sample = MNISTSample()
    for folder, part in (("path/to/class_folders", slice(0, 600)), ("path/to/test_folders", slice(600, 800))):
        for i, (img, label) in enumerate(zip(sample.data[part], sample.targets[part], strict=True)):
            (tmp_path / folder / str(int(label))).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img.numpy()).save(tmp_path / folder / str(int(label)) / f"{i}.png")
    np.savez("my_images.npz", images=sample.data.numpy(), labels=sample.targets.numpy())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for words in readme_commands():
        if words[0] == "torchrun":
            own, argv = split_torchrun(words)
            own = ["--standalone", *tiny(own)] if own[:1] != ["--standalone"] else tiny(own)
            res = subprocess.run([sys.executable, "-m", "torch.distributed.run", *own, "-m", "genaug.cli",
                                  *tiny(argv)], capture_output=True, text=True, env=env, timeout=600)
            assert res.returncode == 0, f"{shlex.join(words)}\n{res.stderr[-3000:]}"
            continue
        argv = tiny(words[1:])
        rc = main(argv)
        err = capsys.readouterr().err
        assert rc == 0, f"{shlex.join(words)} (run as {shlex.join(argv)}): {err[-2000:]}"
