"""The claims study's driver, second edition (reports/study/v2/README.md): pilots, registration,
resumable parts. `reports/` only reads what it writes."""
