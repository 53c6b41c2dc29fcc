"""Level 0: the README's settings table, generated from the fields."""

from __future__ import annotations

from common.config.settings import Settings

__all__ = ["settings_table"]


def settings_table() -> str:
    """The README's settings table, in Markdown."""
    rows = ["| setting | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        if field.is_required():
            default = "*(required)*"
        elif field.default is None:
            default = "*(unset)*"
        else:
            default = f"`{field.default}`"
        rows.append(f"| `{name.upper()}` | {default} | {field.description or ''} |")
    rows.append(
        "| `CONFIG_WAIT_SECONDS` | `2` | How long to keep retrying a missing or invalid"
        " configuration before giving up. |"
    )
    rows.append(
        "| `JENGA_ENV_FILE` | *(unset)* | Optional env file read in addition to the environment. |"
    )
    rows.append(
        "| `JENGA_SECRETS_DIR` | *(unset)* | Optional folder with one file per setting"
        " (Docker/Kubernetes secrets). |"
    )
    return "\n".join(rows)
