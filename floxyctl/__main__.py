"""Entry point of `floxyctl`: a plain `floxyctl run` starts without importing typer."""

from __future__ import annotations

import os
import sys


def main() -> None:
    argv = sys.argv[1:]
    if argv[:1] == ["run"]:
        from floxyctl.options import fast_run_args

        args = fast_run_args(argv[1:], os.environ)
        if args is not None:
            from floxyctl.common import run_command, set_no_plugins
            from floxyctl.run_cmd import execute

            set_no_plugins(args.pop("no_plugins"))
            run_command(lambda: sys.exit(execute(**args)), skip_teardown=True)
            return
    from floxyctl.app import main as typer_main

    typer_main()


if __name__ == "__main__":
    main()
