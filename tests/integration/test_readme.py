"""The README's code and commands are the ones that work."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def run_example(name: str, tmp_path: Path) -> str:
    """Run the python block after ``<!-- example: NAME -->`` in the README; its stdout."""
    block = README.split(f"<!-- example: {name} -->", 1)[1]
    code = re.search(r"```python\n(.*?)```", block, re.S)
    assert code is not None
    script = tmp_path / "example.py"
    script.write_text(code.group(1))
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, check=True
    )
    return result.stdout


def test_custom_key_example_runs_and_trains_every_bucket(tmp_path: Path) -> None:
    stdout = run_example("custom-key", tmp_path)
    losses = [float(x) for x in re.findall(r"loss (\d+\.\d+)", stdout)]
    assert len(losses) == 12
    assert all(late < 0.1 * early for early, late in zip(losses[:6], losses[6:], strict=True))
    assert "built keys: (('reverse', 12)," in stdout


def test_language_model_example_runs_and_learns_the_stream(tmp_path: Path) -> None:
    stdout = run_example("language-model", tmp_path)
    perplexities = [float(x) for x in re.findall(r"valid perplexity (\d+\.\d+)", stdout)]
    assert len(perplexities) == 4
    assert perplexities[-1] < perplexities[0] and perplexities[-1] < 2.0  # 9 words, learned


def test_ci_runs_the_readme_test_command() -> None:
    commands = re.findall(r"```bash\n(.*?)\n```", README, re.S)
    test_command = next(c for c in commands if "pytest" in c)
    assert test_command in (ROOT / ".ci" / "run").read_text()
