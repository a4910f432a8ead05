"""The SSL base methods on the engine: each a short module with a pure loss."""
