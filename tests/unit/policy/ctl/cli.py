"""Running policyctl in-process, as a user would from a shell."""

from click.testing import CliRunner, Result

import policy.ctl.main


def ctl(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(policy.ctl.main.cli, list(args), input=input, catch_exceptions=False)
