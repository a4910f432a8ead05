"""BURN: binary-network self-supervision against a frozen FP trunk plus a trainable classifier."""
