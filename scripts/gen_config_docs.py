"""Write docs/configuration.md from the config schema (run after changing the schema or conf/)."""

from pathlib import Path

from aenet_exp.config.docs import configuration_markdown

if __name__ == "__main__":
    target = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
    target.write_text(configuration_markdown())
    print(f"wrote {target}")
