"""End-to-end demo on the embedded default.

Starts ``loreg serve`` (SQLite + local blob folder) in a temporary directory,
registers a tiny Llama base model, trains a LoRA adapter for a few steps,
pushes it with the CLI, pulls it back into an empty cache with the SDK, loads it
onto a fresh copy of the base model and generates with it.

Run: ``bash scripts/demo.sh`` (installs first) or ``.venv/bin/python scripts/demo.py``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.tiny import byte_ids, save_base_model, tiny_llama, train_lora  # noqa: E402

LOREG = [str(Path(sys.executable).parent / "loreg")]


def free_port() -> int:
    """A free loopback TCP port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    """Run the demo; returns a process exit code."""
    import torch

    import loreg

    work = Path(tempfile.mkdtemp(prefix="loreg-demo-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        LOREG + ["serve", "--data-dir", str(work / "data"), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        print(server.stdout.readline().strip())
        token_file = work / "data" / "admin_token"
        deadline = time.monotonic() + 60
        while not token_file.exists():
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("loreg serve did not start")
            time.sleep(0.1)
        env = {
            **os.environ,
            "LOREG_URL": url,
            "LOREG_TOKEN": token_file.read_text().strip(),
            "LOREG_CACHE_DIR": str(work / "cache-push"),
        }

        save_base_model(work / "tiny-llama", seed=0)
        subprocess.run(
            LOREG + ["base", "push", str(work / "tiny-llama"), "--name", "tiny-llama"],
            env=env,
            check=True,
        )

        trained, losses = train_lora(work / "out", steps=30)
        print(f"trained 30 steps: loss {losses[0]:.3f} -> {losses[-1]:.3f}")
        subprocess.run(
            LOREG + ["push", str(work / "out"), "--name", "medical", "--base-model", "tiny-llama"],
            env=env,
            check=True,
        )
        subprocess.run(LOREG + ["show", "medical-v1"], env=env, check=True)

        registry = loreg.Registry(url=url, token=env["LOREG_TOKEN"], cache_dir=work / "cache")
        print("pulled to", registry.pull("medical-v1"))
        model = registry.load(tiny_llama(seed=0), "medical-v1")
        prompt = byte_ids("the patient reports")
        with torch.no_grad():
            same = torch.allclose(model(prompt).logits, trained(input_ids=prompt).logits, atol=1e-6)
            out = model.generate(input_ids=prompt, max_new_tokens=24, do_sample=False)
        print("logits after pull equal the trained model's:", same)
        print("generated:", bytes(int(t) for t in out[0]).decode(errors="replace"))
        return 0 if same else 1
    finally:
        server.terminate()
        server.wait(timeout=20)


if __name__ == "__main__":
    sys.exit(main())
