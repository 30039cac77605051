"""The lunash dialect: command builders, prompt/result patterns and pure output parsers."""
