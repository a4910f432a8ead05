"""The papers' numbers, the table renderer, and the rendered tables and figures."""
