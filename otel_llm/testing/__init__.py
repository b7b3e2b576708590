"""Test helpers that ship with the package: a local LLM server and span builders."""
