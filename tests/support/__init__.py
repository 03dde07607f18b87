"""Test-only machinery (hostile files, the bad-input table, the DDP probe): imported by the tests as `support.*`,
never shipped in the package."""
