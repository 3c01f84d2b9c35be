"""An example ebmkit plugin. Nothing is registered by importing it: ebmkit finds the
components through the entry points in pyproject.toml and imports each module on first use."""
