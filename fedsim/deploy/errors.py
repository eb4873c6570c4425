"""One exception for everything that can go wrong in a deployment, with what to do about it."""

from __future__ import annotations

EXIT_DEPLOY_ERROR = 3
EXIT_UNREGISTERED = 305  # flower-supernode's exit code for a key the SuperLink does not know


class DeployError(Exception):
    """A deployment problem explained in one line, plus a hint for the fix."""

    def __init__(self, problem: str, hint: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.problem}; {self.hint}" if self.hint else self.problem
