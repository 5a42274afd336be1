"""One step per Dockerfile instruction (Kaniko's one-file-per-instruction), behind the small
protocol of :mod:`executor.engine.step`: ``prepare(ctx) -> Prepared``.

config.py: ENV LABEL USER EXPOSE VOLUME CMD ENTRYPOINT SHELL STOPSIGNAL HEALTHCHECK
MAINTAINER ONBUILD; arg.py: ARG; workdir.py: WORKDIR; run.py: RUN; copy.py: COPY and ADD.
Helpers: copying.py (Docker's destination rules), archives.py (ADD archives, URLs,
checksums), mounts.py (RUN --mount providers).
"""

from __future__ import annotations

from ...dockerfile import instructions as di
from ..step import Step
from .arg import ArgStep
from .config import (CmdStep, EntrypointStep, EnvStep, ExposeStep, HealthcheckStep, LabelStep, MaintainerStep,
                     OnbuildStep, ShellStep, StopSignalStep, UserStep, VolumeStep)
from .copy import CopyStep
from .run import RunStep
from .workdir import WorkdirStep

STEPS: dict[type, type] = {
    di.Arg: ArgStep, di.Env: EnvStep, di.Label: LabelStep, di.User: UserStep, di.Expose: ExposeStep,
    di.Volume: VolumeStep, di.Cmd: CmdStep, di.Entrypoint: EntrypointStep, di.Shell: ShellStep,
    di.StopSignal: StopSignalStep, di.Healthcheck: HealthcheckStep, di.Maintainer: MaintainerStep,
    di.Onbuild: OnbuildStep, di.Workdir: WorkdirStep, di.Run: RunStep, di.Copy: CopyStep, di.Add: CopyStep,
}


def step_for(ins: di.Instruction) -> Step:
    """The step for typed instruction ``ins``; TypeError for a type without one (FROM is the stage)."""
    try:
        return STEPS[type(ins)](ins)
    except KeyError:
        raise TypeError(f"no step for {type(ins).__name__}") from None
