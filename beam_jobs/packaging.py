"""Getting this package onto remote workers (Dataflow, Flink, Spark, portable runners with Docker workers).

Local runners (the pinned FnApiRunner, DirectRunner, PortableRunner with LOOPBACK workers) import the code from
this process. For any other runner, unless the user already said how workers get the code (``--setup_file``,
``--extra_package``, ``--sdk_container_image``), the job builds this project as a wheel and adds
``--extra_package``; the SDK harness then pip-installs it (with its dependencies) on every worker.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from apache_beam.options.pipeline_options import PipelineOptions, PortableOptions, SetupOptions, StandardOptions

from beam_jobs.errors import UserError

LOCAL_RUNNERS = {"directrunner", "direct", "fnapirunner", "bundlebaseddirectrunner", "switchingdirectrunner"}
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def is_local(options: PipelineOptions) -> bool:
    """Says whether workers run in (or beside) this process and so already have the code."""
    runner = (options.view_as(StandardOptions).runner or "").lower()
    if not runner or runner.rsplit(".", 1)[-1] in LOCAL_RUNNERS:
        return True
    environment = (options.view_as(PortableOptions).environment_type or "").upper()
    return runner in ("portablerunner", "prismrunner") and environment == "LOOPBACK"


def user_ships_code(options: PipelineOptions) -> bool:
    """Says whether the user already chose how workers get the code."""
    setup = options.view_as(SetupOptions)
    container = options.get_all_options().get("sdk_container_image")
    return bool(setup.setup_file or setup.extra_packages or container)


def build_wheel(dest: str) -> str:
    """Builds this project as a wheel into ``dest``; returns its path.

    Raises:
        UserError: The source tree is not available (installed from a wheel) or the build fails.
    """
    if not (PROJECT_ROOT / "pyproject.toml").exists():
        raise UserError(
            "cannot build a wheel for the workers (beam-expand is not installed from its source tree); "
            "pass --extra_package <beam_expand wheel> or --sdk_container_image <image with beam-expand>"
        )
    base = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", dest, str(PROJECT_ROOT)]
    # Offline first (the build backend is already installed), then with pip's isolated build environment.
    for cmd in (base[:4] + ["--no-build-isolation"] + base[4:], base):
        done = subprocess.run(cmd, capture_output=True, text=True)
        wheels = sorted(Path(dest).glob("beam_expand-*.whl"))
        if done.returncode == 0 and wheels:
            return str(wheels[-1])
    raise UserError(f"building the worker wheel failed: {done.stderr.strip()[-500:]}; pass --setup_file instead")


def worker_packaging_args(pipeline_args: list[str]) -> list[str]:
    """Returns ``pipeline_args`` plus ``--extra_package <wheel>`` when remote workers need this code."""
    options = PipelineOptions(pipeline_args)
    if is_local(options) or user_ships_code(options):
        return list(pipeline_args)
    wheel = build_wheel(tempfile.mkdtemp(prefix="beam-expand-wheel-"))
    print(f"beam-expand: shipping {Path(wheel).name} to the workers (--extra_package)", file=sys.stderr)
    return [*pipeline_args, f"--extra_package={wheel}"]
