"""`import jacspec` never imports a framework; a missing framework gives an ImportError naming the extra."""

import json
import os
import subprocess
import sys
import textwrap

FRAMEWORKS = ["lightning", "pytorch_lightning", "transformers", "accelerate", "tensorboard", "torch.utils.tensorboard",
              "wandb"]  # fmt: skip


def run_python(code):
    env = dict(os.environ)
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_import_jacspec_imports_no_framework():
    loaded = run_python(
        f"""
        import json, sys
        import torch
        import jacspec, jacspec.integrations, jacspec.monitor, jacspec.probes
        from jacspec.probes import SpectralNorm
        with jacspec.Monitor(torch.nn.Linear(2, 2), [SpectralNorm()], every=1, progress=False) as monitor:
            monitor.step(0)
        print(json.dumps([name for name in {FRAMEWORKS!r} if name in sys.modules]))
        """
    )
    assert loaded == []


def test_missing_framework_names_the_extra():
    messages = run_python(
        """
        import json, sys
        for name in ["lightning", "lightning.pytorch", "transformers", "tensorboard", "torch.utils.tensorboard",
                     "wandb"]:
            sys.modules[name] = None  # import of any of them now raises ImportError
        out = {}
        for module in ["lightning", "huggingface"]:
            try:
                __import__(f"jacspec.integrations.{module}")
            except ImportError as err:
                out[module] = str(err)
        from jacspec.integrations import tensorboard, wandb
        for key, call in [("tensorboard", lambda: tensorboard.scalars("logs")), ("wandb", lambda: wandb.scalars())]:
            try:
                call()
            except ImportError as err:
                out[key] = str(err)
        print(json.dumps(out))
        """
    )
    assert set(messages) == {"lightning", "huggingface", "tensorboard", "wandb"}
    for extra, message in messages.items():
        assert f'pip install "jacspec[{extra}]"' in message, message
