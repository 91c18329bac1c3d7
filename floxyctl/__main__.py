"""Entry point of `floxyctl`; imports stay lazy so that `floxyctl run` starts fast."""

from __future__ import annotations


def main() -> None:
    from floxyctl.app import main as run_app

    run_app()


if __name__ == "__main__":
    main()
