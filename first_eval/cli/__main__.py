"""``python -m first_eval.cli`` — the same as ``first-eval``."""

from first_eval.cli import main

if __name__ == "__main__":
    main()
