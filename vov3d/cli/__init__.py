"""The command-line programs (console scripts vov3d-train, vov3d-test, vov3d-info, ...; see pyproject.toml).

tools/*.py run the same programs from a source checkout."""
